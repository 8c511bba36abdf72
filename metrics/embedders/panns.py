"""PANNs Cnn14_16k (Kong et al. 2020): 2048-d clip embedding and 527 AudioSet logits.

Front end (part of the checkpoint, as in upstream's torchlibrosa layers): centred STFT
with reflect padding, 512-point periodic Hann window, hop 160 at 16 kHz, power
spectrogram, 64 Slaney mel bands 50-8000 Hz (librosa's filters), ``10 log10(max(x,
1e-10))``. The STFT kernels and mel matrix are loaded from the checkpoint like every
other tensor (proxy weights recompute them analytically).

Outputs, as av-benchmark's Cnn14 (its ``"2048"`` and ``"logits"`` features):
embedding = ``relu(fc1(h))`` (upstream's ``embedding`` in eval mode); logits =
``fc_audioset(embedding)`` BEFORE the sigmoid. KL-PANNs (av-benchmark, ``kl_softmax``)
and IS-PANNs apply a softmax to these logits; our KL/IS metrics do the same.
"""
from __future__ import annotations

import math

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The light half (record, constants, embedder, build) lives in panns_embedder so that a
# fully cached re-score needs no torch; it is re-exported here under its old names.
from foleybench.metrics.embedders.panns_embedder import (  # noqa: F401
    AMIN,
    F_MAX,
    F_MIN,
    HOP,
    N_CLASSES,
    N_FFT,
    N_MELS,
    RECORD,
    SAMPLE_RATE,
    UPSTREAM_MD5,
    PANNs,
    build,
)


class _STFT(nn.Module):
    """DFT-by-convolution; names as torchlibrosa (``conv_real``/``conv_imag``)."""

    def __init__(self) -> None:
        super().__init__()
        n_bins = N_FFT // 2 + 1
        self.conv_real = nn.Conv1d(1, n_bins, N_FFT, stride=HOP, bias=False)
        self.conv_imag = nn.Conv1d(1, n_bins, N_FFT, stride=HOP, bias=False)
        for p in self.parameters():
            p.requires_grad_(False)

    def fill(self) -> None:
        """Windowed DFT kernels: ``w[n] cos(2 pi k n / N)`` and ``-w[n] sin(...)``."""
        n = torch.arange(N_FFT, dtype=torch.float64)
        k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[:, None]
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / N_FFT)  # periodic Hann
        angle = 2 * math.pi * k * n / N_FFT
        with torch.no_grad():
            self.conv_real.weight.copy_((torch.cos(angle) * window)[:, None, :])
            self.conv_imag.weight.copy_((-torch.sin(angle) * window)[:, None, :])


class _Spectrogram(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stft = _STFT()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> power spectrogram ``[B, 1, T, 257]``, T = N // 160 + 1."""
        x = F.pad(x[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")
        re, im = self.stft.conv_real(x), self.stft.conv_imag(x)   # [B, 257, T]
        return (re ** 2 + im ** 2).transpose(1, 2)[:, None]


class _LogMel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.melW = nn.Parameter(torch.zeros(N_FFT // 2 + 1, N_MELS), requires_grad=False)

    def fill(self) -> None:
        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=F_MIN, fmax=F_MAX)
        with torch.no_grad():
            self.melW.copy_(torch.from_numpy(np.ascontiguousarray(mel.T)))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T, 257]`` power -> ``[B, 1, T, 64]`` dB (ref 1.0, no top_db clip)."""
        return 10.0 * torch.log10(torch.clamp(spec @ self.melW, min=AMIN))


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool)


class Cnn14(nn.Module):
    """Cnn14 at 16 kHz; inference graph only (no SpecAugment, dropout is identity in eval).

    forward: ``[B, N]`` samples -> (embedding ``[B, 2048]``, logits ``[B, 527]``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.spectrogram_extractor = _Spectrogram()
        self.logmel_extractor = _LogMel()
        self.bn0 = nn.BatchNorm2d(N_MELS)
        chans = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", _ConvBlock(chans[i], chans[i + 1]))
        self.fc1 = nn.Linear(2048, 2048)
        self.fc_audioset = nn.Linear(2048, N_CLASSES)
        self.fill_frontend()

    def fill_frontend(self) -> None:
        self.spectrogram_extractor.stft.fill()
        self.logmel_extractor.fill()

    # Inputs longer than CHUNK_FRAMES STFT frames run the spectrogram and conv stack chunk
    # by chunk (memory bounded by the chunk: 10 minutes took 3.9 GB whole). Chunks start
    # on a multiple of the stack's pooling factor (32 frames) and carry CONTEXT frames on
    # each side, which covers the conv stack's reach (two 3x3 convs per block at strides
    # 1..32: 2 * (1 + 2 + ... + 32) = 126 frames), so every kept pooled frame sees the
    # inputs it sees in one pass; only the time pooling then runs on the whole sequence.
    CHUNK_FRAMES = 32 * 64
    CONTEXT = 128
    POOL = 32

    def _frames(self, logmel: torch.Tensor) -> torch.Tensor:
        """``[B, 1, T, 64]`` log-mel -> per-frame features ``[B, 2048, T // 32]``."""
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)            # BN over mel bins
        for i in range(6):
            x = getattr(self, f"conv_block{i + 1}")(x, 2 if i < 5 else 1)
        return x.mean(dim=3)                                           # over mel

    def _frames_chunked(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`_frames` of the log-mel of ``x`` ``[B, N]``, computed chunk by chunk."""
        padded = F.pad(x[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")  # global centring
        n_stft = x.shape[-1] // HOP + 1
        n_out = n_stft // self.POOL
        parts = []
        for a in range(0, n_out, self.CHUNK_FRAMES // self.POOL):
            b = min(n_out, a + self.CHUNK_FRAMES // self.POOL)
            s = max(0, a * self.POOL - self.CONTEXT)
            e = min(n_stft, b * self.POOL + self.CONTEXT)
            seg = padded[..., s * HOP:(e - 1) * HOP + N_FFT]             # exactly STFT frames s..e-1
            st = self.spectrogram_extractor.stft
            re, im = st.conv_real(seg), st.conv_imag(seg)
            spec = (re ** 2 + im ** 2).transpose(1, 2)[:, None]
            y = self._frames(self.logmel_extractor(spec))
            lo = (a * self.POOL - s) // self.POOL
            parts.append(y[..., lo:lo + (b - a)])
        return torch.cat(parts, dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-1] // HOP + 1 > self.CHUNK_FRAMES + 2 * self.CONTEXT:
            x = self._frames_chunked(x)
        else:
            x = self._frames(self.logmel_extractor(self.spectrogram_extractor(x)))  # [B, 2048, T']
        x = x.max(dim=2).values + x.mean(dim=2)                        # over time
        emb = F.relu(self.fc1(x))
        return emb, self.fc_audioset(emb)
