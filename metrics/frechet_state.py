"""Streaming Gaussian statistics for Frechet distances.

The state is three float64 sums (count, sum ``[D]``, sum of outer products ``[D, D]``),
so shards computed on different workers or machines merge exactly by addition, in any
order, and the final statistics do not depend on how the samples were batched (up to
float64 rounding of the sums).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from foleybench.cache import is_stats
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


# ------------------------------------------------------------------ per-clip statistics
# A long input's frame-level rows (EnCodec: 75 per second) can be reduced to their
# sufficient statistics while they stream, so they are never held. A clip's statistics
# travel as one float64 array ``[D + 2, D]`` (picklable into shard state files, storable as
# an embedding cache "stats" entry, foleybench.cache.is_stats): row 0 is ``[count, 0, ...,
# 0]``, row 1 the mean, rows 2.. the centred scatter sum (x - mean)(x - mean)^T. Rows are
# float32 ``[F, D]``, so the two never look alike.


def stats_rows_cost(dim: int) -> int:
    """float32 rows that take the memory of one clip's packed statistics (float64 ``[D+2, D]``)."""
    return 2 * (int(dim) + 2)


def is_clip_stats(a: Any, dim: int | None = None) -> bool:
    """True for a clip's packed statistics (:meth:`RowStats.pack`; the format and its
    checks live with the cache's statistics entries, foleybench.cache.is_stats)."""
    return is_stats(a, dim)


class RowStats:
    """Count, float64 mean ``[D]`` and centred scatter ``[D, D]`` of rows seen so far.

    Each block of rows is reduced by centring on its own mean (numpy.cov's arithmetic) and
    merged by Chan et al.'s parallel formula (exact in real arithmetic: merging blocks
    gives the statistics of their concatenation, up to float64 rounding), so memory is
    one block whatever the number of rows.
    """

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.count = 0
        self.mean = np.zeros(self.dim, np.float64)
        self.scatter = np.zeros((self.dim, self.dim), np.float64)

    def add_rows(self, x: Any, block: int | None = None) -> "RowStats":
        """Add rows ``x [N, D]`` (any float dtype), at most ``block`` (default
        :data:`BLOCK_ROWS`) converted to float64 at a time; returns self."""
        for b in row_blocks([x], self.dim, block):
            n = len(b)
            if n == 0:
                continue
            mu = b.mean(axis=0)
            xc = b - mu
            self._merge(n, mu, xc.T @ xc)
        return self

    def add_stats(self, other: "RowStats") -> "RowStats":
        """Merge another set's statistics (Chan's formula); returns self."""
        if other.dim != self.dim:
            raise ValueError(f"can only merge statistics of dim {self.dim}, got {other.dim}")
        if other.count:
            self._merge(other.count, other.mean, other.scatter)
        return self

    def _merge(self, n: int, mu: np.ndarray, scatter: np.ndarray) -> None:
        if self.count == 0:
            self.count, self.mean, self.scatter = int(n), np.array(mu, np.float64), np.array(scatter, np.float64)
            return
        total = self.count + n
        delta = mu - self.mean
        self.mean = self.mean + delta * (n / total)
        self.scatter = self.scatter + scatter + np.outer(delta, delta) * (self.count * n / total)
        self.count = total

    def cov(self, ddof: int = 1) -> np.ndarray:
        if self.count <= ddof:
            raise ValueError(f"need more than {ddof} samples for ddof={ddof}, have {self.count}")
        s = self.scatter
        return (s + s.T) / (2.0 * (self.count - ddof))

    def pack(self) -> np.ndarray:
        """The float64 ``[D + 2, D]`` array :func:`is_clip_stats` recognises."""
        if self.count < 1:
            raise ValueError("no rows: nothing to pack")
        out = np.zeros((self.dim + 2, self.dim), np.float64)
        out[0, 0] = self.count
        out[1] = self.mean
        out[2:] = self.scatter
        return out

    @classmethod
    def unpack(cls, a: np.ndarray) -> "RowStats":
        if not is_clip_stats(a):
            raise ValueError(f"not packed clip statistics: {getattr(a, 'dtype', type(a))} {getattr(a, 'shape', '')}")
        st = cls(a.shape[1])
        st.count, st.mean, st.scatter = int(a[0, 0]), np.array(a[1]), np.array(a[2:])
        return st

    @classmethod
    def of(cls, item: Any, dim: int) -> "RowStats":
        """Statistics of one clip's item: packed statistics, or rows ``[F, D]``."""
        if is_clip_stats(item, dim):
            return cls.unpack(item)
        return cls(dim).add_rows(item)


def item_count(item: Any, dim: int) -> int:
    """Rows of a clip's item: packed statistics give their count, rows their length."""
    if is_clip_stats(item, dim):
        return int(item[0, 0])
    return len(np.asarray(item).reshape(-1, dim))


def mixed_stats(items: "list[Any]", dim: int, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of clips given as rows or packed statistics, in the given
    order. Without statistics among them: exactly :func:`centred_stats_blocks`. Otherwise
    the clips' rows (all of them, stacked as there) and then each statistics item are
    merged by Chan's formula: the same statistics up to float64 rounding."""
    stats = [i for i, it in enumerate(items) if is_clip_stats(it, dim)]
    if not stats:
        return centred_stats_blocks(items, dim, ddof)
    rows = [it for i, it in enumerate(items) if i not in set(stats)]
    acc = RowStats(dim)
    n_rows = sum(len(np.asarray(b).reshape(-1, dim)) for b in rows)
    if n_rows:
        if n_rows * dim <= STACK_MAX:
            acc.add_rows(np.concatenate([np.asarray(b, np.float64).reshape(-1, dim) for b in rows]), block=n_rows)
        else:
            for b in rows:
                acc.add_rows(b)
    for i in stats:
        acc.add_stats(RowStats.unpack(items[i]))
    return acc.mean, acc.cov(ddof)
