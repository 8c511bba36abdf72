"""Percentile bootstrap: determinism, coverage, width scaling."""
from __future__ import annotations

import numpy as np
import pytest

from foleybench.metrics.functional import bootstrap_ci


def test_contains_mean_and_deterministic_per_seed() -> None:
    v = np.random.default_rng(0).normal(0.5, 0.2, 200)
    low, high = bootstrap_ci(v)
    assert low < v.mean() < high
    assert bootstrap_ci(v, seed=0) == (low, high)
    assert bootstrap_ci(v, seed=1) != (low, high)


def test_width_matches_normal_theory_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(1)
    widths = {}
    for n in (50, 5000):
        v = rng.normal(0.0, 1.0, n)
        low, high = bootstrap_ci(v, n_boot=2000)
        widths[n] = high - low
        # 95% normal interval of a mean: width 2 * 1.96 * s / sqrt(n).
        expected = 2 * 1.96 * v.std(ddof=1) / np.sqrt(n)
        assert widths[n] == pytest.approx(expected, rel=0.15)
    assert widths[5000] < widths[50] / 5  # ~ sqrt(100) = 10x narrower


def test_coverage_near_nominal() -> None:
    # 300 data sets of N = 60 from N(0, 1): the 95% interval should contain 0 in roughly
    # 95% of them (percentile bootstrap under-covers a little at small N).
    rng = np.random.default_rng(2)
    hits = 0
    for k in range(300):
        low, high = bootstrap_ci(rng.normal(0.0, 1.0, 60), n_boot=500, seed=k)
        hits += low <= 0.0 <= high
    assert 0.88 <= hits / 300 <= 0.99


def test_custom_stat_and_edges() -> None:
    v = np.random.default_rng(3).exponential(1.0, 101)
    vectorised = bootstrap_ci(v, stat=np.median)
    looped = bootstrap_ci(v, stat=lambda s: float(np.median(s)))  # same draws, per-row path
    assert vectorised == looped
    low, high = bootstrap_ci(v, alpha=0.5)
    wide = bootstrap_ci(v, alpha=0.01)
    assert wide[0] < low < high < wide[1]
    assert bootstrap_ci([0.3]) == (0.3, 0.3)
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, np.nan])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], alpha=1.5)
