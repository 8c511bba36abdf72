"""Networks of the ``antifoley`` family: an audio encoder and a video decoder, trained as
an autoencoder from a clip's sound to its frames (../shared/seeds/foley-to-video-plan.txt).

Audio (mono, ``cfg.sample_rate``) is cut into *patches* of ``cfg.hop`` samples; patch p
covers samples ``[p * hop, (p + 1) * hop)`` and its time is the centre of that interval.
One of two front ends turns the waveform into one feature vector per patch:

- **harmonic** (:class:`HarmonicFrontEnd`): our own harmonic filterbank in the spirit of
  Won et al. 2019 ("Data-Driven Harmonic Filters for Audio Representation Learning",
  ICASSP). A Hann-windowed power spectrum of ``n_fft`` samples centred on each patch goes
  through triangular band-pass filters centred at ``h * f_c`` for harmonics
  h = 1..``n_harmonics`` and ``n_fc`` log-spaced centre frequencies f_c from ``f_min``
  to ``sample_rate / (2 * n_harmonics)`` (so every harmonic stays below Nyquist). A
  filter's bandwidth is Won et al.'s ERB rule ``(0.1079 * f + 24.7) / Q``. **f_c are
  fixed; Q is learnable** (one scalar shared by all filters, initialised at
  ``q_init``), as in their learnable-bandwidth variant. The log energies form a tensor
  ``[B, H, n_fc, P]`` with the harmonic as the channel axis, and a small 2-D CNN over
  (f_c, patch) reads it, so a channel at f_c sees the energy at f_c, 2 f_c, 3 f_c ... at
  once;
- **waveform** (:class:`WaveformFrontEnd`): strided 1-D convolutions on the raw samples
  whose strides multiply to ``hop`` (one output per patch).

Both feed the same temporal encoder (1-D convs over patches), whose patch features are
averaged into one latent per output video frame **by time**: frame f at ``fps`` takes the
patches whose time lies in ``[f / fps, (f + 1) / fps)``
(:func:`foleybench.baselines.tempotokens_mapper.pool_to_frames`), for any clip length
and frame rate. A 1-D conv over frames (kernel 3) adds one frame of context either
side, and the decoder maps each frame latent to a ``frame_size``-square RGB frame.

Nothing is sampled: the same audio always gives the same frames.

Receptive field (:func:`receptive_field_s`): a patch feature depends only on audio
within R seconds of its own interval: harmonic R = ((n_fft - hop) / 2 + 4 hop) / sr (its
spectrum window, two 2-D convs and two temporal convs of kernel 3 along patches);
waveform R = (s1 + s1 s2 + ... + hop + 2 hop) / sr (its conv stack and the two temporal
convs). A frame's output depends on the patches of frames f - 1 .. f + 1 only.
:func:`affected_frames` turns that into the frames a change of audio in ``[t0, t1)`` can
reach (at the tiny config, 8 kHz, hop 125, n_fft 512, 16 fps: R = 87 ms harmonic, 51 ms
waveform, so a change reaches at most 2-3 frames beyond the frames it falls in).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foleybench.baselines.tempotokens_mapper import pool_to_frames

ERB_SLOPE, ERB_OFFSET = 0.1079, 24.7  # Won et al.'s bandwidth rule: (0.1079 f + 24.7) / Q
TEMPORAL_REACH = 2                     # patches either side the temporal encoder adds (2 convs, kernel 3)


def centre_frequencies(cfg: Any) -> torch.Tensor:
    """``[n_fc]`` log-spaced f_c (Hz) from f_min to sample_rate / (2 * n_harmonics)."""
    f_max = cfg.sample_rate / (2.0 * cfg.n_harmonics)
    if not 0 < cfg.f_min < f_max:
        raise ValueError(f"f_min {cfg.f_min} must lie in (0, {f_max}) Hz for {cfg.n_harmonics} harmonics")
    return torch.logspace(math.log10(cfg.f_min), math.log10(f_max), cfg.n_fc, dtype=torch.float64).float()


def frame_patches(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """``[B, N]`` -> ``[B, P, n_fft]`` windows centred on the patches (P = ceil(N / hop));
    zeros before and after the clip."""
    n = x.shape[-1]
    p = -(-n // hop)
    left = (n_fft - hop) // 2
    right = (p - 1) * hop + n_fft - left - n
    return F.pad(x, (left, max(0, right))).unfold(-1, n_fft, hop)[:, :p]


class HarmonicFrontEnd(nn.Module):
    """Waveform ``[B, N]`` -> harmonic log energies ``[B, H, n_fc, P]`` -> features ``[B, C, P]``."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("fc", centre_frequencies(cfg), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("bin_hz", torch.arange(cfg.n_fft // 2 + 1) * (cfg.sample_rate / cfg.n_fft),
                             persistent=False)
        self.log_q = nn.Parameter(torch.tensor(math.log(cfg.q_init)))  # learnable Q, shared
        c = cfg.front_ch
        self.conv1 = nn.Conv2d(cfg.n_harmonics, c, 3, stride=(2, 1), padding=1)  # (f_c, patch)
        self.conv2 = nn.Conv2d(c, c, 3, stride=(2, 1), padding=1)
        n_f = (cfg.n_fc + 3) // 4  # n_fc after two stride-2 convs (kernel 3, padding 1)
        self.proj = nn.Conv1d(c * n_f, cfg.d_audio, 1)

    def filterbank(self) -> torch.Tensor:
        """``[H, n_fc, n_bins]`` triangular filters at h * f_c (peak 1; width 2 * bandwidth)."""
        h = torch.arange(1, self.cfg.n_harmonics + 1, device=self.fc.device, dtype=self.fc.dtype)
        centre = h[:, None] * self.fc[None, :]                              # [H, n_fc]
        bw = (ERB_SLOPE * centre + ERB_OFFSET) / self.log_q.exp()
        dist = (self.bin_hz[None, None, :] - centre[..., None]).abs()
        return F.relu(1.0 - dist / bw[..., None])

    def harmonic_energies(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> log energies ``[B, H, n_fc, P]`` (natural log of power + 1e-4)."""
        cfg = self.cfg
        frames = frame_patches(x, cfg.n_fft, cfg.hop) * self.window
        power = torch.fft.rfft(frames, dim=-1).abs().square()               # [B, P, n_bins]
        energy = torch.einsum("bpk,hfk->bhfp", power, self.filterbank())
        return torch.log(energy + 1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.harmonic_energies(x) / 4.0                                 # roughly unit scale
        h = F.relu(self.conv2(F.relu(self.conv1(e))))                       # [B, c, n_f, P]
        return self.proj(h.flatten(1, 2))

    patch_reach = 2  # the two 2-D convs have kernel 3 along patches

    def reach_samples(self) -> int:
        """Samples beyond a patch's own interval that its spectrum window covers."""
        left = (self.cfg.n_fft - self.cfg.hop) // 2
        return max(left, self.cfg.n_fft - self.cfg.hop - left)


def waveform_strides(hop: int) -> list[int]:
    """Conv strides whose product is ``hop``: its prime factors, merged to at most 4 layers."""
    f, n, s = [], hop, 2
    while n > 1:
        while n % s == 0:
            f.append(s)
            n //= s
        s += 1
    while len(f) > 4:
        f.sort()
        f = [f[0] * f[1], *f[2:]]
    return sorted(f, reverse=True)


class WaveformFrontEnd(nn.Module):
    """Waveform ``[B, N]`` -> features ``[B, C, P]``: conv layers of kernel 3 s, stride s and
    padding s (strides multiply to hop): output j of a layer covers its input steps
    [j s - s, j s + 2 s), centred on its own stride interval, so output p of the stack is
    centred on patch p's interval."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.strides = waveform_strides(cfg.hop)
        layers, c_in = [], 1
        for s in self.strides:
            layers.append(nn.Conv1d(c_in, cfg.front_ch, 3 * s, stride=s, padding=s))
            c_in = cfg.front_ch
        self.convs = nn.ModuleList(layers)
        self.proj = nn.Conv1d(cfg.front_ch, cfg.d_audio, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = -(-x.shape[-1] // self.cfg.hop)
        h = F.pad(x, (0, p * self.cfg.hop - x.shape[-1]))[:, None]
        for conv in self.convs:
            h = F.relu(conv(h))
        return self.proj(h[..., :p])

    patch_reach = 0  # the conv stack's reach is all in reach_samples

    def reach_samples(self) -> int:
        """Samples beyond a patch's own interval the conv stack sees: layer i reaches one
        stride of its input (s_1 * ... * s_i samples) either side."""
        reach, step = 0, 1
        for s in self.strides:
            step *= s
            reach += step
        return reach


class FrameDecoder(nn.Module):
    """Frame latents ``[M, D]`` -> frames ``[M, 3, S, S]`` in [-1, 1] (S = 4 * 2^k)."""

    def __init__(self, d: int, ch: int, size: int):
        super().__init__()
        n_up = int(round(math.log2(size / 4)))
        if 4 * 2 ** n_up != size:
            raise ValueError(f"frame_size {size} must be 4 * 2^k")
        self.ch = ch
        self.fc = nn.Linear(d, ch * 16)
        blocks, c = [], ch
        for _ in range(n_up):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, max(c // 2, 8), 3, padding=1),
                       nn.ReLU()]
            c = max(c // 2, 8)
        self.up = nn.Sequential(*blocks)
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(z)).view(-1, self.ch, 4, 4)
        return torch.tanh(self.out(self.up(h)))


class AntiFoleyNet(nn.Module):
    """Audio ``[B, N]`` at cfg.sample_rate -> frames ``[B, F, 3, S, S]`` in [-1, 1]."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        if cfg.front not in ("harmonic", "waveform"):
            raise ValueError(f"front end {cfg.front!r} is not 'harmonic' or 'waveform'")
        self.front = HarmonicFrontEnd(cfg) if cfg.front == "harmonic" else WaveformFrontEnd(cfg)
        d = cfg.d_audio
        self.temporal = nn.Sequential(nn.ReLU(), nn.Conv1d(d, d, 3, padding=1), nn.ReLU(),
                                      nn.Conv1d(d, d, 3, padding=1))
        self.frame_ctx = nn.Conv1d(d, d, 3, padding=1)   # one frame of context either side
        self.decoder = FrameDecoder(d, cfg.dec_ch, cfg.frame_size)

    def patch_times(self, n_patches: int, device: Any = None) -> torch.Tensor:
        """``[P]`` seconds: the centre of each patch's interval."""
        return (torch.arange(n_patches, device=device, dtype=torch.float64) + 0.5) * (self.cfg.hop /
                                                                                      self.cfg.sample_rate)

    def latents(self, audio: torch.Tensor, n_frames: int, fps: float) -> torch.Tensor:
        """``[B, N]`` -> frame latents ``[B, F, D]`` (mapped by time, then frame context)."""
        h = self.front(audio)
        h = h + self.temporal(h)                                           # [B, D, P]
        z = pool_to_frames(h.transpose(1, 2), self.patch_times(h.shape[-1]), n_frames, fps)
        z = z.transpose(1, 2)
        return (z + self.frame_ctx(z)).transpose(1, 2)                     # [B, F, D]

    def forward(self, audio: torch.Tensor, n_frames: int, fps: float) -> torch.Tensor:
        z = self.latents(audio, n_frames, fps)
        b, f, d = z.shape
        return self.decoder(z.reshape(b * f, d)).view(b, f, 3, self.cfg.frame_size, self.cfg.frame_size)


def receptive_field_s(net: AntiFoleyNet) -> float:
    """Seconds of audio either side of a patch's own interval that its temporal-encoder
    feature depends on: the front end's sample reach plus (its patch reach + the
    temporal encoder's) patches."""
    cfg = net.cfg
    return (net.front.reach_samples() + (net.front.patch_reach + TEMPORAL_REACH) * cfg.hop) / cfg.sample_rate


def affected_frames(net: AntiFoleyNet, t0: float, t1: float, fps: float, n_frames: int) -> range:
    """Frames whose output can change when the audio in ``[t0, t1)`` s changes.

    A change reaches the patches whose interval lies within receptive_field_s of it;
    a patch belongs to the frame its centre falls in; each frame also sees one frame
    either side (frame_ctx). Valid while every frame holds at least one patch (fps at most
    sample_rate / hop); otherwise empty frames borrow the nearest patch."""
    cfg = net.cfg
    r, dt = receptive_field_s(net), cfg.hop / cfg.sample_rate
    # patch p sees [p dt - r, (p + 1) dt + r): it can change when that meets [t0, t1)
    p_lo = max(0, math.floor((t0 - r) / dt) - 1)
    p_hi = math.ceil((t1 + r) / dt)
    f_lo = math.floor((p_lo + 0.5) * dt * fps) - 1
    f_hi = math.floor((p_hi + 0.5) * dt * fps) + 1
    return range(max(0, f_lo), min(n_frames, f_hi + 1))
