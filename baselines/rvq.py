"""Residual vector quantisation (SoundStream / EnCodec kind), our own implementation.

Layer q quantises the residual left by layers 0..q-1 to its nearest codeword (squared
Euclidean distance); the quantised latent is the sum of the chosen codewords. Training
updates codebooks by exponential moving averages of assigned vectors (decay 0.99, as
EnCodec), initialises them from the first batch and re-seeds dead codes from the batch,
and passes gradients straight through the quantiser. Because layer q only sees earlier
layers' residuals, the codes of a prefix of the layers do not depend on later layers:
encoding with n_q codebooks gives the first n_q rows of encoding with all of them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualVQ(nn.Module):
    """n_q codebooks of ``bins`` codewords of ``dim``. Buffers: codebooks [n_q, bins, dim],
    cluster_size [n_q, bins] and embed_sum [n_q, bins, dim] (EMA statistics), inited []."""

    def __init__(self, n_q: int, bins: int, dim: int, decay: float = 0.99, dead_threshold: float = 0.5):
        super().__init__()
        self.n_q, self.bins, self.dim, self.decay, self.dead_threshold = n_q, bins, dim, decay, dead_threshold
        self.register_buffer("codebooks", torch.randn(n_q, bins, dim))
        self.register_buffer("cluster_size", torch.ones(n_q, bins))
        self.register_buffer("embed_sum", self.codebooks.clone())
        self.register_buffer("inited", torch.zeros(()))

    @staticmethod
    def nearest(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codeword: x [N, D], codebook [bins, D] -> int64 [N]."""
        d = x.pow(2).sum(1, keepdim=True) - 2 * x @ codebook.t() + codebook.pow(2).sum(1)[None]
        return d.argmin(1)

    def encode(self, z: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Latent [B, D, T] -> codes int64 [B, n_q, T] (default all codebooks)."""
        n_q = self.n_q if n_q is None else n_q
        res = z.transpose(1, 2).reshape(-1, self.dim)  # [B*T, D]
        codes = []
        for q in range(n_q):
            idx = self.nearest(res, self.codebooks[q])
            res = res - self.codebooks[q][idx]
            codes.append(idx)
        B, T = z.shape[0], z.shape[2]
        return torch.stack(codes, 0).view(n_q, B, T).transpose(0, 1).long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, k, T] (k <= n_q: the first k layers) -> latent [B, D, T]."""
        out = 0
        for q in range(codes.shape[1]):
            out = out + F.embedding(codes[:, q], self.codebooks[q])  # [B, T, D]
        return out.transpose(1, 2) if isinstance(out, torch.Tensor) else out

    @torch.no_grad()
    def _ema(self, q: int, x: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.bins).to(x.dtype)  # [N, bins]
        self.cluster_size[q].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum[q].mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        n = self.cluster_size[q].sum()
        size = (self.cluster_size[q] + 1e-5) / (n + self.bins * 1e-5) * n  # Laplace smoothing
        self.codebooks[q].copy_(self.embed_sum[q] / size[:, None])
        dead = self.cluster_size[q] < self.dead_threshold
        if dead.any():  # re-seed unused codewords from this batch's vectors
            pick = torch.randint(0, x.shape[0], (int(dead.sum()),), device=x.device)
            self.codebooks[q][dead] = x[pick]
            self.embed_sum[q][dead] = x[pick]
            self.cluster_size[q][dead] = 1.0

    def forward(self, z: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quantised latent [B, D, T] with straight-through gradient, codes [B, n_q, T],
        commitment loss = mean squared distance of the encoder output to its quantisation)."""
        n_q = self.n_q if n_q is None else n_q
        x = z.transpose(1, 2).reshape(-1, self.dim)
        if self.training and not bool(self.inited):
            with torch.no_grad():  # first batch: codewords drawn from the data, per layer
                res = x.detach()
                for q in range(self.n_q):
                    self.codebooks[q].copy_(res[torch.randint(0, res.shape[0], (self.bins,))])
                    self.embed_sum[q].copy_(self.codebooks[q])
                    res = res - self.codebooks[q][self.nearest(res, self.codebooks[q])]
                self.inited.fill_(1.0)
        res, quant, codes = x.detach(), torch.zeros_like(x), []
        for q in range(n_q):
            idx = self.nearest(res, self.codebooks[q])
            chosen = self.codebooks[q][idx]  # before the EMA step moves the codewords
            if self.training:
                self._ema(q, res, idx)
            quant = quant + chosen
            res = res - chosen
            codes.append(idx)
        commit = F.mse_loss(x, quant.detach())
        quant = x + (quant - x).detach()  # straight-through
        B, T = z.shape[0], z.shape[2]
        return (quant.view(B, T, self.dim).transpose(1, 2), torch.stack(codes).view(n_q, B, T).transpose(0, 1),
                commit)
