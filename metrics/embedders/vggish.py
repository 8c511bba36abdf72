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
import torch.nn.functional as F
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

    # Fast route (default for CPU inference: eval mode, no autograd, float32): the first
    # conv (1 input channel) as one matrix product of its 3x3 windows, the others on
    # channels-last maps, and the two hidden Linear+ReLU layers as single oneDNN calls
    # (metrics/embedders/fastops.py). Measured 1.6x the direct route's network time on the
    # project's 2-core AMD machine; equal to it within 1e-6 relative
    # (tests/test_vggish_fast.py). ``fast=False`` (attribute or argument) runs the direct
    # route, the upstream graph layer by layer.
    fast: bool = True

    def forward(self, x: torch.Tensor, fast: bool | None = None) -> torch.Tensor:
        if (self.fast if fast is None else fast) and self._fast_ok(x):
            return self._forward_fast(x)
        x = self.features(x)                       # [B, 512, 6, 4]
        # Flatten channels-last, the order of the TF original the weights come from.
        x = x.permute(0, 2, 3, 1).flatten(1)
        return self.embeddings(x)

    def _fast_ok(self, x: torch.Tensor) -> bool:
        return (not self.training and not torch.is_grad_enabled() and x.device.type == "cpu"
                and x.dtype == torch.float32 and self.features[0].weight.dtype == torch.float32)

    def _forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        from foleybench.metrics.embedders.fastops import im2col_conv_relu, linear_relu

        first = True
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                if first:  # [K, 1, 3, 3] -> [K, 9] columns (dh, dw, c), as im2col_conv_relu reads
                    w = m.weight.permute(0, 2, 3, 1).reshape(m.weight.shape[0], -1)
                    x = im2col_conv_relu(x, w, m.bias)
                    first = False
                else:
                    cl = torch.channels_last
                    x = F.relu_(F.conv2d(x.contiguous(memory_format=cl), m.weight.contiguous(memory_format=cl),
                                         m.bias, padding=1))
            elif isinstance(m, nn.MaxPool2d):
                x = F.max_pool2d(x, 2, 2)
        x = x.permute(0, 2, 3, 1).flatten(1)       # the same (h, w, c) order as the direct route
        fc1, fc2, fc3 = (m for m in self.embeddings if isinstance(m, nn.Linear))
        x = linear_relu(linear_relu(x, fc1.weight, fc1.bias), fc2.weight, fc2.bias)
        return F.linear(x, fc3.weight, fc3.bias)
