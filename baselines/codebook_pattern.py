"""The delay pattern of MusicGen/AudioGen as a pure object: codebook q is shifted by q steps.

Codes ``[B, K, T]`` become a sequence ``[B, K, T + K - 1]`` in which cell ``(q, s)``
holds ``codes[q, s - q]`` when ``0 <= s - q < T`` and the special token otherwise; one
LM step then predicts column s for every codebook at once, and codebook q of audio frame
t is predicted after codebooks 0..q-1 of the same frame (they sit in earlier columns).
This follows audiocraft's ``DelayedPatternProvider`` with delays ``[0, 1, ..., K-1]``
(its default); the special token is ``cardinality`` (one past the last real token), as
audiocraft's ``special_token_id = card``. :meth:`DelayPattern.revert` undoes
:meth:`DelayPattern.build` exactly, for any K and T.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DelayPattern:
    """n_q: codebooks K; special: the token id of empty cells (= the codec's cardinality)."""

    n_q: int
    special: int

    def seq_len(self, n_steps: int) -> int:
        """Columns of the delayed sequence for ``n_steps`` codec frames: T + K - 1."""
        return n_steps + self.n_q - 1

    def n_steps(self, seq_len: int) -> int:
        """Codec frames T of a delayed sequence of ``seq_len`` columns."""
        return seq_len - self.n_q + 1

    def valid(self, n_steps: int, device: torch.device | str | None = None) -> torch.Tensor:
        """bool ``[K, T + K - 1]``: True where a cell holds a real token (0 <= s - q < T)."""
        s = torch.arange(self.seq_len(n_steps), device=device)[None]
        q = torch.arange(self.n_q, device=device)[:, None]
        return (s >= q) & (s - q < n_steps)

    def build(self, codes: torch.Tensor) -> torch.Tensor:
        """int64 codes ``[B, K, T]`` -> delayed ``[B, K, T + K - 1]`` (special in empty cells)."""
        B, K, T = codes.shape
        if K != self.n_q:
            raise ValueError(f"codes have {K} codebooks, the pattern {self.n_q}")
        out = codes.new_full((B, K, self.seq_len(T)), self.special)
        for q in range(K):
            out[:, q, q:q + T] = codes[:, q]
        return out

    def revert(self, seq: torch.Tensor) -> torch.Tensor:
        """Delayed ``[B, K, S]`` -> codes ``[B, K, S - K + 1]``: row q read from column q on."""
        B, K, S = seq.shape
        T = self.n_steps(S)
        if K != self.n_q or T < 1:
            raise ValueError(f"sequence [*, {K}, {S}] does not fit a delay pattern of {self.n_q} codebooks")
        return torch.stack([seq[:, q, q:q + T] for q in range(K)], 1)

    def lm_input(self, seq: torch.Tensor) -> torch.Tensor:
        """The LM's input for predicting every column of ``seq``: [B, K, S] shifted right by
        one column, with an all-special start column (column s predicts seq[..., s])."""
        start = seq.new_full(seq[..., :1].shape, self.special)
        return torch.cat([start, seq[..., :-1]], -1)
