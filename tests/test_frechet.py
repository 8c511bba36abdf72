"""Frechet distance (eigh route), its scipy comparison route, FD-infinity, streaming state."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from foleybench.metrics.frechet_state import FrechetState
from foleybench.metrics.functional import FrechetReference, fd_infinity, frechet_distance, gaussian_stats
from foleybench.metrics.functional.frechet import frechet_distance_scipy


def _random_stats(rng: np.random.Generator, d: int, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Well-conditioned stats: N > D samples of a random linear mix plus identity noise."""
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    x = rng.standard_normal((n, d)) @ mix + 0.5 * rng.standard_normal((n, d)) + shift
    return gaussian_stats(x)


def _trace_sqrt_independent(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr((S1^1/2 S2 S1^1/2)^1/2) as the nuclear norm of S1^1/2 S2^1/2 (SVD route)."""

    def psd_sqrt(s: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(s)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    return float(np.linalg.svd(psd_sqrt(s1) @ psd_sqrt(s2), compute_uv=False).sum())


@pytest.mark.parametrize("d,n,factorization", [(64, 256, "eigh"), (64, 256, "auto"), (2048, 4096, "auto")])
def test_agrees_with_scipy_route(d: int, n: int, factorization: str) -> None:
    rng = np.random.default_rng(d)
    mu1, s1 = _random_stats(rng, d, n)
    mu2, s2 = _random_stats(rng, d, n, shift=0.1)
    assert FrechetReference(mu1, s1, factorization).factorization == ("eigh" if factorization == "eigh" else "cholesky")
    ours = frechet_distance(mu1, s1, mu2, s2, factorization)
    theirs = frechet_distance_scipy(mu1, s1, mu2, s2)
    assert ours > 0
    assert abs(ours - theirs) / theirs < 1e-6


def test_rank_deficient_where_sqrtm_goes_complex() -> None:
    # N = 30 samples in D = 256 with large scale: both covariances have rank 29. This is
    # pytorch-fid's classic failure: sqrtm returns a complex matrix whose imaginary part
    # is too large to drop, and the route raises.
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((30, 256)) * 1e3).astype(np.float32)
    y = (rng.standard_normal((30, 256)) * 5e2 + 0.3).astype(np.float32)
    mu1, s1 = gaussian_stats(x)
    mu2, s2 = gaussian_stats(y)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    assert np.iscomplexobj(covmean) or not np.isfinite(covmean).all()
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance_scipy(mu1, s1, mu2, s2)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(ours) and ours >= 0
    # Cholesky breaks down on the singular covariance, so "auto" falls back to eigh; the
    # cross term agrees with an independent SVD-based computation.
    ref = FrechetReference(mu1, s1)
    assert ref.factorization == "eigh"
    with pytest.raises(ValueError, match="positive definite"):
        FrechetReference(mu1, s1, "cholesky")
    tr_ours = ref.trace_sqrt_product(s2)
    tr_ind = _trace_sqrt_independent(s1, s2)
    assert abs(tr_ours - tr_ind) / tr_ind < 1e-7


def test_factorizations_agree_with_high_precision_on_near_singular() -> None:
    # Two nearly collinear features (condition number ~1e14, still PD in float64): both
    # factorisations sit at the float64 floor of a 40-digit mpmath computation.
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2000, 24))
    x[:, 0] = x[:, 1] + 1e-7 * x[:, 0]
    _, s1 = gaussian_stats(x)
    _, s2 = gaussian_stats(rng.standard_normal((2000, 24)) + 0.2)
    chol = FrechetReference(np.zeros(24), s1, "cholesky").trace_sqrt_product(s2)
    eig = FrechetReference(np.zeros(24), s1, "eigh").trace_sqrt_product(s2)
    with mpmath.workdps(40):
        lo = mpmath.cholesky(mpmath.matrix(s1.tolist()))
        ev = mpmath.eigsy(lo.T * mpmath.matrix(s2.tolist()) * lo, eigvals_only=True)
        exact = float(sum(mpmath.sqrt(max(v, 0)) for v in ev))
    assert abs(chol - exact) / exact < 1e-9
    assert abs(eig - exact) / exact < 1e-9


def test_zero_for_identical_and_symmetric() -> None:
    rng = np.random.default_rng(3)
    mu1, s1 = _random_stats(rng, 96, 300)
    mu2, s2 = _random_stats(rng, 96, 300, shift=0.2)
    scale = np.trace(s1)
    assert 0.0 <= frechet_distance(mu1, s1, mu1, s1) < 1e-9 * scale
    ab, ba = frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1)
    assert ab > 1.0
    assert abs(ab - ba) / ab < 1e-10


def test_diagonal_closed_form() -> None:
    # For diagonal covariances FD = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0.1, 3.0, 50), rng.uniform(0.1, 3.0, 50)
    mu1, mu2 = rng.standard_normal(50), rng.standard_normal(50)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_torch_inputs_and_validation() -> None:
    rng = np.random.default_rng(5)
    mu1, s1 = _random_stats(rng, 16, 64)
    mu2, s2 = _random_stats(rng, 16, 64, shift=0.3)
    expected = frechet_distance(mu1, s1, mu2, s2)
    got = frechet_distance(*(torch.from_numpy(v).float() for v in (mu1, s1, mu2, s2)))
    assert got == pytest.approx(expected, rel=1e-5)  # float32 round trip of the inputs
    with pytest.raises(ValueError, match="covariance must be"):
        frechet_distance(mu1, s1[:, :15], mu2, s2)
    with pytest.raises(ValueError, match="mismatch"):
        frechet_distance(mu1, s1, mu2[:8], s2[:8, :8])
    with pytest.raises(ValueError, match="1-D"):
        frechet_distance(s1, s1, mu2, s2)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu1 * np.nan, s1, mu2, s2)


def test_cached_reference_matches_function() -> None:
    rng = np.random.default_rng(6)
    mu1, s1 = _random_stats(rng, 32, 128)
    ref = FrechetReference(mu1, s1)
    for shift in (0.0, 0.5):
        mu2, s2 = _random_stats(rng, 32, 128, shift=shift)
        assert ref.distance(mu2, s2) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-12)


def test_fd_infinity_convention_and_determinism() -> None:
    rng = np.random.default_rng(7)
    d = 16
    x = rng.standard_normal((4000, d))  # drawn from the reference N(0, I) itself
    mu_ref, sigma_ref = np.zeros(d), np.eye(d)
    fd_inf, slope, points = fd_infinity(x, mu_ref, sigma_ref, n_points=10, min_n=500, seed=0)
    assert [n for n, _ in points] == [int(n) for n in np.linspace(500, 4000, 10)]
    # FD at finite n is biased upward by ~slope / n; the extrapolation removes that bias.
    assert slope > 0
    assert points[0][1] > 5 * abs(fd_inf)
    assert abs(fd_inf) < 0.05
    again = fd_infinity(x, mu_ref, sigma_ref, n_points=10, min_n=500, seed=0)
    other = fd_infinity(x, mu_ref, sigma_ref, n_points=10, min_n=500, seed=1)
    assert again == (fd_inf, slope, points)
    assert other[2] != points
    with pytest.raises(ValueError, match="min_n"):
        fd_infinity(x[:100], mu_ref, sigma_ref, min_n=500)


def test_state_matches_numpy_and_merges_exactly() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1000, 24)) * rng.uniform(0.5, 2.0, 24) + 3.0
    one = FrechetState(24).update(x)
    shards = [FrechetState(24).update(part) for part in np.array_split(x, [130, 400, 401, 777])]
    merged = shards[0]
    for s in shards[1:]:
        merged.merge(s)
    assert merged.count == one.count == 1000
    for ddof in (0, 1):
        mu_a, sig_a = one.stats(ddof=ddof)
        mu_b, sig_b = merged.stats(ddof=ddof)
        assert np.max(np.abs(sig_a - sig_b)) < 1e-12 * np.max(np.abs(sig_a))
        assert np.max(np.abs(mu_a - mu_b)) < 1e-12 * np.max(np.abs(mu_a))
        np.testing.assert_allclose(mu_a, x.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(sig_a, np.cov(x, rowvar=False, ddof=ddof), rtol=1e-9, atol=1e-12)
    # torch and float32 input accumulate in float64 too
    t = FrechetState(24).update(torch.from_numpy(x[:10]).float())
    assert t.sum.dtype == np.float64
    with pytest.raises(ValueError):
        FrechetState(24).update(x[:, :5])
    with pytest.raises(ValueError):
        FrechetState(24).merge(FrechetState(8))
    with pytest.raises(ValueError):
        FrechetState(24).update(x[:1]).stats(ddof=1)
    restored = FrechetState.from_state_dict(merged.state_dict())
    np.testing.assert_array_equal(restored.stats()[1], merged.stats()[1])


@pytest.mark.parametrize("threads", ["1", "0"])
def test_cholesky_route_thread_policies_agree_with_eigh(threads: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The busy-machine route (one BLAS thread, syevr) and the default one (syevd) both
    match the eigh factorisation and the independent SVD route; a non-C-ordered second
    covariance takes the same path."""
    monkeypatch.setenv("FOLEYBENCH_FRECHET_THREADS", threads)
    rng = np.random.default_rng(7)
    mu1, s1 = _random_stats(rng, 512, 768)
    mu2, s2 = _random_stats(rng, 512, 768, shift=0.2)
    chol = FrechetReference(mu1, s1, "cholesky")
    eig = FrechetReference(mu1, s1, "eigh")
    want = _trace_sqrt_independent(s1, s2)
    assert abs(chol.trace_sqrt_product(s2) - want) / want < 1e-10
    assert abs(chol.trace_sqrt_product(np.asfortranarray(s2)) - want) / want < 1e-10
    assert abs(chol.distance(mu2, s2) - eig.distance(mu2, s2)) / eig.distance(mu2, s2) < 1e-9


def test_update_many_equals_row_by_row_updates() -> None:
    rng = np.random.default_rng(3)
    blocks = [rng.standard_normal((k, 16)).astype(np.float32) for k in (1, 3, 1, 5)]
    one, many = FrechetState(16), FrechetState(16).update_many(blocks)
    for b in blocks:
        for row in b:
            one.update(row[None])
    assert many.count == one.count == 10
    mu_a, s_a = one.stats()
    mu_b, s_b = many.stats()
    np.testing.assert_allclose(mu_b, mu_a, rtol=1e-12)
    np.testing.assert_allclose(s_b, s_a, rtol=1e-10, atol=1e-12)
    mu_c, s_c = gaussian_stats(np.concatenate(blocks))
    np.testing.assert_allclose(s_b, s_c, rtol=1e-10, atol=1e-12)
    assert FrechetState(16).update_many([]).count == 0


def test_bootstrap_sufficient_statistics_match_restacking(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-clip sufficient-statistics bootstrap makes the same draws and the same
    interval (to float64 rounding) as re-stacking rows and np.cov per draw."""
    from foleybench.metrics.functional import frechet as fr

    rng = np.random.default_rng(11)
    gen = [rng.standard_normal((int(k), 8)).astype(np.float32) for k in rng.integers(1, 4, 30)]
    ref = [rng.standard_normal((int(k), 8)).astype(np.float32) + 0.3 for k in rng.integers(1, 4, 30)]
    for ddof in (0, 1):
        fast = fr.bootstrap_fd(gen, ref, 50, seed=4, ddof=ddof)
        monkeypatch.setattr(fr, "_SUFFICIENT_MAX", 0)
        slow = fr.bootstrap_fd(gen, ref, 50, seed=4, ddof=ddof)
        monkeypatch.undo()
        np.testing.assert_allclose(fast, slow, rtol=1e-9)
        assert fast[0] < fast[1]
