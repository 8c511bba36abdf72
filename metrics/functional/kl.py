"""KL divergence between classifier label distributions of paired clips (KLD).

Direction and formula as METRICS.md and av-benchmark's ``kl_softmax``: per clip,
p = softmax(reference logits), q = softmax(generated logits),
KL(p || q) = sum_k p_k (log p_k - log q_k), in float64 from log-softmax (no epsilon:
av-benchmark's current code uses ``log_softmax`` on both sides; older audioldm_eval
copies added 1e-6 to q, which changes values slightly). Mean over clips is the score.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_softmax


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
