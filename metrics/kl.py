"""Paired KL divergence of classifier label distributions (``kl_panns``, ``kl_passt``).

Per clip id: KL(softmax(reference logits) || softmax(generated logits)) with the
embedder's pre-activation logits (see functional.kl); the score is the mean over clips
that both sides could be scored for. Per-clip values stay keyed by clip id (see
metrics/base.py) so the worst clips can be listed and shards merged exactly. One
generated sample per clip id.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from foleybench.api import ClipPair, ScoreContext
from foleybench.cache import logits_files
from foleybench.metrics.base import PairedEmbedding, PerClipMean
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.functional.kl import kl_divergence

N_WORST = 10


class KLMetric(PairedEmbedding, PerClipMean):
    """Mean per-clip KL(ref || gen) over classifier logits ``[K]``; lower is better."""

    higher_is_better = False
    version = "1"
    tasks = ("v2a",)
    ci_min_n = 2

    def __init__(self, ctx: ScoreContext | None = None, embedder: str = "panns", n_boot: int = 1000):
        super().__init__(ctx)
        self.embedder_name = embedder
        self.name = f"kl_{embedder}"
        self.embedder = get_embedder(embedder, self.ctx)
        self.n_boot = n_boot

    def sides(self, pair: ClipPair) -> tuple[str | None, str | None]:
        return pair.pred_audio, pair.ref_audio

    def embed_sides(self, first: list[str], second: list[str]) -> tuple[list[Any], list[Any]]:
        return logits_files(self.embedder, first, self.ctx), logits_files(self.embedder, second, self.ctx)

    def batch_rows(self, pairs: list[ClipPair], a: list[np.ndarray], b: list[np.ndarray]) -> list[Any]:
        """Per-clip KL of a batch in one vectorised call (row i depends on clip i only)."""
        if not pairs:
            return []
        kl = kl_divergence(np.stack([np.asarray(r).reshape(-1) for r in b]),
                           np.stack([np.asarray(g).reshape(-1) for g in a]))
        return [float(v) for v in kl]

    def extras(self, ids: list[str], values: np.ndarray) -> dict[str, Any]:
        extras: dict[str, Any] = {"direction": "KL(ref || gen)", "probabilities": "softmax over logits",
                                  "per_clip": dict(zip(ids, values.tolist()))}
        if not ids:
            extras["reason"] = "no clip could be scored"
            return extras
        order = np.argsort(-values, kind="stable")[:N_WORST]
        extras["worst"] = [(ids[i], float(values[i])) for i in order]
        extras["bootstrap"] = {"n_boot": self.n_boot, "unit": "clips", "seed": self.ctx.seed}
        return extras

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, "direction": "KL(ref || gen)",
                **self.embedder.provenance()}
