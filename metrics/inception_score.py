"""Inception score of the generated items (``is_panns``, ``is_c3d``).

Only generated files count: audio for audio classifiers (V2A), video for video
classifiers (A2V): :class:`InceptionScore` (audio, V2A) and its subclass
:class:`VideoInceptionScore` (video, A2V), so the class a registry line names says which
task it serves. Logits are kept per clip id
(metrics/base.py) and the score is computed once at the end (splits need the whole
set), over the items sorted by clip id, so the seeded shuffle, and the score, do not
depend on batching or shard order; see functional.inception for the formula.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from foleybench.api import ClipPair, FoleybenchError, InputError, MetricValue, ScoreContext
from foleybench.cache import logits_files
from foleybench.metrics.base import ClipKeyedMetric, Excluded
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.functional.inception import inception_score

# Published protocols: av-benchmark IS-PANNs (10 splits, seed 2020); StyleGAN-V IS-C3D (10, 42).
PROTOCOLS: dict[str, tuple[int, int]] = {"panns": (10, 2020), "passt": (10, 2020), "c3d": (10, 42)}


class InceptionScore(ClipKeyedMetric):
    """exp(E KL(p(y|x) || p(y))) over the generated audio's classifier logits ``[K]`` (V2A).

    ``modality`` says which generated file is classified (and so ``tasks``); the
    embedder must be of that modality.
    """

    higher_is_better = True
    version = "1"
    tasks = ("v2a",)
    modality: ClassVar[str] = "audio"

    def __init__(self, ctx: ScoreContext | None = None, embedder: str = "panns",
                 n_splits: int | None = None, seed: int | None = None):
        super().__init__(ctx)
        self.embedder_name = embedder
        self.name = f"is_{embedder}"
        self.embedder = get_embedder(embedder, self.ctx)
        if self.embedder.kind != self.modality:
            raise FoleybenchError(f"{type(self).__name__} classifies {self.modality}; embedder {embedder!r} "
                                  f"is a {self.embedder.kind} embedder")
        default = PROTOCOLS.get(embedder, (10, 2020))
        self.n_splits = default[0] if n_splits is None else n_splits
        self.seed = default[1] if seed is None else seed

    def score_batch(self, pairs: Sequence[ClipPair]) -> list[Any]:
        paths = [p.pred_video if self.modality == "video" else p.pred_audio for p in pairs]
        out: list[Any] = [Excluded(f"no generated {self.modality} file for task {p.task!r}") for p in pairs]
        todo = [i for i, path in enumerate(paths) if path]
        for i, lg in zip(todo, logits_files(self.embedder, [paths[i] or "" for i in todo], self.ctx)):
            out[i] = Excluded(str(lg)) if isinstance(lg, InputError) else np.asarray(lg, dtype=np.float32).reshape(-1)
        return out

    def compute(self) -> MetricValue:
        ids, logits = self.sorted_rows()
        n = len(ids)
        extras: dict[str, Any] = {"n_splits": self.n_splits, "seed": self.seed, "shuffle": True,
                                  "items": "generated only"}
        if n < self.n_splits:
            extras["reason"] = f"{n} items, fewer than the {self.n_splits} splits"
            return MetricValue(None, n, None, extras)
        mean, std = inception_score(np.stack(logits), self.n_splits, self.seed)
        extras["std"] = std
        return MetricValue(mean, n, None, extras)

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, "n_splits": self.n_splits,
                "seed": self.seed, **self.embedder.provenance()}


class VideoInceptionScore(InceptionScore):
    """IS of generated video (``is_c3d``): A2V."""

    tasks = ("a2v",)
    modality = "video"

    def __init__(self, ctx: ScoreContext | None = None, embedder: str = "c3d",
                 n_splits: int | None = None, seed: int | None = None):
        super().__init__(ctx, embedder, n_splits, seed)
