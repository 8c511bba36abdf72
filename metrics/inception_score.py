"""Inception score of the generated items (``is_panns``; later ``is_c3d``).

Only generated files count: audio for audio classifiers (V2A), video for video
classifiers (A2V). Logits are kept per clip id and the score is computed once at the end
(splits need the whole set); see functional.inception for the formula.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, Metric, MetricValue, ScoreContext
from foleybench.metrics.functional.inception import inception_score

# Published protocols: av-benchmark IS-PANNs (10 splits, seed 2020); StyleGAN-V IS-C3D (10, 42).
PROTOCOLS: dict[str, tuple[int, int]] = {"panns": (10, 2020), "passt": (10, 2020), "c3d": (10, 42)}


class InceptionScore(Metric):
    higher_is_better = True
    version = "1"

    def __init__(self, ctx: ScoreContext | None = None, embedder: str = "panns",
                 n_splits: int | None = None, seed: int | None = None):
        from foleybench.metrics.embedders import get_embedder

        self.ctx = ctx or ScoreContext()
        self.embedder_name = embedder
        self.name = f"is_{embedder}"  # type: ignore[misc]
        self.embedder = get_embedder(embedder, self.ctx)
        default = PROTOCOLS.get(embedder, (10, 2020))
        self.n_splits = default[0] if n_splits is None else n_splits
        self.seed = default[1] if seed is None else seed
        self.video = self.embedder.kind == "video"
        self.tasks = ("a2v",) if self.video else ("v2a",)  # type: ignore[misc]
        self.ids: list[str] = []
        self.logits: list[np.ndarray] = []

    def update(self, pairs: Sequence[ClipPair]) -> list[tuple[str, str]]:
        from foleybench.cache import logits_files

        paths = [(p.pred_video if self.video else p.pred_audio) or "" for p in pairs]
        out = logits_files(self.embedder, paths, self.ctx)
        excluded: list[tuple[str, str]] = []
        for pair, lg in zip(pairs, out):
            if isinstance(lg, InputError):
                excluded.append((pair.clip_id, str(lg)))
            else:
                self.ids.append(pair.clip_id)
                self.logits.append(np.asarray(lg, dtype=np.float32).reshape(-1))
        return excluded

    def merge(self, other: "InceptionScore") -> "InceptionScore":
        self.ids += other.ids
        self.logits += other.logits
        return self

    def compute(self) -> MetricValue:
        n = len(self.ids)
        extras: dict[str, Any] = {"n_splits": self.n_splits, "seed": self.seed, "shuffle": True,
                                  "items": "generated only"}
        if n < self.n_splits:
            extras["reason"] = f"{n} items, fewer than the {self.n_splits} splits"
            return MetricValue(None, n, None, extras)
        # Sort by clip id so the shuffle, and so the score, do not depend on shard order.
        order = np.argsort(np.asarray(self.ids), kind="stable")
        mean, std = inception_score(np.stack([self.logits[i] for i in order]), self.n_splits, self.seed)
        extras["std"] = std
        return MetricValue(mean, n, None, extras)

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, "n_splits": self.n_splits,
                "seed": self.seed, **self.embedder.provenance()}
