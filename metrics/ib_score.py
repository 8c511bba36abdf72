"""ImageBind score: cosine(ImageBind video embedding, ImageBind audio embedding) x 100.

Per clip, the video side is ``pair.video`` and the audio side ``pair.audio`` (V2A: the
reference video with the generated audio; A2V: the generated video with the reference
audio). Each side is the mean of ImageBind's per-crop/per-clip unit vectors (see
embedders/imagebind.py); the clip's value is their cosine. The score is the mean over
clips, **multiplied by 100** as MMAudio and av-benchmark print it (extras['scale']);
per-clip values (also x100) and a 95% bootstrap interval over clips are kept.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, Metric, MetricValue, ScoreContext
from foleybench.cache import cached_apply
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.functional.bootstrap import bootstrap_ci

SCALE = 100.0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors in float64 (0 for a zero vector is an error)."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("cosine of a zero vector")
    return float(a @ b / (na * nb))


class IBScore(Metric):
    name = "ib_score"
    version = "1"
    higher_is_better = True

    def __init__(self, ctx: ScoreContext | None = None, n_boot: int = 1000):
        self.ctx = ctx or ScoreContext()
        self.n_boot = n_boot
        self.embedder = get_embedder("imagebind", self.ctx)
        self.per_clip: dict[str, float] = {}

    def update(self, pairs: Sequence[ClipPair]) -> list[tuple[str, str]]:
        excluded: list[tuple[str, str]] = []
        todo = [p for p in pairs if p.video and p.audio]
        excluded += [(p.clip_id, "needs both a video and an audio file") for p in pairs if not (p.video and p.audio)]
        e = self.embedder
        vids = cached_apply(e, [p.video for p in todo], self.ctx, "ib_video",  # type: ignore[misc]
                            load=lambda path: e.load_video(path, self.ctx), apply=e.embed_video)
        auds = cached_apply(e, [p.audio for p in todo], self.ctx, "ib_audio",  # type: ignore[misc]
                            load=lambda path: e.load_audio(path, self.ctx), apply=e.embed_audio)
        for p, v, a in zip(todo, vids, auds):
            bad = v if isinstance(v, InputError) else a if isinstance(a, InputError) else None
            if bad is not None:
                excluded.append((p.clip_id, str(bad)))
                continue
            try:
                self.per_clip[p.clip_id] = SCALE * cosine(v, a)
            except ValueError as exc:
                excluded.append((p.clip_id, f"ImageBind embedding is zero ({exc})"))
        return excluded

    def merge(self, other: "IBScore") -> "IBScore":
        self.per_clip.update(other.per_clip)
        return self

    def compute(self) -> MetricValue:
        vals = np.array(list(self.per_clip.values()), dtype=np.float64)
        extras: dict[str, Any] = {"per_clip": dict(self.per_clip), "n_unit": "clips", **self.protocol()}
        if vals.size == 0:
            return MetricValue(None, 0, None, extras)
        ci = bootstrap_ci(vals, n_boot=self.n_boot, seed=self.ctx.seed) if self.n_boot else None
        return MetricValue(float(vals.mean()), int(vals.size), ci, extras)

    def protocol(self) -> dict[str, Any]:
        return {"scale": "cosine x 100 (value, per_clip and ci)", "ci": "bootstrap 95% over clips"}

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, **self.protocol(), **self.embedder.provenance()}
