"""Frechet distances between generated and reference embeddings: the shared Frechet
metric and the audio FDs (``fd_<embedder>``); FVD (metrics/fvd.py) is the same metric
with a video embedder and StyleGAN-V's covariance convention.

State (keyed by clip id, see metrics/base.py): each scored clip's generated and
reference embedding rows, ``[F, D]`` each. A clip takes part only when both its files
embed: pairing is by clip id (METRICS.md), so the two sets describe the same clips. At
compute the rows are summed, clip by clip in sorted clip-id order, into two streaming
Gaussian accumulators (float64 count, sum, sum of outer products), one matrix product
per side; that order makes the value bit-identical however the clips were batched or
sharded. The rows also give the
bootstrap interval and FD-infinity.

A long input (longer than ``media_long.LEAN_ABOVE_S``, from an embedder that streams
statistics: EnCodec) arrives as its rows' statistics instead (count, float64 mean,
centred scatter: ``frechet_state.RowStats``, packed), made while the rows streamed so
they were never held. Such clips merge by Chan's formula into the value and, weighted by
their draw counts, into each bootstrap draw: the rows path's result to float64 rounding.
FD-infinity resamples rows, so it is not computed when a clip is statistics (the extras
say why). Without statistics the arithmetic is the rows path's, bit for bit.

Frame-level embedders (VGGish, EnCodec, melstat) contribute every frame as a sample;
the result then reports ``n`` = clips and ``extras['n_frames_*']`` = frames.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from foleybench.api import ClipPair, MetricValue, ScoreContext
from foleybench.cache import ValueMemo, embed_files
from foleybench.metrics.base import PairedEmbedding
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.frechet_state import FrechetState, is_clip_stats, item_count, mixed_stats, row_blocks
from foleybench.metrics.functional.frechet import bootstrap_fd, fd_infinity, frechet_distance

COVARIANCE = {0: "divided by N (ddof=0)", 1: "unbiased (N-1)"}

_IMPL: dict[type, str] = {}
# What can change the last bits of a Frechet value besides its inputs: BLAS threading.
_THREAD_VARS = ("FOLEYBENCH_FRECHET_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _implementation_id(cls: type) -> str:
    """sha256 of the code a Frechet result comes from (this module, the metric's own
    module, the Frechet functions and statistics), numpy's and scipy's versions, the
    machine and its BLAS thread settings: a value memoised under one never serves another."""
    if cls not in _IMPL:
        import scipy

        from foleybench.metrics import frechet_state
        from foleybench.metrics.functional import bootstrap, frechet

        h = hashlib.sha256()
        for f in sorted({__file__, inspect.getfile(cls), frechet.__file__, frechet_state.__file__,
                         bootstrap.__file__}):
            h.update(Path(f).read_bytes())
        env = [np.__version__, scipy.__version__, platform.machine(), str(os.cpu_count()),
               *(f"{v}={os.environ.get(v, '')}" for v in _THREAD_VARS)]
        h.update("|".join(env).encode())
        _IMPL[cls] = h.hexdigest()
    return _IMPL[cls]


class FrechetMetric(PairedEmbedding):
    """FD between the generated and the reference set of one modality (lower is better).

    ``modality`` ("audio" or "video") picks which files of a pair are compared; ``ddof``
    is the covariance convention (1: N-1, pytorch-fid/fadtk/av-benchmark; 0: divide by
    N, StyleGAN-V FVD). Subclasses give ``extras`` (what is recorded about the
    statistics) and may add an interval in ``finish``.
    """

    higher_is_better = False
    modality: ClassVar[str]
    too_few: ClassVar[str] = "fewer than 2 samples on a side"

    def __init__(self, ctx: ScoreContext | None, embedder: str, ddof: int, **embedder_opts: Any):
        super().__init__(ctx)
        if ddof not in COVARIANCE:
            raise ValueError(f"ddof must be 0 (divide by N) or 1 (unbiased), not {ddof}")
        self.embedder_name, self.ddof = embedder, ddof
        self.embedder = get_embedder(embedder, self.ctx, **embedder_opts)
        self.dim = int(self.embedder.dim)

    def sides(self, pair: ClipPair) -> tuple[str | None, str | None]:
        if self.modality == "audio":
            return pair.pred_audio, pair.ref_audio
        return pair.pred_video, pair.ref_video

    def embed_sides(self, first: list[str], second: list[str]) -> tuple[list[Any], list[Any]]:
        # stats=True: a long input may come back as its frames' statistics (frechet_state)
        return (embed_files(self.embedder, first, self.ctx, stats=True),
                embed_files(self.embedder, second, self.ctx, stats=True))

    def row(self, pair: ClipPair, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(generated ``[F, D]``, reference ``[F', D]``) float32 rows of one clip (a long
        input's side may be its packed statistics instead, kept as they are)."""
        return self._item(a), self._item(b)

    def extras(self, gen: FrechetState, ref: FrechetState, n: int) -> dict[str, Any]:
        return {}

    def finish(self, rows: Sequence[tuple[np.ndarray, np.ndarray]], mu_r: np.ndarray, s_r: np.ndarray,
               extras: dict[str, Any]) -> tuple[float, float] | None:
        """The interval (or None) once the value exists; may add to ``extras``."""
        return None

    def compute(self) -> MetricValue:
        ids, rows = self.sorted_rows()
        n = len(ids)
        # All clips' rows in sorted-id order, centred, one float64 product per side: the
        # value does not depend on how the clips were batched or sharded when they were
        # scored, and centring first (as numpy.cov) avoids the cancellation of
        # sum(x x^T) - n mu mu^T for embeddings whose mean is large against their spread.
        # Many rows (a long input's frames) are not stacked: centred_stats_blocks.
        # A long input's rows may arrive reduced to their statistics (frechet_state.RowStats,
        # packed): those clips are merged by Chan's formula (mixed_stats); without any, the
        # arithmetic is exactly the stacked rows'.
        b_g = [self._item(g) for g, _ in rows]
        b_r = [self._item(r) for _, r in rows]
        gen, ref = FrechetState(self.dim), FrechetState(self.dim)
        gen.count = sum(item_count(b, self.dim) for b in b_g)  # extras read the counts
        ref.count = sum(item_count(b, self.dim) for b in b_r)
        extras = self.extras(gen, ref, n)
        if gen.count < 2 or ref.count < 2:
            extras["reason"] = self.too_few
            return MetricValue(None, n, None, extras)
        memo, key = self._memo(b_g, b_r, rows)
        done = memo.get(key) if memo is not None else None
        if done is not None:  # the same rows, options and code: the value computed before
            extras.update(done["extras"])
            ci = done["ci"]
            return MetricValue(done["value"], n, tuple(ci) if ci is not None else None, extras)
        mu_g, s_g = mixed_stats(b_g, self.dim, self.ddof)
        mu_r, s_r = mixed_stats(b_r, self.dim, self.ddof)
        value = frechet_distance(mu_g, s_g, mu_r, s_r)
        before = dict(extras)
        ci = self.finish(rows, mu_r, s_r, extras)
        out = MetricValue(float(value), n, ci, extras)
        if memo is not None:  # what finish added (the interval's options, FD-infinity...)
            added = {k: v for k, v in extras.items() if k not in before or before[k] != v}
            memo.put(key, {"value": out.value, "ci": list(ci) if ci is not None else None, "extras": added})
        return out

    def _item(self, x: Any) -> np.ndarray:
        """A clip's side: packed statistics as they are, rows as ``[F, D]``."""
        return x if is_clip_stats(x, self.dim) else np.asarray(x).reshape(-1, self.dim)

    def memo_options(self) -> dict[str, Any]:
        """Everything besides the rows that can shape ``compute``'s result (memo key): the
        metric's plain-valued attributes (ddof, n_boot, fd_inf, ...) and the run's seed."""
        plain = {k: v for k, v in sorted(vars(self).items())
                 if not k.startswith("_") and (v is None or isinstance(v, (bool, int, float, str)))}
        return {**plain, "seed": self.ctx.seed}

    def _memo(self, b_g: Sequence[np.ndarray], b_r: Sequence[np.ndarray],
              rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[ValueMemo | None, str]:
        """The value memo of the embedding cache (None without one) and this result's key:
        sha256 of the stacked float64 rows (hashed block by block: the same digest), each
        clip's row counts (the bootstrap resamples clips), the options, the implementation's
        source and the numeric environment."""
        if not self.ctx.cache_dir or os.environ.get("FOLEYBENCH_NO_VALUE_MEMO"):
            return None, ""
        h = hashlib.sha256(b"frechet-metric-v1|" + _implementation_id(type(self)).encode())
        h.update(json.dumps([type(self).__qualname__, self.name, self.memo_options()], sort_keys=True).encode())
        for blocks in (b_g, b_r):
            counts = [item_count(b, self.dim) for b in blocks]
            stats = [i for i, b in enumerate(blocks) if is_clip_stats(b, self.dim)]
            shape = (sum(counts), self.dim)
            if not stats:
                h.update(f"|{shape}|float64|{counts}|".encode())
                for x in row_blocks(list(blocks), self.dim):
                    h.update(np.ascontiguousarray(x).tobytes())
                continue
            # statistics clips (named by position) hash their packed float64 bytes
            h.update(f"|{shape}|float64|{counts}|stats{stats}|".encode())
            for b in blocks:
                parts = [b] if is_clip_stats(b, self.dim) else row_blocks([b], self.dim)
                for x in parts:
                    h.update(np.ascontiguousarray(x).tobytes())
        return ValueMemo(self.ctx.cache_dir), h.hexdigest()

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, **self.embedder.provenance()}


class FDMetric(FrechetMetric):
    """Audio FD (``fd_vggish``, ``fd_panns``...), V2A: generated vs reference audio.

    n_boot: bootstrap draws over clips (default 200 up to D = 256, else 0: each draw is
    a D x D eigendecomposition, seconds at D = 2048); fd_inf: also report FD-infinity.
    """

    version = "1"
    tasks = ("v2a",)
    modality = "audio"

    def __init__(self, ctx: ScoreContext | None = None, embedder: str = "melstat", n_boot: int | None = None,
                 fd_inf: bool = False, ddof: int = 1):
        super().__init__(ctx, embedder, ddof)
        self.name = f"fd_{embedder}"
        self.n_boot = n_boot if n_boot is not None else (200 if self.dim <= 256 else 0)
        self.fd_inf = fd_inf

    def extras(self, gen: FrechetState, ref: FrechetState, n: int) -> dict[str, Any]:
        return {"n_frames_gen": int(gen.count), "n_frames_ref": int(ref.count),
                "n_unit": "frames" if self.embedder.frames_level else "clips",
                "covariance": COVARIANCE[self.ddof]}

    def finish(self, rows: Sequence[tuple[np.ndarray, np.ndarray]], mu_r: np.ndarray, s_r: np.ndarray,
               extras: dict[str, Any]) -> tuple[float, float] | None:
        seed = self.ctx.seed
        ci = (bootstrap_fd([g for g, _ in rows], [r for _, r in rows], self.n_boot, seed, self.ddof)
              if len(rows) >= 2 and self.n_boot else None)
        extras["bootstrap"] = ({"n_boot": self.n_boot, "unit": "clips", "seed": seed} if self.n_boot
                               else f"off by default for D = {self.dim} > 256 (n_boot=...)")
        stats = any(is_clip_stats(g, self.dim) for g, _ in rows)
        if self.fd_inf and stats:
            extras["fd_inf"] = None
            extras["fd_inf_reason"] = ("a long input's rows were reduced to statistics while they streamed; "
                                       "FD-infinity resamples rows")
        elif self.fd_inf:
            x = np.concatenate([g for g, _ in rows])
            # fadtk starts the 1/N fit at 500 samples; small sets start at a quarter of N.
            min_n = min(500, max(2, len(x) // 4))
            fd_inf, slope, _ = fd_infinity(x, mu_r, s_r, min_n=min_n, seed=seed)
            extras.update({"fd_inf": fd_inf, "fd_inf_slope": slope, "fd_inf_min_n": min_n})
        return ci
