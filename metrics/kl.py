"""Paired KL divergence of classifier label distributions (``kl_panns``, ``kl_passt``).

Per clip id: KL(softmax(reference logits) || softmax(generated logits)) with the
embedder's pre-activation logits (see functional.kl); the score is the mean over clips
that both sides could be scored for. Per-clip values stay keyed by clip id so the worst
clips can be listed and shards merged exactly. One generated sample per clip id.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, Metric, MetricValue, ScoreContext
from foleybench.metrics.functional.kl import kl_divergence

N_WORST = 10


class KLMetric(Metric):
    higher_is_better = False
    version = "1"
    tasks = ("v2a",)

    def __init__(self, ctx: ScoreContext | None = None, embedder: str = "panns", n_boot: int = 1000):
        from foleybench.metrics.embedders import get_embedder

        self.ctx = ctx or ScoreContext()
        self.embedder_name = embedder
        self.name = f"kl_{embedder}"  # type: ignore[misc]
        self.embedder = get_embedder(embedder, self.ctx)
        self.n_boot = n_boot
        self.ids: list[str] = []
        self.values: list[float] = []

    def update(self, pairs: Sequence[ClipPair]) -> list[tuple[str, str]]:
        from foleybench.cache import logits_files

        gen = logits_files(self.embedder, [p.pred_audio or "" for p in pairs], self.ctx)
        ref = logits_files(self.embedder, [p.ref_audio or "" for p in pairs], self.ctx)
        excluded: list[tuple[str, str]] = []
        keep: list[tuple[str, np.ndarray, np.ndarray]] = []
        for pair, g, r in zip(pairs, gen, ref):
            bad = g if isinstance(g, InputError) else r if isinstance(r, InputError) else None
            if bad is not None:
                excluded.append((pair.clip_id, str(bad)))
            else:
                keep.append((pair.clip_id, np.asarray(r).reshape(-1), np.asarray(g).reshape(-1)))
        if keep:
            kl = kl_divergence(np.stack([k[1] for k in keep]), np.stack([k[2] for k in keep]))
            self.ids += [k[0] for k in keep]
            self.values += [float(v) for v in kl]
        return excluded

    def merge(self, other: "KLMetric") -> "KLMetric":
        self.ids += other.ids
        self.values += other.values
        return self

    def compute(self) -> MetricValue:
        from foleybench.metrics.functional.bootstrap import bootstrap_ci

        n = len(self.values)
        extras: dict[str, Any] = {"direction": "KL(ref || gen)", "probabilities": "softmax over logits",
                                  "per_clip": dict(zip(self.ids, self.values))}
        if n == 0:
            extras["reason"] = "no clip could be scored"
            return MetricValue(None, 0, None, extras)
        order = np.argsort(-np.asarray(self.values), kind="stable")[:N_WORST]
        extras["worst"] = [(self.ids[i], self.values[i]) for i in order]
        v = np.asarray(self.values, dtype=np.float64)
        ci = bootstrap_ci(v, n_boot=self.n_boot, seed=self.ctx.seed) if n >= 2 and self.n_boot else None
        extras["bootstrap"] = {"n_boot": self.n_boot, "unit": "clips", "seed": self.ctx.seed}
        return MetricValue(float(v.mean()), n, ci, extras)

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, "direction": "KL(ref || gen)",
                **self.embedder.provenance()}
