"""Cosine similarities of embeddings, in float64 (IB score, CLIPSIM)."""
from __future__ import annotations

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (any shape, flattened to ``[D]``), in float64.

    Raises ValueError for a zero vector (the cosine is undefined; callers exclude).
    """
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("cosine of a zero vector")
    return float(a @ b / (na * nb))


def rows_cosine(rows: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``rows [F, D]`` with ``v [D]``: float64 ``[F]``."""
    m, u = np.asarray(rows, dtype=np.float64), np.asarray(v, dtype=np.float64)
    return (m @ u) / (np.linalg.norm(m, axis=1) * np.linalg.norm(u))
