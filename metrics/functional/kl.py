"""KL divergence between classifier label distributions of paired clips (KLD).

Direction and formula as METRICS.md and av-benchmark's ``kl_softmax``: per clip,
p = softmax(reference logits), q = softmax(generated logits),
KL(p || q) = sum_k p_k (log p_k - log q_k), in float64 from log-softmax (no epsilon:
av-benchmark's current code uses ``log_softmax`` on both sides; older audioldm_eval
copies added 1e-6 to q, which changes values slightly). Mean over clips is the score.
"""
from __future__ import annotations

import numpy as np


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``scipy.special.log_softmax(x, axis)`` for a float numpy array, the same operations
    in the same order (so the same bits; tests/test_rescore_fast.py checks it), without
    importing scipy.special (a quarter of a second) on the cached re-score path:
    ``x - m - log(sum(exp(x - m)))``, ``m`` the max along ``axis`` (0 where not finite)."""
    x = np.asarray(x)
    x_max = np.max(x, axis=axis, keepdims=True)
    x_max[~np.isfinite(x_max)] = 0
    tmp = x - x_max
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(tmp), axis=axis, keepdims=True))
    return tmp - out


def kl_divergence(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """Per-clip KL(p || q), float64 ``[N]``.

    p_logits: ``[N, K]`` logits of the REFERENCE clips (p); q_logits: ``[N, K]`` logits
    of the GENERATED clips (q), row i paired with row i. Both are softmaxed over K.
    """
    p = np.asarray(p_logits, dtype=np.float64)
    q = np.asarray(q_logits, dtype=np.float64)
    if p.ndim != 2 or p.shape != q.shape:
        raise ValueError(f"kl_divergence needs two [N, K] arrays of equal shape, got {p.shape} and {q.shape}")
    if not (np.isfinite(p).all() and np.isfinite(q).all()):
        raise ValueError("kl_divergence logits hold NaN or inf")
    log_p, log_q = log_softmax(p, axis=1), log_softmax(q, axis=1)
    kl = np.sum(np.exp(log_p) * (log_p - log_q), axis=1)
    # KL >= 0 mathematically; rounding can leave -1e-17 for identical rows
    return np.maximum(kl, 0.0)
