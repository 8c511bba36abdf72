"""Frechet Video Distance (A2V: generated videos vs reference videos), ``fvd``.

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
from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, Metric, MetricValue, ScoreContext
from foleybench.cache import embed_files
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.frechet_state import FrechetState
from foleybench.metrics.functional.frechet import frechet_distance

MIN_VIDEOS = 256


class FVD(Metric):
    name = "fvd"
    version = "1"
    higher_is_better = False
    tasks = ("a2v",)  # V2A keeps the reference video: nothing generated to compare

    def __init__(self, ctx: ScoreContext | None = None, ddof: int = 0, n_frames: int = 16, start_s: float = 0.0,
                 feature: str = "logits", embedder: str = "i3d"):
        if ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 (StyleGAN-V) or 1 (unbiased), not {ddof}")
        self.ctx = ctx or ScoreContext()
        self.ddof, self.n_frames, self.start_s, self.feature = ddof, n_frames, start_s, feature
        self.embedder = get_embedder(embedder, self.ctx, n_frames=n_frames, start_s=start_s, feature=feature)
        self.dim = int(self.embedder.dim)
        self.gen_state, self.ref_state = FrechetState(self.dim), FrechetState(self.dim)
        self.ids: list[str] = []

    def update(self, pairs: Sequence[ClipPair]) -> list[tuple[str, str]]:
        gen = embed_files(self.embedder, [p.pred_video or "" for p in pairs], self.ctx)
        ref = embed_files(self.embedder, [p.ref_video or "" for p in pairs], self.ctx)
        excluded = []
        for pair, g, r in zip(pairs, gen, ref):
            bad = g if isinstance(g, InputError) else r if isinstance(r, InputError) else None
            if bad is not None:
                excluded.append((pair.clip_id, str(bad)))
                continue
            self.gen_state.update(np.asarray(g).reshape(-1, self.dim))
            self.ref_state.update(np.asarray(r).reshape(-1, self.dim))
            self.ids.append(pair.clip_id)
        return excluded

    def merge(self, other: "FVD") -> "FVD":
        self.gen_state.merge(other.gen_state)
        self.ref_state.merge(other.ref_state)
        self.ids += other.ids
        return self

    def compute(self) -> MetricValue:
        n = len(self.ids)
        extras: dict[str, Any] = {"n_real": int(self.ref_state.count), "n_fake": int(self.gen_state.count),
                                  "n_unit": "clips", "warnings": [], **self.protocol()}
        if n < MIN_VIDEOS:
            msg = (f"FVD on {n} videos (< {MIN_VIDEOS}): strongly biased upward and not comparable "
                   f"to FVD at 2048 videos")
            warnings.warn(msg, stacklevel=2)
            extras["warnings"].append(msg)
        if n <= self.ddof or n < 2:
            extras["reason"] = "fewer than 2 videos scored"
            return MetricValue(None, n, None, extras)
        mu_g, s_g = self.gen_state.stats(ddof=self.ddof)
        mu_r, s_r = self.ref_state.stats(ddof=self.ddof)
        return MetricValue(float(frechet_distance(mu_g, s_g, mu_r, s_r)), n, None, extras)

    def protocol(self) -> dict[str, Any]:
        return {"protocol": "stylegan-v fvd_16f" if (self.ddof, self.n_frames, self.start_s, self.feature)
                == (0, 16, 0.0, "logits") else "custom",
                "n_frames": self.n_frames, "clip_start_s": self.start_s, "feature": self.feature,
                "covariance": "divided by N (ddof=0)" if self.ddof == 0 else "unbiased (N-1)",
                "frame_sampling": "consecutive frames at the file's own fps from the clip start",
                "resize": self.embedder.preprocess_id()}

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, **self.protocol(), **self.embedder.provenance()}
