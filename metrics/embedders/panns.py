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

Fast route (default on CPU, eval mode, no autograd, float32; ``Cnn14(fast=False)``,
``forward(x, fast=False)`` or ``build(fast=False)`` run the direct route, which is the
upstream graph module by module): each conv's eval batch norm is folded into its weights
and bias (``w * s``, ``beta - mean * s``, ``s = gamma / sqrt(var + eps)``, in float64, cached
and recomputed when a weight or BN tensor changes), conv + bias + ReLU run as one oneDNN
call, and each conv runs the way that is fastest for it on CPU (:attr:`Cnn14.FAST_PLAN`):
block 1's 1-channel conv as an im2col matrix product, blocks 1-3 channels-last, blocks 4-5
NCHW, and block 6, whose maps are 2 mel bins wide, as one matrix product over the shared
3x2 windows (a third fewer multiplications: the taps on the zero padding are dropped).
The plan may also name Winograd F(2x2,3x3) / F(4x4,3x3) convs (:mod:`.winograd`); they
are exact up to rounding (tests/test_panns_fast.py) but were slower than oneDNN's direct
convolution on the project's 2-core AMD AVX2 machine (the transforms are memory-bound,
and the batched sgemm runs at about half the convolution's FLOP rate there), so the
default plan uses none. The fast route differs from the direct one by under 1e-6
relative on embeddings and logits (tested <= 1e-5, random weights with non-trivial BN
statistics and the real clips). The folded kernels are held beside the weights: 360 MiB
float32 (the network's parameters are 309 MiB).
"""
from __future__ import annotations

import math
from typing import Any

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleybench.memtrim import trim
from foleybench.metrics.embedders import winograd
from foleybench.metrics.embedders.fastops import im2col_conv_relu as _im2col_conv_relu
from foleybench.metrics.embedders.fastops import linear_relu as _linear_relu

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


def _version(t: torch.Tensor) -> int | None:
    """``t``'s in-place version counter (None for an inference tensor, which has none)."""
    return None if t.is_inference() else t._version


def _wide2_kernel(w: torch.Tensor) -> torch.Tensor:
    """A 3x3 padding-1 kernel ``[K, C, 3, 3]`` on a map 2 wide -> the matrix ``[2K, 6C]`` of
    :func:`_wide2_conv_relu`: row ``(wo, k)``, column ``(dt, wi, c)`` holds
    ``w[k, c, dt, wi - wo + 1]`` (the taps that would read the zero padding are left out)."""
    idx = ((1, 2), (0, 1))                                         # [wo][wi] -> kernel column
    k, c = w.shape[:2]
    out = torch.empty((2, k, 3, 2, c), dtype=w.dtype, device=w.device)
    for wo in range(2):
        for wi in range(2):  # strided copies into the result: no [K, C, 3, 2, 2] temporary
            out[wo, :, :, wi, :] = w[:, :, :, idx[wo][wi]].permute(0, 2, 1)
    return out.reshape(2 * k, 6 * c)


def _wide2_conv_relu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``relu(conv2d(x, ., padding=1))`` for ``x [B, C, H, 2]`` as one matrix product: both
    output columns read the same 3 x 2 input window, so the rows are the ``B * H`` windows
    (``6C`` values) and ``w`` (:func:`_wide2_kernel`) gives both output columns at once, a
    third fewer multiplications than the padded 3x3 convolution and a GEMM shape oneDNN
    runs near its peak where the convolution on a 2-wide map runs at about half of it.
    Returns ``[B, K, H, 2]`` (channels-last memory)."""
    n, c, h, width = x.shape
    if width != 2:
        raise ValueError(f"FAST_PLAN entry 'wide2' needs a map 2 wide, got {width}")
    rows = F.pad(x.permute(0, 2, 3, 1).reshape(n, h, 2 * c), (0, 0, 1, 1))   # [B, H + 2, 2C]
    a = rows.unfold(1, 3, 1).transpose(2, 3).reshape(n * h, 6 * c)          # (dt, wi, c)
    return _linear_relu(a, w, b).view(n, h, 2, -1).permute(0, 3, 1, 2)


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

    FOLD_ROWS = 128  # output channels folded at a time (bounds the float64 temporaries)

    def folded(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Both convs with their eval-mode batch norm folded in, computed in float64 and
        rounded to float32: ``(w * s, beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``.
        The weight is folded FOLD_ROWS output channels at a time into a float32 result (the
        same values as one float64 pass: the products are elementwise), so folding block 6
        never holds a float64 copy of its 2048x2048x3x3 kernel."""
        out = []
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2)):
            s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w = torch.empty(conv.weight.shape, dtype=torch.float32, device=conv.weight.device)
            for a in range(0, w.shape[0], self.FOLD_ROWS):
                z = slice(a, a + self.FOLD_ROWS)
                w[z] = (conv.weight[z].double() * s[z, None, None, None]).float()
            out.append((w, (bn.bias.double() - bn.running_mean.double() * s).float()))
        return out


class Cnn14(nn.Module):
    """Cnn14 at 16 kHz; inference graph only (no SpecAugment, dropout is identity in eval).

    forward: ``[B, N]`` samples -> (embedding ``[B, 2048]``, logits ``[B, 527]``).
    """

    # How each of the 12 convs runs on the fast route, in order (block 1 conv 1, block 1
    # conv 2, ..., block 6 conv 2): "nchw" / "cl" direct convolution on a contiguous /
    # channels-last input, "im2col" one matrix product of the 3x3 windows (block 1's
    # 1-channel conv), "wide2" one matrix product on a 2-wide map (block 6, where 64
    # mel bins have been pooled to 2; :func:`_wide2_conv_relu`), "w2" / "w4" Winograd
    # F(2x2, 3x3) / F(4x4, 3x3) (channels-last).
    FAST_PLAN = ("im2col",) + ("cl",) * 5 + ("nchw",) * 4 + ("wide2",) * 2

    def __init__(self, fast: bool = True) -> None:
        super().__init__()
        self.fast = fast
        self._fast_cache: tuple[tuple, list] | None = None   # (plan + weight versions, folded kernels)
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
    # inputs it sees in one pass; the time pooling is then a running max and a float64
    # running sum over the chunks (_frames_chunked).
    CHUNK_FRAMES = 32 * 64
    CONTEXT = 128
    POOL = 32

    def _frames(self, logmel: torch.Tensor, fast: bool | None = None) -> torch.Tensor:
        """``[B, 1, T, 64]`` log-mel -> per-frame features ``[B, 2048, T // 32]``."""
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)            # BN over mel bins
        if self._use_fast(x, fast):
            return self._frames_fast(x)
        for i in range(6):
            x = getattr(self, f"conv_block{i + 1}")(x, 2 if i < 5 else 1)
        return x.mean(dim=3)                                           # over mel

    def _use_fast(self, x: torch.Tensor, fast: bool | None) -> bool:
        """The fast route runs in eval mode without autograd, float32 on CPU, unless
        turned off (``Cnn14(fast=False)`` or ``fast=False`` per call)."""
        return bool(self.fast if fast is None else fast) and not self.training \
            and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32

    def _fast_kernels(self) -> list:
        """Per conv (in :attr:`FAST_PLAN` order), its BN-folded ``(how, weight, bias)``; a
        Winograd conv's weight is the transformed kernel. Made on first use and again
        whenever a conv or batch-norm tensor changed (a load_state_dict, an in-place edit):
        the key is the plan and every such tensor's identity and version counter."""
        tensors = [t for i in range(6) for t in getattr(self, f"conv_block{i + 1}").state_dict(
            keep_vars=True).values()]
        key = (tuple(self.FAST_PLAN),) + tuple((id(t), t.data_ptr(), _version(t), t.device, t.dtype)
                                               for t in tensors)
        if self._fast_cache is not None and self._fast_cache[0] == key:
            return self._fast_cache[1]
        plan = iter(self.FAST_PLAN)
        kernels = []
        with torch.inference_mode(False), torch.no_grad():  # this order: inference_mode(False) turns grad mode on
            for i in range(6):
                for w, b in getattr(self, f"conv_block{i + 1}").folded():
                    how = next(plan)
                    if how in ("w2", "w4"):
                        if w.shape[1] == 1:
                            raise ValueError("FAST_PLAN: block 1's first conv (1 input channel) runs direct")
                        w = winograd.transform_kernel(w.double(), int(how[1]))
                    elif how == "wide2":
                        w, b = _wide2_kernel(w), b.repeat(2)
                    elif how == "im2col":
                        w = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)       # columns (dh, dw, c)
                    elif how not in ("nchw", "cl"):
                        raise ValueError(f"FAST_PLAN entry {how!r}: expected nchw, cl, im2col, wide2, "
                                         "w2 or w4")
                    fmt = torch.channels_last if how == "cl" else torch.contiguous_format
                    kernels.append((how, w.float().contiguous(memory_format=fmt), b.float()))
        self._fast_cache = (key, kernels)
        trim()  # the folding's freed temporaries back to the OS (foleybench.memtrim)
        return kernels

    def _frames_fast(self, x: torch.Tensor) -> torch.Tensor:
        """The conv stack on the bn0 output ``x [B, 1, T, 64]`` with batch norm folded into
        the convs, each conv run as :attr:`FAST_PLAN` says (a Winograd second conv fuses
        its block's 2x2 average pool)."""
        k = self._fast_kernels()
        for i in range(6):
            for j in range(2):
                how, w, b = k[2 * i + j]
                pool = j == 1 and i < 5
                if how in ("wide2", "im2col"):
                    x = (_wide2_conv_relu if how == "wide2" else _im2col_conv_relu)(x, w, b)
                    if pool:
                        x = F.avg_pool2d(x, 2)
                    continue
                if how in ("w2", "w4"):
                    xl = x.permute(0, 2, 3, 1)
                    x = winograd.conv3x3(xl.contiguous(), w, b, int(how[1]), pool=pool).permute(0, 3, 1, 2)
                    continue
                fmt = torch.channels_last if how == "cl" else torch.contiguous_format
                x = F.relu_(F.conv2d(x.contiguous(memory_format=fmt), w, b, padding=1))
                if pool:
                    x = F.avg_pool2d(x, 2)
        return x.mean(dim=3)                                           # over mel -> [B, 2048, T']

    def _frames_chunked(self, x: torch.Tensor | None, fast: bool | None = None, get: Any = None,
                        n: int | None = None) -> torch.Tensor:
        """The time pooling of :meth:`_head` (max + mean over time, ``[B, 2048]``) of
        :meth:`_frames` of the log-mel of ``x`` ``[B, N]``, computed chunk by chunk: each
        chunk's frames go into a running max and a float64 running sum, so the per-frame
        features are never held for the whole input (they grew with its length: 92 MB, and
        as much again for their concatenation, at 60 minutes). ``get(lo, hi)`` and ``n`` in
        place of ``x``: the samples ``[lo, hi)`` of a signal of ``n`` samples, reflected past
        both ends as the centring pads ``x`` (a stream's windows, which move forward)."""
        if x is not None:
            padded = F.pad(x[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")  # global centring
            n = x.shape[-1]
            get = lambda lo, hi: padded[:, 0, lo + N_FFT // 2:hi + N_FFT // 2]  # noqa: E731
        n_stft = n // HOP + 1
        n_out = n_stft // self.POOL
        peak: torch.Tensor | None = None
        total: torch.Tensor | None = None
        for a in range(0, n_out, self.CHUNK_FRAMES // self.POOL):
            b = min(n_out, a + self.CHUNK_FRAMES // self.POOL)
            s = max(0, a * self.POOL - self.CONTEXT)
            e = min(n_stft, b * self.POOL + self.CONTEXT)
            seg = get(s * HOP - N_FFT // 2, (e - 1) * HOP + N_FFT // 2)[:, None]  # exactly STFT frames s..e-1
            st = self.spectrogram_extractor.stft
            re, im = st.conv_real(seg), st.conv_imag(seg)
            spec = (re ** 2 + im ** 2).transpose(1, 2)[:, None]
            y = self._frames(self.logmel_extractor(spec), fast=fast)
            lo = (a * self.POOL - s) // self.POOL
            y = y[..., lo:lo + (b - a)]
            m, t = y.max(dim=2).values, y.double().sum(dim=2)
            peak, total = (m, t) if peak is None else (torch.maximum(peak, m), total + t)
            del y
        assert peak is not None and total is not None
        return peak + (total / n_out).to(peak.dtype)

    def long_input(self, n: int) -> bool:
        """True when ``n`` samples take the chunked route."""
        return n // HOP + 1 > self.CHUNK_FRAMES + 2 * self.CONTEXT

    def forward_stream(self, get: Any, n: int, fast: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` of a signal of ``n`` samples (a chunked-route length) read through
        ``get(lo, hi)`` (``[1, hi - lo]``, reflected past the ends; see :meth:`_frames_chunked`)."""
        return self._classify(self._frames_chunked(None, fast=fast, get=get, n=n))

    def forward(self, x: torch.Tensor, fast: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``fast``: the Winograd route (None: ``self.fast``); it applies only in eval mode
        without autograd, float32 on CPU (see :meth:`_use_fast`)."""
        if self.long_input(x.shape[-1]):
            return self._classify(self._frames_chunked(x, fast=fast))
        x = self._frames(self.logmel_extractor(self.spectrogram_extractor(x)), fast=fast)  # [B, 2048, T']
        return self._head(x)

    def _head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame features ``[B, 2048, T']`` -> (embedding, logits)."""
        return self._classify(x.max(dim=2).values + x.mean(dim=2))     # over time

    def _classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Time-pooled features ``[B, 2048]`` -> (embedding, logits)."""
        emb = F.relu(self.fc1(x))
        return emb, self.fc_audioset(emb)
