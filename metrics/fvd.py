"""Frechet Video Distance (A2V: generated videos vs reference videos), ``fvd``: the
Frechet metric of metrics/fd.py with a video embedder and its covariance convention.

Default protocol: StyleGAN-V's ``fvd2048_16f`` conventions: I3D (Kinetics-400) 400-d
logits of 16 consecutive frames from the clip start, covariance divided by N (ddof=0,
StyleGAN-V's ``get_mean_cov``). Clips too short for 16 frames are excluded and reported
(StyleGAN-V discards them). Pairing is by clip id: a clip counts only when both its
generated and its reference video embed, so both sets describe the same clips.
FVD is strongly biased upward at small N: fewer than 256 videos raise a warning, which
is also written into ``extras['warnings']``.
"""
from __future__ import annotations

import warnings
from typing import Any

from foleybench.api import ScoreContext
from foleybench.metrics.fd import COVARIANCE, FrechetMetric
from foleybench.metrics.frechet_state import FrechetState

MIN_VIDEOS = 256


class FVD(FrechetMetric):
    """FVD over I3D features; options: ddof (0: StyleGAN-V), frames, start, feature."""

    name = "fvd"
    version = "1"
    tasks = ("a2v",)  # V2A keeps the reference video: nothing generated to compare
    modality = "video"
    too_few = "fewer than 2 videos scored"

    def __init__(self, ctx: ScoreContext | None = None, ddof: int = 0, n_frames: int = 16, start_s: float = 0.0,
                 feature: str = "logits", embedder: str = "i3d"):
        super().__init__(ctx, embedder, ddof, n_frames=n_frames, start_s=start_s, feature=feature)
        self.n_frames, self.start_s, self.feature = n_frames, start_s, feature

    def extras(self, gen: FrechetState, ref: FrechetState, n: int) -> dict[str, Any]:
        extras: dict[str, Any] = {"n_real": int(ref.count), "n_fake": int(gen.count), "n_unit": "clips",
                                  "warnings": [], **self.protocol()}
        if n < MIN_VIDEOS:
            msg = (f"FVD on {n} videos (< {MIN_VIDEOS}): strongly biased upward and not comparable "
                   f"to FVD at 2048 videos")
            warnings.warn(msg, stacklevel=3)  # extras <- compute <- its caller: point at the caller
            extras["warnings"].append(msg)
        return extras

    def protocol(self) -> dict[str, Any]:
        return {"protocol": "stylegan-v fvd_16f" if (self.ddof, self.n_frames, self.start_s, self.feature)
                == (0, 16, 0.0, "logits") else "custom",
                "n_frames": self.n_frames, "clip_start_s": self.start_s, "feature": self.feature,
                "covariance": COVARIANCE[self.ddof],
                "frame_sampling": "consecutive frames at the file's own fps from the clip start",
                "resize": self.embedder.preprocess_id()}

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, **self.protocol(), **self.embedder.provenance()}
