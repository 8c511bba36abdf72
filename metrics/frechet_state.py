"""Streaming Gaussian statistics for Frechet distances.

The state is three float64 sums (count, sum ``[D]``, sum of outer products ``[D, D]``),
so shards computed on different workers or machines merge exactly by addition, in any
order, and the final statistics do not depend on how the samples were batched (up to
float64 rounding of the sums).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from foleybench.metrics.functional.frechet import as_float64


class FrechetState:
    """Running sums of embeddings ``x [N, D]`` for FD statistics.

    Attributes: ``count`` (int, samples seen), ``sum`` (float64 ``[D]``), ``sum_outer``
    (float64 ``[D, D]``, sum of x_i x_i^T).
    """

    def __init__(self, dim: int):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = int(dim)
        self.count = 0
        self.sum = np.zeros(self.dim, dtype=np.float64)
        self.sum_outer = np.zeros((self.dim, self.dim), dtype=np.float64)

    def update(self, x: Any) -> "FrechetState":
        """Add samples ``x [N, D]`` (numpy or torch, any float dtype); returns self."""
        a = as_float64(x)
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"samples must be [N, {self.dim}], got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("samples hold NaN or inf")
        self.count += a.shape[0]
        self.sum += a.sum(axis=0)
        self.sum_outer += a.T @ a
        return self

    def update_many(self, batches: "list[Any]") -> "FrechetState":
        """Add several ``[N_i, D]`` sample blocks with one float64 matrix product.

        The blocks are stacked in the given order and go through :meth:`update` once:
        one ``X^T X`` for the whole batch instead of one per block (per clip, or per row
        for clip-level embedders), which BLAS runs at full speed. Returns self.
        """
        if not batches:
            return self
        return self.update(np.concatenate([as_float64(b).reshape(-1, self.dim) for b in batches]))

    def merge(self, other: "FrechetState") -> "FrechetState":
        """Add another shard's sums into this one (exact combination); returns self."""
        if not isinstance(other, FrechetState) or other.dim != self.dim:
            raise ValueError(f"can only merge a FrechetState of dim {self.dim}")
        self.count += other.count
        self.sum += other.sum
        self.sum_outer += other.sum_outer
        return self

    def stats(self, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``[D]`` and covariance ``[D, D]`` in float64.

        ddof=1: unbiased N-1 (numpy.cov, pytorch-fid, fadtk, av-benchmark); ddof=0:
        divide by N (StyleGAN-V FVD protocol).
        """
        if ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 or 1, got {ddof}")
        if self.count <= ddof:
            raise ValueError(f"need more than {ddof} samples for ddof={ddof}, have {self.count}")
        n = self.count
        mu = self.sum / n
        # sum (x - mu)(x - mu)^T = sum x x^T - n mu mu^T; float64 keeps the cancellation
        # harmless for embeddings whose mean is not orders of magnitude above their spread.
        scatter = self.sum_outer - n * np.outer(mu, mu)
        sigma = (scatter + scatter.T) / (2.0 * (n - ddof))
        return mu, sigma

    def state_dict(self) -> dict[str, Any]:
        """Arrays and count, for saving a shard (np.savez) and reloading it."""
        return {"dim": self.dim, "count": self.count, "sum": self.sum.copy(), "sum_outer": self.sum_outer.copy()}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> "FrechetState":
        st = cls(int(d["dim"]))
        st.count = int(d["count"])
        st.sum = np.asarray(d["sum"], dtype=np.float64).copy()
        st.sum_outer = np.asarray(d["sum_outer"], dtype=np.float64).copy()
        if st.sum.shape != (st.dim,) or st.sum_outer.shape != (st.dim, st.dim):
            raise ValueError("state arrays do not match dim")
        return st


def centred_stats(x: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of float64 rows ``x`` ``[N, D]``, centred before the one matrix
    product (numpy.cov's arithmetic; ddof as :meth:`FrechetState.stats`)."""
    n = len(x)
    if n <= ddof:
        raise ValueError(f"need more than {ddof} samples for ddof={ddof}, have {n}")
    mu = x.mean(axis=0)
    xc = x - mu
    scatter = xc.T @ xc
    return mu, (scatter + scatter.T) / (2.0 * (n - ddof))


STACK_MAX = 1 << 23  # float64 entries (64 MB) up to which the rows are stacked for one product
BLOCK_ROWS = 1 << 14  # rows per float64 block beyond that


def row_blocks(blocks: "list[Any]", dim: int, rows: int | None = None) -> "Iterator[np.ndarray]":
    """The float64 ``[<=rows, dim]`` pieces of ``blocks`` in order (each clip's rows cut
    into pieces of at most ``rows``, default :data:`BLOCK_ROWS`): their concatenation is
    the stacked rows."""
    rows = BLOCK_ROWS if rows is None else rows
    for b in blocks:
        a = np.asarray(b).reshape(-1, dim)
        for i in range(0, len(a), rows):
            yield np.asarray(a[i:i + rows], dtype=np.float64)


def centred_stats_blocks(blocks: "list[Any]", dim: int, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """:func:`centred_stats` of the rows ``blocks`` stack to, without stacking them when they
    are many (more than :data:`STACK_MAX` entries): the mean from float64 block sums, then
    the scatter of the centred rows block by block, so memory is one block whatever the
    number of rows. Up to that size the rows are stacked and the arithmetic is exactly
    :func:`centred_stats`'s; beyond it the sums are grouped differently (float64 rounding)."""
    n = sum(len(np.asarray(b).reshape(-1, dim)) for b in blocks)
    if n * dim <= STACK_MAX:
        x = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, dim) for b in blocks]) if blocks \
            else np.zeros((0, dim))
        return centred_stats(x, ddof)
    if n <= ddof:
        raise ValueError(f"need more than {ddof} samples for ddof={ddof}, have {n}")
    total = np.zeros(dim, np.float64)
    for x in row_blocks(blocks, dim):
        total += x.sum(axis=0)
    mu = total / n
    scatter = np.zeros((dim, dim), np.float64)
    for x in row_blocks(blocks, dim):
        xc = x - mu
        scatter += xc.T @ xc
    return mu, (scatter + scatter.T) / (2.0 * (n - ddof))
