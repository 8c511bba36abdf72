"""Frechet distance between Gaussians, in float64, via symmetric decompositions.

FD = |mu_1 - mu_2|^2 + Tr(S_1) + Tr(S_2) - 2 Tr((S_1^1/2 S_2 S_1^1/2)^1/2)

The cross term is the sum of square roots of the eigenvalues (``eigvalsh``, clamped at
0) of the symmetric PSD matrix F S_2 F^T, where F is any factor with S_1 = F^T F:

- ``"eigh"``: F = diag(sqrt(w)) V^T from ``eigh(S_1) = V diag(w) V^T`` (w clamped at 0);
  F S_2 F^T = V^T (S_1^1/2 S_2 S_1^1/2) V, the METRICS.md formula up to a rotation.
- ``"cholesky"``: F = L^T from S_1 = L L^T. For PD S_1, L = S_1^1/2 Q with Q orthogonal,
  so F S_2 F^T = Q^T (S_1^1/2 S_2 S_1^1/2) Q: same eigenvalues, but the factorisation
  costs d^3/3 flops instead of a full eigendecomposition (~9x faster at d = 2048).
- ``"auto"`` (default): Cholesky when S_1 is numerically positive definite, else eigh
  (rank-deficient covariances, e.g. N <= D, where Cholesky breaks down).

Every step is a symmetric decomposition, so the result stays real where
``scipy.linalg.sqrtm(S_1 @ S_2)`` (a Schur decomposition of a non-symmetric product) goes
complex on singular covariances. :class:`FrechetReference` caches the factor of a fixed
reference covariance, so scoring many sets against one reference (FD-infinity,
leaderboards) pays the factorisation once.

Shapes: mu ``[D]``, sigma ``[D, D]``, samples ``[N, D]``. Inputs may be numpy arrays or
torch tensors (any device); everything is converted to float64 numpy.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

ArrayLike = Any  # numpy array, torch tensor, or nested sequence


def as_float64(x: ArrayLike) -> np.ndarray:
    """Convert a numpy array or torch tensor (any device/dtype) to a float64 numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_gaussian(mu: ArrayLike, sigma: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu_a, sigma_a = as_float64(mu), as_float64(sigma)
    if mu_a.ndim != 1:
        raise ValueError(f"{name}: mean must be 1-D [D], got shape {mu_a.shape}")
    d = mu_a.shape[0]
    if sigma_a.shape != (d, d):
        raise ValueError(f"{name}: covariance must be [D, D] = [{d}, {d}], got shape {sigma_a.shape}")
    if not (np.isfinite(mu_a).all() and np.isfinite(sigma_a).all()):
        raise ValueError(f"{name}: mean or covariance holds NaN or inf")
    return mu_a, sigma_a


def _sym(a: np.ndarray) -> np.ndarray:
    # Covariances built from float sums are symmetric only up to rounding; LAPACK's
    # symmetric drivers read one triangle, so symmetrise to make the result order-free.
    return 0.5 * (a + a.T)


def _busy(d: int) -> bool:
    """True for large ``d`` (>= 512) when ``FOLEYBENCH_FRECHET_THREADS=1``: the Cholesky
    route then runs on one BLAS thread with the MRRR eigensolver (syevr).

    OpenBLAS threads spin while waiting for each other; on an oversubscribed machine a
    threaded tridiagonal reduction runs 5-10x slower than a single-threaded one (measured
    on a 2-core host at load 6-10), so shared machines may want it. It is a setting, not
    a guess from the load average: the driver and thread count change the last bits of
    the value, and a score must not depend on what else ran on the machine.
    """
    if d < 512:  # small problems: threadpoolctl's own overhead would dominate
        return False
    env = os.environ.get("FOLEYBENCH_FRECHET_THREADS")
    return env is not None and env.strip() != "" and int(env) == 1


def _trace_sqrt_cholesky(low: np.ndarray, s: np.ndarray) -> float:
    """sum sqrt(eig(L^T S L)) for a lower-triangular Fortran-ordered L ``[D, D]`` and an
    exactly symmetric S ``[D, D]`` (``_sym`` output).

    Two triangular multiplies (BLAS trmm, d^3 flops each, half a general product's) and a
    values-only LAPACK symmetric eigensolver on the lower triangle of M = L^T S L, which
    is symmetric up to rounding. On a busy machine the whole step runs on one BLAS thread
    (see :func:`_busy`), where the MRRR driver (syevr) was the faster one; otherwise the
    BLAS default thread count and divide-and-conquer (syevd).
    """
    from scipy.linalg import blas, eigvalsh

    def work(driver: str) -> float:
        # trmm(side=0): op(L) @ B; trmm(side=1): B @ op(L). S is exactly symmetric, so its
        # transpose is the same matrix and, for C-ordered S, a Fortran-ordered view: no copy.
        m = blas.dtrmm(1.0, low, s.T if s.flags.c_contiguous else s, side=0, lower=1, trans_a=1)
        m = blas.dtrmm(1.0, low, m, side=1, lower=1, overwrite_b=1)
        ev = eigvalsh(m, lower=True, driver=driver, overwrite_a=True, check_finite=False)
        return float(np.sqrt(np.clip(ev, 0.0, None)).sum())

    busy = _busy(s.shape[0])
    with _blas_limit(busy):
        return work("evr" if busy else "evd")


def _blas_limit(busy: bool):
    """Context: one BLAS thread when ``busy`` (and threadpoolctl is importable), else a no-op."""
    if busy:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: without it, BLAS keeps its default thread count
            return contextlib.nullcontext()
        return threadpool_limits(limits=1, user_api="blas")
    return contextlib.nullcontext()


class FrechetReference:
    """A reference Gaussian (mu ``[D]``, sigma ``[D, D]``) with its square-root factor cached.

    ``distance(mu, sigma)`` returns FD(reference, (mu, sigma)); the reference's
    factorisation (``factorization``: "auto", "cholesky" or "eigh", see the module
    docstring) is done once here, so each call costs two matrix products and one
    eigenvalue-only decomposition. ``self.factorization`` records the one used.
    """

    def __init__(self, mu: ArrayLike, sigma: ArrayLike, factorization: str = "auto"):
        if factorization not in ("auto", "cholesky", "eigh"):
            raise ValueError(f"factorization must be auto, cholesky or eigh, not {factorization!r}")
        self.mu, sigma_a = _check_gaussian(mu, sigma, "reference")
        self.sigma = _sym(sigma_a)
        self.trace = float(np.trace(self.sigma))
        self.factor: np.ndarray  # F with sigma = F^T F, [D, D]
        self._lower: np.ndarray | None = None  # Cholesky L (Fortran order), F = L^T
        if factorization != "eigh":
            from scipy.linalg import LinAlgError, cholesky

            try:
                # scipy's potrf on a Fortran copy: no check pass, no triangle zeroing
                # beyond what LAPACK does; ~1/3 the time of numpy's wrapper at d = 2048.
                with _blas_limit(_busy(self.sigma.shape[0])):
                    low = cholesky(self.sigma, lower=True, check_finite=False)
            except LinAlgError:  # not numerically PD: singular or indefinite by rounding
                low = None
                if factorization == "cholesky":
                    raise ValueError("reference covariance is not positive definite; use eigh") from None
            if low is not None:
                self._lower = np.asfortranarray(low)
                self.factor = self._lower.T
                self.factorization = "cholesky"
                return
        with _blas_limit(_busy(self.sigma.shape[0])):  # same decomposition, thread policy only
            w, v = np.linalg.eigh(self.sigma)
        # Tiny negative eigenvalues are rounding noise of a PSD matrix: clamp at 0.
        self.factor = np.sqrt(np.clip(w, 0.0, None))[:, None] * v.T
        self.factorization = "eigh"

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def trace_sqrt_product(self, sigma: ArrayLike) -> float:
        """Tr((S_ref^1/2 S S_ref^1/2)^1/2) for a covariance ``sigma [D, D]``."""
        s = as_float64(sigma)
        if s.shape != self.sigma.shape:
            raise ValueError(f"covariance must be [{self.dim}, {self.dim}], got shape {s.shape}")
        return self._trace_sqrt_sym(_sym(s))

    def _trace_sqrt_sym(self, s: np.ndarray) -> float:
        # s: an exactly symmetric [D, D] float64 covariance (F sym(S) F^T = sym(F S F^T)).
        if self._lower is not None:
            return _trace_sqrt_cholesky(self._lower, s)
        with _blas_limit(_busy(s.shape[0])):  # the eigh route's calls, thread policy only
            m = _sym(self.factor @ s @ self.factor.T)
            ev = np.linalg.eigvalsh(m)
        return float(np.sqrt(np.clip(ev, 0.0, None)).sum())

    def distance(self, mu: ArrayLike, sigma: ArrayLike) -> float:
        """FD between the reference and N(mu, sigma); finite and >= 0."""
        mu_a, sigma_a = _check_gaussian(mu, sigma, "second")
        if mu_a.shape != self.mu.shape:
            raise ValueError(f"dimension mismatch: reference D={self.dim}, second D={mu_a.shape[0]}")
        sigma_a = _sym(sigma_a)
        diff = self.mu - mu_a
        fd = float(diff @ diff) + self.trace + float(np.trace(sigma_a)) - 2.0 * self._trace_sqrt_sym(sigma_a)
        # FD is a squared distance; a value a few ulps below 0 is rounding, not signal.
        return max(fd, 0.0)


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, factorization: str = "auto"
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64, symmetric route.

    mu ``[D]``, sigma ``[D, D]`` (numpy or torch). Raises ValueError on bad shapes or
    non-finite input. Symmetric in its two Gaussians up to rounding. ``factorization``
    picks the factor of sigma1 ("auto": Cholesky when positive definite, else eigh).
    """
    mu2_a, sigma2_a = _check_gaussian(mu2, sigma2, "second")
    ref = FrechetReference(mu1, sigma1, factorization)
    if mu2_a.shape != ref.mu.shape:
        raise ValueError(f"dimension mismatch: first D={ref.dim}, second D={mu2_a.shape[0]}")
    return ref.distance(mu2_a, sigma2_a)


def frechet_distance_scipy(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6
) -> float:
    """The classic pytorch-fid route: ``scipy.linalg.sqrtm(sigma1 @ sigma2)``.

    For comparison and tests only. On failure (non-finite sqrtm) it retries with ``eps``
    added to both diagonals; it raises ValueError when the result keeps a large imaginary
    part, and otherwise drops the imaginary part, as pytorch-fid does.
    """
    from scipy import linalg

    mu1_a, s1 = _check_gaussian(mu1, sigma1, "first")
    mu2_a, s2 = _check_gaussian(mu2, sigma2, "second")
    if mu1_a.shape != mu2_a.shape:
        raise ValueError(f"dimension mismatch: {mu1_a.shape[0]} vs {mu2_a.shape[0]}")
    diff = mu1_a - mu2_a
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def gaussian_stats(x: ArrayLike, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (float64) of samples ``x [N, D]``.

    ddof=1 is the unbiased N-1 normalisation (numpy.cov, pytorch-fid, fadtk); ddof=0
    divides by N (StyleGAN-V FVD protocol).
    """
    a = as_float64(x)
    if a.ndim != 2:
        raise ValueError(f"samples must be [N, D], got shape {a.shape}")
    if a.shape[0] <= ddof:
        raise ValueError(f"need more than {ddof} samples for ddof={ddof}, got N={a.shape[0]}")
    mu = a.mean(axis=0)
    c = a - mu
    return mu, _sym(c.T @ c / (a.shape[0] - ddof))


def fd_infinity(
    x_gen: ArrayLike,
    mu_ref: ArrayLike,
    sigma_ref: ArrayLike,
    *,
    n_points: int = 25,
    min_n: int = 500,
    seed: int = 0,
) -> tuple[float, float, list[tuple[int, float]]]:
    """FD-infinity: extrapolate FD(N) linearly in 1/N to 1/N = 0 (fadtk's ``score_inf``).

    Convention, as in microsoft/fadtk: the sample sizes are
    ``[int(n) for n in np.linspace(min_n, N, n_points)]`` (fadtk defaults: 25 steps,
    min_n 500); for each, draw n rows of ``x_gen [N, D]`` uniformly *with replacement*,
    take unbiased (N-1) statistics, score against the reference, then fit
    ``FD = slope / n + intercept`` by least squares (np.polyfit degree 1). The intercept
    is FD-infinity. fadtk draws with the global unseeded numpy RNG; here one
    ``np.random.default_rng(seed)`` drives all draws, so results repeat per seed.

    Returns (fd_inf, slope, points) with points = [(n, FD(n)), ...]. The reference
    factorisation is cached across the n_points evaluations.
    """
    x = as_float64(x_gen)
    if x.ndim != 2:
        raise ValueError(f"x_gen must be [N, D], got shape {x.shape}")
    n_total = x.shape[0]
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    if not 2 <= min_n <= n_total:
        raise ValueError(f"need 2 <= min_n <= N; got min_n={min_n}, N={n_total}")
    ref = FrechetReference(mu_ref, sigma_ref)
    if ref.dim != x.shape[1]:
        raise ValueError(f"dimension mismatch: reference D={ref.dim}, x_gen D={x.shape[1]}")
    rng = np.random.default_rng(seed)
    ns = [int(n) for n in np.linspace(min_n, n_total, n_points)]
    points: list[tuple[int, float]] = []
    for n in ns:
        idx = rng.integers(0, n_total, size=n)
        mu, sigma = gaussian_stats(x[idx])
        points.append((n, ref.distance(mu, sigma)))
    inv_n = 1.0 / np.array(ns, dtype=np.float64)
    slope, intercept = np.polyfit(inv_n, np.array([p[1] for p in points]), 1)
    return float(intercept), float(slope), points


def bootstrap_fd(
    gen: list[np.ndarray], ref: list[np.ndarray], n_boot: int, seed: int, ddof: int = 1
) -> tuple[float, float]:
    """Percentile (95%) bootstrap of FD over clips, resampling pairs together.

    gen, ref: one ``[F_i, D]`` array per clip, clip i of ``gen`` paired with clip i of
    ``ref`` (F_i = 1 for clip-level embedders, frames for frame-level ones). Each draw
    takes N clip indices with replacement from ``np.random.default_rng(seed)`` and
    scores the concatenated rows (covariance with ``ddof``); draws with fewer than 2
    rows on a side are skipped. Returns (nan, nan) when every draw was skipped. The
    interval depends on the clip order: callers pass clips sorted by clip id.
    """
    from foleybench.metrics.frechet_state import is_clip_stats, item_count, mixed_stats

    rng = np.random.default_rng(seed)
    n = len(gen)
    if n == 0:
        return (float("nan"), float("nan"))
    dim = int(np.asarray(gen[0]).reshape(len(gen[0]), -1).shape[-1]) if len(gen[0]) else 0
    # A clip may come as its packed statistics (frechet_state, a long input's frames):
    # a draw then merges the drawn clips' statistics, each weighted by its draw count.
    stats = dim > 0 and any(is_clip_stats(x, dim) for x in (*gen, *ref))
    if n_boot > 0 and dim and n * dim * dim <= _SUFFICIENT_MAX:
        vals = _bootstrap_sufficient(gen, ref, n_boot, rng, ddof)
    elif stats:
        vals = []
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            g, r = [gen[i] for i in idx], [ref[i] for i in idx]
            if sum(item_count(x, dim) for x in g) < 2 or sum(item_count(x, dim) for x in r) < 2:
                continue
            (mu_g, s_g), (mu_r, s_r) = mixed_stats(g, dim, ddof), mixed_stats(r, dim, ddof)
            vals.append(frechet_distance(mu_g, s_g, mu_r, s_r))
    else:
        vals = []
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            g = np.concatenate([gen[i] for i in idx]).astype(np.float64)
            r = np.concatenate([ref[i] for i in idx]).astype(np.float64)
            if len(g) < 2 or len(r) < 2:
                continue
            vals.append(frechet_distance(g.mean(0), np.cov(g, rowvar=False, ddof=ddof),
                                         r.mean(0), np.cov(r, rowvar=False, ddof=ddof)))
    if not vals:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


_SUFFICIENT_MAX = 64 * 1024 * 1024 // 8  # per-clip outer products held at most (float64 entries)
_CLIP_BLOCK = 1 << 14  # rows of one clip converted to float64 at a time (a long input's frames)


def _bootstrap_sufficient(gen: list[np.ndarray], ref: list[np.ndarray], n_boot: int,
                          rng: np.random.Generator, ddof: int) -> list[float]:
    """The bootstrap draws of :func:`bootstrap_fd` from per-clip sufficient statistics.

    A draw's rows are clips repeated by their draw counts w ``[n]``, so its float64 sums
    are w-weighted sums of per-clip (rows, sum ``[D]``, sum of outer products ``[D, D]``):
    one ``[n] x [n, D*D]`` product per side instead of re-stacking rows and np.cov. Same
    draws (same rng calls) and the same statistics up to float64 rounding (1e-12
    relative). Small matrices run on one BLAS thread: at D = 128 thread start-up costs
    more than the work.
    """
    from foleybench.metrics.frechet_state import is_clip_stats

    def clip_suff(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if is_clip_stats(b):  # packed (count, mean, centred scatter): the uncentred sums
            k, mu = b[0, 0], b[1]
            return k * mu, b[2:] + k * np.outer(mu, mu)
        a = np.asarray(b).reshape(len(b), -1)
        if len(a) <= _CLIP_BLOCK:
            x = a.astype(np.float64)
            return x.sum(0), x.T @ x
        s, o = np.zeros(a.shape[1]), np.zeros((a.shape[1], a.shape[1]))
        for i in range(0, len(a), _CLIP_BLOCK):  # a long input's frames: float64 one block at a time
            x = a[i:i + _CLIP_BLOCK].astype(np.float64)
            s += x.sum(0)
            o += x.T @ x
        return s, o

    def suff(blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cnt = np.array([b[0, 0] if is_clip_stats(b) else len(b) for b in blocks], dtype=np.float64)
        per = [clip_suff(b) for b in blocks]
        sums = np.stack([p[0] for p in per])
        outer = np.stack([p[1] for p in per]).reshape(len(per), -1)
        return cnt, sums, outer

    sides = [suff(gen), suff(ref)]
    n = len(gen)
    # Every draw's indices first, in the rng's order: a draw's value depends on its indices
    # alone, so the draws can then be evaluated in any order, in parallel, bit for bit.
    draws = [rng.integers(0, n, n) for _ in range(n_boot)]

    def one(idx: np.ndarray) -> float | None:
        w = np.bincount(idx, minlength=n).astype(np.float64)
        stats = []
        for cnt, sums, outer in sides:
            k = float(w @ cnt)
            if k < 2:
                return None
            mu = (w @ sums) / k
            d = mu.shape[0]
            scatter = (w @ outer).reshape(d, d) - k * np.outer(mu, mu)
            stats.append((mu, scatter / (k - ddof)))
        (mu_g, s_g), (mu_r, s_r) = stats
        return frechet_distance(mu_g, s_g, mu_r, s_r)

    workers = _bootstrap_workers(n_boot, sides[0][1].shape[1])
    with _blas_limit(True):  # one BLAS thread per draw; LAPACK releases the GIL
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers, thread_name_prefix="fd-bootstrap") as ex:
                got = list(ex.map(one, draws))
        else:
            got = [one(idx) for idx in draws]
    return [v for v in got if v is not None]


def _bootstrap_workers(n_boot: int, dim: int) -> int:
    """Threads evaluating bootstrap draws: ``FOLEYBENCH_BOOTSTRAP_THREADS``, else up to 2
    (the cores this harness is measured on; each draw is small: D <= 256 by default).
    One from D = 512 on, where a draw may set BLAS thread limits of its own (_busy).
    The value does not depend on it."""
    if dim >= 512:
        return 1
    env = os.environ.get("FOLEYBENCH_BOOTSTRAP_THREADS", "").strip()
    want = int(env) if env else min(2, os.cpu_count() or 1)
    return max(1, min(want, n_boot))
