"""Mu-law companding, 256-class quantisation and seeded sampling for waveform models.

Martel & Wagner (arXiv 2308.12408, Sec. III-D4) train with cross-entropy over quantised
amplitudes; WaveNet's mu-law (mu = 255) spreads the 256 classes evenly in loudness, so
quiet passages keep resolution. Amplitudes are floats in [-1, 1]; classes are ints in
[0, n_classes).
"""
from __future__ import annotations

import math

import torch


def mulaw_encode(x: torch.Tensor, n_classes: int = 256) -> torch.Tensor:
    """Float amplitudes in [-1, 1] (any shape) -> long class indices in [0, n_classes)."""
    mu = n_classes - 1
    x = x.clamp(-1.0, 1.0)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).floor().long().clamp(0, mu)


def mulaw_decode(q: torch.Tensor, n_classes: int = 256) -> torch.Tensor:
    """Class indices (any shape) -> float amplitudes in [-1, 1] (the class centres)."""
    mu = n_classes - 1
    y = 2 * q.float() / mu - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


def quantize(x: torch.Tensor, n_classes: int = 256) -> torch.Tensor:
    """Round-trip through mu-law: what a model sees of audio it generated itself.

    Training inputs go through this too, so teacher forcing and generation feed the
    network the same 256 amplitude values.
    """
    return mulaw_decode(mulaw_encode(x, n_classes), n_classes).to(x.dtype)


def gumbel_noise(gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """Gumbel(0, 1) noise [*shape] (float64) drawn from ``gen``.

    Sampling is ``argmax(logits / temperature + noise)`` (the Gumbel-max trick): unlike an
    inverse-CDF draw, two computations of the same logits that differ by rounding pick
    the same class unless the top two perturbed scores tie to ~1e-7, which is what lets
    the cached and naive generation paths agree sample for sample.
    """
    u = torch.rand(shape, generator=gen, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(u))


def sample_classes(logits: torch.Tensor, noise: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """logits [..., K] and Gumbel noise [..., K] -> sampled classes [...] (long).

    temperature 0 means greedy (argmax); the noise is then ignored.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    return (logits.double() / temperature + noise.to(logits.device)).argmax(-1)
