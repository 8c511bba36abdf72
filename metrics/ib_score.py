"""ImageBind score: cosine(ImageBind video embedding, ImageBind audio embedding) x 100.

Per clip, the video side is ``pair.video`` and the audio side ``pair.audio`` (V2A: the
reference video with the generated audio; A2V: the generated video with the reference
audio). Each side is the mean of ImageBind's per-crop/per-clip unit vectors (see
embedders/imagebind.py); the clip's value is their cosine. The score is the mean over
clips, **multiplied by 100** as MMAudio and av-benchmark print it (extras['scale']);
per-clip values (also x100) and a 95% bootstrap interval over clips are kept.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from foleybench.api import ClipPair, ScoreContext
from foleybench.cache import cached_apply
from foleybench.metrics.base import Excluded, PairedEmbedding, PerClipMean
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.functional.similarity import cosine

SCALE = 100.0


class IBScore(PairedEmbedding, PerClipMean):
    """Mean over clips of 100 x cosine(video embedding, audio embedding); higher is better."""

    name = "ib_score"
    version = "1"
    higher_is_better = True
    tasks = ("v2a", "a2v")
    side_names = ("video", "audio")

    def __init__(self, ctx: ScoreContext | None = None, n_boot: int = 1000):
        super().__init__(ctx)
        self.n_boot = n_boot
        self.embedder = get_embedder("imagebind", self.ctx)

    def sides(self, pair: ClipPair) -> tuple[str | None, str | None]:
        return pair.video, pair.audio

    def embed_sides(self, first: list[str], second: list[str]) -> tuple[list[Any], list[Any]]:
        e = self.embedder
        vids = cached_apply(e, first, self.ctx, "ib_video",
                            load=lambda path: e.load_video(path, self.ctx), apply=e.embed_video)  # type: ignore[attr-defined]
        auds = cached_apply(e, second, self.ctx, "ib_audio",
                            load=lambda path: e.load_audio(path, self.ctx), apply=e.embed_audio)  # type: ignore[attr-defined]
        return vids, auds

    def row(self, pair: ClipPair, a: np.ndarray, b: np.ndarray) -> float | Excluded:
        try:
            return SCALE * cosine(a, b)
        except ValueError as exc:
            return Excluded(f"ImageBind embedding is zero ({exc})")

    def extras(self, ids: list[str], values: np.ndarray) -> dict[str, Any]:
        return {"per_clip": dict(zip(ids, values.tolist())), "n_unit": "clips", **self.protocol()}

    def protocol(self) -> dict[str, Any]:
        return {"scale": "cosine x 100 (value, per_clip and ci)", "ci": "bootstrap 95% over clips"}

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, **self.protocol(), **self.embedder.provenance()}
