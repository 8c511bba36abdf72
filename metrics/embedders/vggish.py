"""VGGish (Hershey et al. 2017) in the torchvggish layout: 128-d per 0.96 s frame.

Front end as torchvggish's ``vggish_input.waveform_to_examples`` at 16 kHz: 25 ms
periodic-Hann windows every 10 ms, |rfft| with 512 points, 64 HTK-mel bands from 125 to
7500 Hz (upstream's own triangular filters, DC bin zeroed), ``log(mel + 0.01)``, then
non-overlapping 0.96 s examples of 96 x 64 (an incomplete tail is dropped). Computed
in float64 like upstream's numpy code, then cast to float32 for the network.

Output: the 128-d embedding layer without PCA/quantisation and without the final
ReLU (what av-benchmark and fadtk use for FD-VGGish). Each example is one FD sample
(``frames_level``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# The light half (record, constants, embedder, build) lives in vggish_embedder so that a
# fully cached re-score needs no torch; it is re-exported here under its old names.
from foleybench.metrics.embedders.vggish_embedder import (  # noqa: F401
    EXAMPLE_FRAMES,
    F_MAX,
    F_MIN,
    HOP,
    LOG_OFFSET,
    N_FFT,
    N_MELS,
    RECORD,
    SAMPLE_RATE,
    WIN,
    VGGish,
    build,
)


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale (the formula VGGish was trained with)."""
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_matrix() -> np.ndarray:
    """float64 ``[N_FFT//2+1, N_MELS]`` triangular mel weights, VGGish's definition."""
    n_bins = N_FFT // 2 + 1
    bin_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, n_bins))
    edges = np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lo) / (mid - lo)
    falling = (hi - bin_mel[:, None]) / (hi - mid)
    m = np.maximum(0.0, np.minimum(rising, falling))
    m[0, :] = 0.0  # upstream drops the DC bin
    return m


def log_mel_examples(x: torch.Tensor) -> torch.Tensor:
    """``x``: ``[B, N]`` samples at 16 kHz -> float64 ``[B, E, 96, 64]`` log-mel examples."""
    x = x.to(torch.float64)
    frames = x.unfold(-1, WIN, HOP)                                   # [B, T, 400]
    n = torch.arange(WIN, dtype=torch.float64, device=x.device)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / WIN)             # periodic Hann
    mag = torch.fft.rfft(frames * window, n=N_FFT).abs()              # [B, T, 257]
    mel = mag @ torch.from_numpy(mel_matrix()).to(x.device)          # [B, T, 64]
    logmel = torch.log(mel + LOG_OFFSET)
    n_ex = logmel.shape[1] // EXAMPLE_FRAMES
    logmel = logmel[:, : n_ex * EXAMPLE_FRAMES]
    return logmel.reshape(x.shape[0], n_ex, EXAMPLE_FRAMES, N_MELS)


class VGGishNet(nn.Module):
    """VGG-like CNN; parameter names as torchvggish (``features.*``, ``embeddings.*``).

    forward: ``[B, 1, 96, 64]`` log-mel examples -> ``[B, 128]``.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        # No ReLU after the last Linear: av-benchmark / fadtk take the pre-activation.
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)                       # [B, 512, 6, 4]
        # Flatten channels-last, the order of the TF original the weights come from.
        x = x.permute(0, 2, 3, 1).flatten(1)
        return self.embeddings(x)
