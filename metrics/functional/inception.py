"""Inception score over classifier logits (av-benchmark / audioldm_eval convention).

IS = exp(E_x KL(p(y|x) || p(y))) per split, p(y|x) = softmax(logits) in float64, p(y) the
split's mean; items shuffled once by ``np.random.RandomState(seed).permutation(N)``,
split i = rows ``[i N // n_splits, (i + 1) N // n_splits)``; mean and population std
(``np.std``, ddof 0) over splits. av-benchmark's IS-PANNs: 10 splits, seed 2020.
"""
from __future__ import annotations

import numpy as np


def inception_score(logits: np.ndarray, n_splits: int = 10, seed: int = 2020,
                    shuffle: bool = True) -> tuple[float, float]:
    """(mean, std) of the per-split inception scores of ``logits [N, K]``.

    Raises ValueError when a split would be empty (N < n_splits) or logits are not finite.
    """
    from scipy.special import log_softmax, logsumexp  # here: importing scipy.special costs ~0.25 s

    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"inception_score needs [N, K] logits, got shape {x.shape}")
    n = x.shape[0]
    if n_splits < 1 or n < n_splits:
        raise ValueError(f"inception_score needs at least n_splits={n_splits} items, got {n}")
    if not np.isfinite(x).all():
        raise ValueError("inception_score logits hold NaN or inf")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    log_p = log_softmax(x, axis=1)
    p = np.exp(log_p)
    scores = []
    for i in range(n_splits):
        lo, hi = i * n // n_splits, (i + 1) * n // n_splits
        # log of the split's mean probability, from log-probabilities: with confident
        # classifiers some p underflow to 0, and log(mean p) = -inf would make 0 * inf = NaN.
        log_marginal = logsumexp(log_p[lo:hi], axis=0, keepdims=True) - np.log(hi - lo)
        kl = np.sum(p[lo:hi] * (log_p[lo:hi] - log_marginal), axis=1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))
