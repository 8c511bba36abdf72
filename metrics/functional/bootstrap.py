"""Seeded percentile bootstrap confidence intervals."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

# Statistics known to accept ``axis=``, so resamples can be reduced in one vectorised call.
_AXIS_STATS = {np.mean, np.median, np.std, np.var, np.sum, np.nanmean, np.nanmedian}
# Rows of resample indices processed per chunk: bounds memory at ~8 * N * chunk bytes.
_MAX_CHUNK_ELEMENTS = 4_000_000


def bootstrap_ci(
    values: Any,
    stat: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of ``stat`` over ``values [N]``.

    Draws ``n_boot`` resamples of size N with replacement from
    ``np.random.default_rng(seed)``, applies ``stat`` to each and returns the
    alpha/2 and 1 - alpha/2 percentiles (numpy's linear interpolation). Same inputs and
    seed give the same interval. N = 1 gives (v, v). Raises ValueError on empty or
    non-finite values.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.isfinite(v).all():
        raise ValueError("bootstrap_ci values hold NaN or inf")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    n = v.size
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    boot = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        samples = v[rng.integers(0, n, size=(rows, n))]
        if stat in _AXIS_STATS:
            boot[start:start + rows] = stat(samples, axis=1)
        else:
            boot[start:start + rows] = [float(stat(s)) for s in samples]
    low, high = np.percentile(boot, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(low), float(high)
