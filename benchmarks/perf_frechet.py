"""Timing of the Frechet distance at D = 2048: our symmetric route (Cholesky, eigh fallback) vs pytorch-fid's scipy sqrtm.

``run()`` returns seconds (median of repeats after one warm-up call each), the speed-up
and the relative difference of the two results. Inputs: two random well-conditioned
covariances, each from N = 4096 samples of a random linear mix plus isotropic noise.
``cached_seconds`` times :class:`FrechetReference.distance` with the reference's
factorisation already done (the FD-infinity / leaderboard case).

Calls run round-robin so load from other processes hits both routes alike. On a shared,
oversubscribed machine multithreaded LAPACK timings swing a lot; ``OPENBLAS_NUM_THREADS=1``
gives a steadier per-core ratio.

Run: ``python benchmarks/perf_frechet.py``.
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Callable

import numpy as np

from foleybench.metrics.functional.frechet import (
    FrechetReference,
    frechet_distance,
    frechet_distance_scipy,
    gaussian_stats,
)

D = 2048
N = 4096


def _stats(rng: np.random.Generator, shift: float) -> tuple[np.ndarray, np.ndarray]:
    mix = rng.standard_normal((D, D)) / np.sqrt(D)
    x = rng.standard_normal((N, D)) @ mix + 0.5 * rng.standard_normal((N, D)) + shift
    return gaussian_stats(x)


def _interleaved_medians(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall time of ``repeats`` calls of each function after one untimed warm-up
    each, plus its result. Calls go round-robin, so load from other processes on a shared
    machine falls on all contenders alike instead of on whichever ran during a spike."""
    results = {k: fn() for k, fn in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            results[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return {k: (statistics.median(times[k]), results[k]) for k in fns}


def run(repeats: int = 3, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    mu1, s1 = _stats(rng, 0.0)
    mu2, s2 = _stats(rng, 0.1)
    ref = FrechetReference(mu1, s1)
    r = _interleaved_medians(
        {
            "ours": lambda: frechet_distance(mu1, s1, mu2, s2),
            "scipy": lambda: frechet_distance_scipy(mu1, s1, mu2, s2),
            "cached": lambda: ref.distance(mu2, s2),
        },
        repeats,
    )
    (ours_s, ours), (scipy_s, theirs), (cached_s, cached) = r["ours"], r["scipy"], r["cached"]
    return {
        "frechet.d2048.seconds": ours_s,
        "frechet.d2048.scipy_seconds": scipy_s,
        "frechet.d2048.speedup": scipy_s / ours_s,
        "frechet.d2048.rel_diff": abs(ours - theirs) / abs(theirs),
        "frechet.d2048.cached_seconds": cached_s,
        "frechet.d2048.cached_speedup": scipy_s / cached_s,
        "frechet.d2048.cached_rel_diff": abs(cached - theirs) / abs(theirs),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
