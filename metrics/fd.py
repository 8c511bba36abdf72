"""Frechet distance between generated and reference embeddings (``fd_<embedder>``).

State: two streaming Gaussian accumulators (count, sum, sum of outer products, float64)
that merge by addition, plus each clip's embedding rows so that a bootstrap interval
and FD-infinity can be computed at the end. A clip takes part only when both its
generated and its reference file embed: pairing is by clip id (METRICS.md), so the two
sets always describe the same clips.

Frame-level embedders (VGGish, EnCodec, melstat) contribute every frame as a sample;
the result then reports ``n`` = clips and ``extras['n_frames']`` = frames.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, Metric, MetricValue, ScoreContext
from foleybench.cache import embed_files
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.frechet_state import FrechetState
from foleybench.metrics.functional.frechet import fd_infinity, frechet_distance


def _boot_fd(gen: list[np.ndarray], ref: list[np.ndarray], n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile bootstrap over clips (paired resampling), 95%."""
    rng = np.random.default_rng(seed)
    n = len(gen)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        g = np.concatenate([gen[i] for i in idx]).astype(np.float64)
        r = np.concatenate([ref[i] for i in idx]).astype(np.float64)
        if len(g) < 2 or len(r) < 2:
            continue
        vals.append(frechet_distance(g.mean(0), np.cov(g, rowvar=False), r.mean(0), np.cov(r, rowvar=False)))
    if not vals:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


class FDMetric(Metric):
    higher_is_better = False
    version = "1"
    tasks = ("v2a",)

    def __init__(self, ctx: ScoreContext | None = None, embedder: str = "melstat", n_boot: int | None = None,
                 fd_inf: bool = False):
        self.ctx = ctx or ScoreContext()
        self.embedder_name = embedder
        self.name = f"fd_{embedder}"  # type: ignore[misc]
        self.embedder = get_embedder(embedder, self.ctx)
        self.dim = int(self.embedder.dim)
        self.gen_state = FrechetState(self.dim)
        self.ref_state = FrechetState(self.dim)
        self.gen_rows: list[np.ndarray] = []
        self.ref_rows: list[np.ndarray] = []
        self.ids: list[str] = []
        # Each bootstrap draw is a D x D eigendecomposition: at D = 2048 (PANNs) that is
        # seconds per draw, so intervals are on by default only up to D = 256.
        self.n_boot = n_boot if n_boot is not None else (200 if self.dim <= 256 else 0)
        self.fd_inf = fd_inf

    def _paths(self, pairs: Sequence[ClipPair]) -> tuple[list[str], list[str]]:
        return [p.pred_audio or "" for p in pairs], [p.ref_audio or "" for p in pairs]

    def update(self, pairs: Sequence[ClipPair]) -> list[tuple[str, str]]:
        gen_paths, ref_paths = self._paths(pairs)
        gen = embed_files(self.embedder, gen_paths, self.ctx)
        ref = embed_files(self.embedder, ref_paths, self.ctx)
        excluded = []
        for pair, g, r in zip(pairs, gen, ref):
            bad = g if isinstance(g, InputError) else r if isinstance(r, InputError) else None
            if bad is not None:
                excluded.append((pair.clip_id, str(bad)))
                continue
            g2, r2 = np.asarray(g).reshape(-1, self.dim), np.asarray(r).reshape(-1, self.dim)
            self.gen_state.update(g2)
            self.ref_state.update(r2)
            self.gen_rows.append(g2)
            self.ref_rows.append(r2)
            self.ids.append(pair.clip_id)
        return excluded

    def merge(self, other: "FDMetric") -> "FDMetric":
        self.gen_state.merge(other.gen_state)
        self.ref_state.merge(other.ref_state)
        self.gen_rows += other.gen_rows
        self.ref_rows += other.ref_rows
        self.ids += other.ids
        return self

    def compute(self) -> MetricValue:
        n = len(self.ids)
        extras: dict[str, Any] = {"n_frames_gen": int(self.gen_state.count),
                                  "n_frames_ref": int(self.ref_state.count),
                                  "n_unit": "frames" if self.embedder.frames_level else "clips",
                                  "covariance": "unbiased (N-1)"}
        if self.gen_state.count < 2 or self.ref_state.count < 2:
            extras["reason"] = "fewer than 2 samples on a side"
            return MetricValue(None, n, None, extras)
        mu_g, s_g = self.gen_state.stats(ddof=1)
        mu_r, s_r = self.ref_state.stats(ddof=1)
        value = frechet_distance(mu_g, s_g, mu_r, s_r)
        ci = _boot_fd(self.gen_rows, self.ref_rows, self.n_boot, self.ctx.seed) if n >= 2 and self.n_boot else None
        extras["bootstrap"] = ({"n_boot": self.n_boot, "unit": "clips", "seed": self.ctx.seed} if self.n_boot
                               else f"off by default for D = {self.dim} > 256 (n_boot=...)")
        if self.fd_inf:
            rows = np.concatenate(self.gen_rows)
            # fadtk starts the 1/N fit at 500 samples; small sets start at a quarter of N.
            min_n = min(500, max(2, len(rows) // 4))
            fd_inf, slope, _ = fd_infinity(rows, mu_r, s_r, min_n=min_n, seed=self.ctx.seed)
            extras.update({"fd_inf": fd_inf, "fd_inf_slope": slope, "fd_inf_min_n": min_n})
        return MetricValue(float(value), n, ci, extras)

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, **self.embedder.provenance()}
