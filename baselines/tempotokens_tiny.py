"""Networks, two-stage trainer and sampler of ``tempotokens.debug`` / ``tempotokens.tiny``.

Our own small stand-ins for the pieces TempoTokens (Yariv et al. 2023) takes from a
text-to-video model, trained on synthfoley on a CPU. Written from the paper and the
issue text; no code is taken from guyyariv/TempoTokens.

- :class:`Denoiser`: a small factorised space-time UNet on 32x32 frames (2x2 pixel
  unshuffle, two spatial levels). Every residual block has a per-frame 3x3 spatial conv,
  a dilated temporal conv (kernel 3; dilations 1, 2, 4, 2) and the diffusion-step
  embedding; every level has a *spatial* cross-attention in which frame f's pixels
  attend to frame f's own context (a learned null token first, always present), so a
  frame sees only its context and temporal layers see no conditioning. Norms are per
  frame, time is never downsampled: any number of frames goes through.
- :class:`TextEncoder`: word embeddings of the label (a fixed vocabulary of the
  synthfoley label words, others map to ``<unk>``) plus positions: the stage-1 context.
- :class:`AudioEncoder`: log-mel (25 ms windows, 10 ms hop, no centring) then three
  1-D convs (the middle one stride 2): one patch per 20 ms, with a bounded receptive
  field (:meth:`AudioEncoder.patch_span`) and a time per patch.
- :class:`~foleybench.baselines.tempotokens_mapper.AudioMapper`: patches -> per-frame
  contexts ``[s_f, w1, w2, w4, w8, g]`` by time.

Training (:class:`TempoTokensTrainer`, one run of ``foleybench train``): the first
``stage1_steps`` steps train the denoiser and text encoder with the noise MSE on 16-frame
crops, the label text as context, dropped (empty context = the CFG null) for 10% of the
clips. After that the denoiser and text encoder are frozen (no gradient: ``grad`` stays
None) and only the audio encoder and mapper train, on the noise MSE + ``l1_weight`` x
mean |s| (+ ``event_align_weight`` x mean (s_f - e_f)^2, e_f the frozen stage-1 event token of
frame f's true offset code; with ``event_context="six"`` stage 1 sees, after the label, the
six-token event context ``[e_f, w1(e)_f, w2(e)_f, w4(e)_f, w8(e)_f, g(e)]`` of
:meth:`TempoTokensNet.event_context` -- the mapper's context shape -- and stage 2 pulls
all six mapper tokens to it); with ``motion_weight`` > 0 the noise MSE of both stages weighs
moving pixels more (:func:`motion_weights`). The stage is read from a step counter stored in the network, so a resumed run
continues in the right stage. Stage 2 draws the context per batch (``train_contexts=
"mixed"``): the full audio context, 1-3 window tokens, the global token alone, or the
label text followed by the full audio context, so one checkpoint serves every
generation tag (docs/PROTOCOL.md, "TempoTokens").

The denoiser outputs the clean clip (x0-parameterisation, :func:`predict_eps`); the loss
is the noise MSE of the noise estimate it implies, with Min-SNR-5 weights (:func:`noise_loss`). Sampling (:func:`sample`): DDIM (eta 0) in ``sample_steps`` steps over a cosine schedule
of ``diffusion_steps``, classifier-free guidance ``eps_u + guidance (eps_c - eps_u)``
against the empty context; ``guidance == 0`` runs the unconditional pass only. Initial
noise comes from one generator per clip, seeded with the request's seed.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleybench.baselines.tempotokens_mapper import AudioMapper, window_tokens
from foleybench.family import Trainer

# The words of the synthfoley labels (datasets/synth_scenes.py); others are <unk>.
VOCAB = ("<unk>", "a", "ball", "bouncing", "car", "clapping", "door", "driving", "drum", "falling", "floor",
         "hands", "hitting", "knocking", "metronome", "on", "past", "pond", "rain", "stick", "the", "ticking")
CONTEXTS = ("text", "audio", "text_audio")
MIN_SNR = 5.0
EVENT_REACH = 2                  # event-offset codes -2..2 frames; code 2 * EVENT_REACH + 1: no event near
EVENT_CONTEXTS = ("frame", "six")
GENERATION_FIELDS = ("context", "n_windows", "global_only", "sample_steps", "guidance")


@dataclass(frozen=True)
class TempoTinyConfig:
    """Sizes in pixels / channels; rates in Hz and fps; steps are optimiser steps."""

    size: int = 32                  # frames generated at size x size, then resized to the request
    fps: float = 16.0               # model frame rate (the request's fps is mapped by time)
    crop_frames: int = 16           # training crop (1 s at 16 fps)
    sample_rate: int = 16000
    n_fft: int = 400
    hop: int = 160
    n_mels: int = 40
    audio_width: int = 64           # audio patch features
    ctx_dim: int = 64               # context token size (text and audio)
    mapper_hidden: int = 128
    widths: tuple[int, int] = (24, 48)
    heads: int = 4
    text_len: int = 8
    diffusion_steps: int = 1000
    stage1_steps: int = 400
    steps: int = 700                # total: stage 2 runs steps - stage1_steps
    batch_size: int = 4
    lr: float = 2e-3
    cond_dropout: float = 0.1       # stage 1: share of clips trained with the empty context
    l1_weight: float = 0.01         # stage 2: weight of mean |s|
    train_contexts: str = "mixed"   # stage 2: "mixed" (see module docstring) or "audio"
    event_tokens: bool = True       # stage 1: a per-frame event token after the label text (see docstring)
    event_dropout: float = 0.3      # stage 1: share of clips trained on the label text without event tokens
    motion_weight: float = 0.0      # stage 1 and 2: pixel weight 1 + this x motion / clip's mean motion (see loss)
    event_align_weight: float = 0.0  # stage 2: weight of mean (s_f - stage-1 event token of frame f)^2
    event_ce_weight: float = 0.0    # stage 2: weight of the cross-entropy classifying frame f's event code from s_f
    audio_reach: tuple[int, ...] = ()  # dilations of extra residual convs over audio patches (wider, bounded field)
    # stage 1's per-frame event context (TempoTokensNet.event_context): "frame" = one event token
    # e_f; "six" = [e_f, w1(e)_f, w2(e)_f, w4(e)_f, w8(e)_f, g(e)], the mapper's context shape
    event_context: str = "frame"
    # stage 1, event_context "six": share of clips whose window and global event tokens are
    # masked out (e_f alone after the label), so the denoiser also learns to read e_f by itself
    event_window_dropout: float = 0.0
    # its own train-only synthfoley set (foleybench.train.train_data_spec), or None: the
    # train split of the 48-clip seed-0 set (21 clips)
    train_data: dict | None = field(default=None, hash=False)
    # generation parameters (not in the recipe hash; recorded in params)
    context: str = "audio"          # CONTEXTS
    n_windows: int = 4              # window tokens kept (w1, w2, w4, w8 in that order)
    global_only: bool = False       # a single global vector per frame
    sample_steps: int = 25
    guidance: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "audio_reach", tuple(int(d) for d in self.audio_reach))
        if any(d < 1 for d in self.audio_reach):
            raise ValueError(f"audio_reach dilations must be >= 1, got {self.audio_reach}")
        if self.event_context not in EVENT_CONTEXTS:
            raise ValueError(f"event_context {self.event_context!r}: want one of {EVENT_CONTEXTS}")
        if not 0 <= self.event_window_dropout <= 1 or (self.event_window_dropout and self.event_context != "six"):
            raise ValueError("event_window_dropout: in [0, 1], and only with event_context 'six'")
        if self.context not in CONTEXTS:
            raise ValueError(f"context {self.context!r}: want one of {CONTEXTS}")
        if not 0 <= self.n_windows <= 4 or self.sample_steps < 1 or self.guidance < 0:
            raise ValueError("need 0 <= n_windows <= 4, sample_steps >= 1, guidance >= 0")
        if self.train_contexts not in ("mixed", "audio") or not 0 <= self.stage1_steps <= self.steps:
            raise ValueError("train_contexts: 'mixed' or 'audio'; need 0 <= stage1_steps <= steps")


# fields added after a checkpoint was shipped: left out of the recipe at their default, so
# the recipes (and hashes) of configs that do not use them stay what they were
LATE_FIELDS: dict[str, Any] = {"event_ce_weight": 0.0, "audio_reach": (), "event_context": "frame",
                               "event_window_dropout": 0.0}


def recipe_config(cfg: TempoTinyConfig) -> dict[str, Any]:
    """The training recipe: the config less its generation parameters (and less
    :data:`LATE_FIELDS` at their defaults)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()
            if k not in GENERATION_FIELDS and not (k in LATE_FIELDS and v == LATE_FIELDS[k])}


def generation_params(cfg: TempoTinyConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in GENERATION_FIELDS}


def tokenize(label: str, max_len: int) -> list[int]:
    """Label text -> vocabulary ids (lower case words; unknown words -> 0), at most max_len."""
    return [VOCAB.index(w) if w in VOCAB else 0 for w in re.findall(r"[a-z]+", label.lower())][:max_len]


def _groups(c: int) -> int:
    return math.gcd(8, c)


def _sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


def _temporal(conv: nn.Conv1d, y: torch.Tensor, b: int, n: int) -> torch.Tensor:
    """Apply a 1-D conv along time: y [B*T, C, H, W] -> same shape."""
    _, c, hh, ww = y.shape
    z = y.view(b, n, c, hh, ww).permute(0, 3, 4, 2, 1).reshape(b * hh * ww, c, n)
    z = conv(z)
    return z.view(b, hh, ww, c, n).permute(0, 4, 3, 1, 2).reshape(b * n, c, hh, ww)


class ResBlock(nn.Module):
    """Per-frame spatial conv, step embedding, dilated temporal conv, spatial conv; residual."""

    def __init__(self, cin: int, cout: int, temb: int, dilation: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2 = nn.GroupNorm(_groups(cout), cout)
        self.tc = nn.Conv1d(cout, cout, 3, padding=dilation, dilation=dilation)
        self.n3, self.c2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, h: torch.Tensor, temb: torch.Tensor, b: int, n: int) -> torch.Tensor:
        y = self.c1(F.silu(self.n1(h))) + self.t(temb)[:, :, None, None]
        y = y + _temporal(self.tc, F.silu(self.n2(y)), b, n)
        return self.skip(h) + self.c2(F.silu(self.n3(y)))


class CrossAttention(nn.Module):
    """Each frame's pixels attend to that frame's context tokens (masked; key 0 is the null)."""

    def __init__(self, ch: int, ctx_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.q, self.k, self.v = nn.Linear(ch, ch), nn.Linear(ctx_dim, ch), nn.Linear(ctx_dim, ch)
        self.o = nn.Linear(ch, ch)

    def forward(self, h: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, c, hh, ww = h.shape
        d = c // self.heads
        x = self.norm(h).flatten(2).transpose(1, 2)                          # [N, HW, C]
        q = self.q(x).view(n, -1, self.heads, d).transpose(1, 2)
        k = self.k(ctx).view(n, -1, self.heads, d).transpose(1, 2)           # [N, h, L, d]
        v = self.v(ctx).view(n, -1, self.heads, d).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        out = self.o(a.transpose(1, 2).reshape(n, hh * ww, c))
        return h + out.transpose(1, 2).reshape(n, c, hh, ww)


class Denoiser(nn.Module):
    """Noise prediction eps(x_t, t, per-frame context) for x [B, T, 3, S, S] in [-1, 1]."""

    def __init__(self, cfg: TempoTinyConfig):
        super().__init__()
        w0, w1 = cfg.widths
        te = 4 * w0
        self.w0 = w0
        self.null = nn.Parameter(0.02 * torch.randn(1, cfg.ctx_dim))
        self.temb = nn.Sequential(nn.Linear(w0, te), nn.SiLU(), nn.Linear(te, te))
        self.stem = nn.Conv2d(12, w0, 3, padding=1)
        self.b0, self.a0 = ResBlock(w0, w0, te, 1), CrossAttention(w0, cfg.ctx_dim, cfg.heads)
        self.down = nn.Conv2d(w0, w1, 3, stride=2, padding=1)
        self.b1, self.a1 = ResBlock(w1, w1, te, 2), CrossAttention(w1, cfg.ctx_dim, cfg.heads)
        self.b2, self.a2 = ResBlock(w1, w1, te, 4), CrossAttention(w1, cfg.ctx_dim, cfg.heads)
        self.up = nn.Conv2d(w1, w0, 3, padding=1)
        self.b3, self.a3 = ResBlock(2 * w0, w0, te, 2), CrossAttention(w0, cfg.ctx_dim, cfg.heads)
        self.out_norm, self.out = nn.GroupNorm(_groups(w0), w0), nn.Conv2d(w0, 12, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, T, 3, S, S]; t [B] steps; ctx [B, T, L, D] (L may be 0); mask [B, T, L] bool."""
        b, n, _, s, _ = x.shape
        kv = torch.cat([self.null.expand(b, n, 1, -1), ctx], dim=2).flatten(0, 1)
        m = torch.cat([mask.new_ones(b, n, 1), mask], dim=2).flatten(0, 1)
        temb = self.temb(_sinusoid(t, self.w0)).repeat_interleave(n, dim=0)
        h0 = self.a0(self.b0(self.stem(F.pixel_unshuffle(x.flatten(0, 1), 2)), temb, b, n), kv, m)
        h = self.a1(self.b1(self.down(h0), temb, b, n), kv, m)
        h = self.a2(self.b2(h, temb, b, n), kv, m)
        h = self.up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.a3(self.b3(torch.cat([h, h0], dim=1), temb, b, n), kv, m)
        return F.pixel_shuffle(self.out(F.silu(self.out_norm(h))), 2).view(b, n, 3, s, s)


class TextEncoder(nn.Module):
    """Label ids -> context tokens [B, L, D] (word + position embeddings, LayerNorm); and
    the stage-1 event tokens: one embedding per event-offset code (:func:`event_codes`)."""

    def __init__(self, cfg: TempoTinyConfig):
        super().__init__()
        self.words = nn.Embedding(len(VOCAB), cfg.ctx_dim)
        self.pos = nn.Parameter(0.02 * torch.randn(cfg.text_len, cfg.ctx_dim))
        self.norm = nn.LayerNorm(cfg.ctx_dim)
        self.event = nn.Embedding(2 * EVENT_REACH + 2, cfg.ctx_dim)

    def event_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Event-offset codes [B, T] -> one token per frame [B, T, 1, D]."""
        return self.norm(self.event(codes))[:, :, None]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.words(ids) + self.pos[: ids.shape[1]])


class AudioEncoder(nn.Module):
    """Mono audio [B, N] at cfg.sample_rate -> (patch features [B, P, W], patch times [P] s).

    Log-mel frames m cover samples [m hop, m hop + n_fft); three convs (kernel 3; the
    second has stride 2) give patch p from mel frames 2p - 4 .. 2p + 4, i.e. samples
    :meth:`patch_span`; patch p's time is the centre of mel frame 2p."""

    def __init__(self, cfg: TempoTinyConfig):
        super().__init__()
        import torchaudio.functional as AF

        self.n_fft, self.hop, self.sr = cfg.n_fft, cfg.hop, cfg.sample_rate
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        fb = AF.melscale_fbanks(cfg.n_fft // 2 + 1, 0.0, cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate)
        self.register_buffer("fb", fb, persistent=False)
        w = cfg.audio_width
        self.c1 = nn.Conv1d(cfg.n_mels, w, 3, padding=1)
        self.c2 = nn.Conv1d(w, w, 3, stride=2, padding=1)
        self.c3 = nn.Conv1d(w, w, 3, padding=1)
        self.reach = tuple(int(d) for d in cfg.audio_reach)
        self.ctx = nn.ModuleList(nn.Conv1d(w, w, 3, padding=d, dilation=d) for d in self.reach)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, N] -> [B, n_mels, M] (audio shorter than one window is zero-padded to it)."""
        if audio.shape[-1] < self.n_fft:
            audio = F.pad(audio, (0, self.n_fft - audio.shape[-1]))
        frames = audio.unfold(-1, self.n_fft, self.hop) * self.window      # [B, M, n_fft]
        power = torch.fft.rfft(frames, dim=-1).abs().pow(2)                # [B, M, n_fft/2+1]
        return ((torch.log(power @ self.fb + 1e-6) + 4.0) / 4.0).transpose(1, 2)

    def patch_times(self, n_patches: int) -> torch.Tensor:
        return (torch.arange(n_patches, dtype=torch.float64) * 2 * self.hop + self.n_fft / 2) / self.sr

    def patch_span(self, p: int) -> tuple[int, int]:
        """Samples [lo, hi) that patch p depends on (its receptive field): mel frames
        2p - 4 .. 2p + 4, widened by 2 d mel frames a side per ``audio_reach`` dilation d."""
        r = 4 + 2 * sum(self.reach)
        return self.hop * (2 * p - r), self.hop * (2 * p + r) + self.n_fft

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.gelu(self.c1(self.log_mel(audio)))
        x = self.c3(F.gelu(self.c2(x)))
        for conv in self.ctx:  # residual dilated convs: each patch also sees its neighbours' audio
            x = x + conv(F.gelu(x))
        return x.transpose(1, 2), self.patch_times(x.shape[-1])


class TempoTokensNet(nn.Module):
    """Everything one checkpoint holds: denoiser + text encoder (stage 1), audio encoder +
    mapper (stage 2), and the count of training steps taken (which stage is running)."""

    def __init__(self, cfg: TempoTinyConfig):
        super().__init__()
        self.cfg = cfg
        self.denoiser = Denoiser(cfg)
        self.text = TextEncoder(cfg)
        self.audio = AudioEncoder(cfg)
        self.mapper = AudioMapper(cfg.audio_width, cfg.mapper_hidden, cfg.ctx_dim)
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.long))

    def text_context(self, labels: Sequence[str], n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Label texts -> ([B, T, L, D], mask [B, T, L]); the same tokens for every frame."""
        ids = [tokenize(s, self.cfg.text_len) for s in labels]
        n = max([len(i) for i in ids] + [0])
        dev = self.denoiser.null.device
        if n == 0:
            return (torch.zeros(len(ids), n_frames, 0, self.cfg.ctx_dim, device=dev),
                    torch.zeros(len(ids), n_frames, 0, dtype=torch.bool, device=dev))
        pad = torch.tensor([i + [0] * (n - len(i)) for i in ids], device=dev)
        mask = torch.tensor([[True] * len(i) + [False] * (n - len(i)) for i in ids], device=dev)
        tok = self.text(pad)
        return tok[:, None].expand(-1, n_frames, -1, -1), mask[:, None].expand(-1, n_frames, -1)

    def audio_context(self, audio: torch.Tensor, n_frames: int, fps: float, n_windows: int = 4,
                      global_only: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mono audio [B, N] -> (contexts [B, T, K, D], mask, frame tokens s [B, T, D])."""
        feats, times = self.audio(audio)
        ctx, s = self.mapper(feats, times, n_frames, fps, n_windows=n_windows, global_only=global_only)
        return ctx, torch.ones(ctx.shape[:3], dtype=torch.bool, device=ctx.device), s

    def context(self, mode: str, labels: Sequence[str], audio: torch.Tensor | None, n_frames: int, fps: float,
                n_windows: int = 4, global_only: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The conditioning context of ``mode`` (CONTEXTS) -> (ctx, mask, s or None)."""
        if mode == "text":
            return (*self.text_context(labels, n_frames), None)
        ctx, mask, s = self.audio_context(audio, n_frames, fps, n_windows, global_only)
        if mode == "text_audio":
            tc, tm = self.text_context(labels, n_frames)
            ctx, mask = torch.cat([tc, ctx], dim=2), torch.cat([tm, mask], dim=2)
        return ctx, mask, s

    def event_context(self, codes: torch.Tensor) -> torch.Tensor:
        """Stage 1's per-frame event context of event-offset codes [B, T] -> [B, T, K, D].

        ``cfg.event_context == "frame"``: K = 1, the event token e_f. ``"six"``: K = 6, the
        same shape as the mapper's audio context: ``[e_f, w1(e)_f, w2(e)_f, w4(e)_f, w8(e)_f,
        g(e)]``, the window tokens computed by the mapper's own
        :func:`~foleybench.baselines.tempotokens_mapper.window_tokens` (its windows) over the
        clip's event tokens, and g(e) the mean of the clip's event tokens over its frames
        (parameter-free; the mapper's g is its attention pooling, which stage 2 pulls to it)."""
        e = self.text.event_tokens(codes)                                    # [B, T, 1, D]
        if self.cfg.event_context == "frame":
            return e
        e = e[:, :, 0]
        g = e.mean(dim=1, keepdim=True).expand(-1, e.shape[1], -1)
        return torch.stack([e, *window_tokens(e, self.mapper.windows), g], dim=2)

    def empty_context(self, b: int, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.denoiser.null.device
        return (torch.zeros(b, n_frames, 0, self.cfg.ctx_dim, device=dev),
                torch.zeros(b, n_frames, 0, dtype=torch.bool, device=dev))


# --------------------------------------------------------------------------- diffusion
def alphas_cumprod(n: int) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021): abar at steps 0..n-1, float64."""
    s = 0.008
    f = torch.cos((torch.arange(n + 1, dtype=torch.float64) / n + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


def predict_eps(net: TempoTokensNet, xt: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """The noise estimate of an x0-parameterised denoiser (its output F is the clean
    clip): ``eps = (x_t - sqrt(abar) F) / sqrt(1 - abar)``. The clean estimate is then
    F itself, bounded, so a small network's error is not divided by sqrt(abar) ~ 1e-4
    when sampling starts (an eps- or v-output trained for a few hundred steps on a CPU
    sampled to noise)."""
    a = alphas_cumprod(net.cfg.diffusion_steps).to(xt.device)[t].float()[:, None, None, None, None]
    return (xt - a.sqrt() * net.denoiser(xt, t, ctx, mask)) / (1 - a).sqrt()


def motion_weights(x0: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-pixel loss weights [B, T, 1, S, S] of clean clips x0 [B, T, 3, S, S]:
    ``1 + strength x m / mean(m)``, m the pixel's mean absolute change (over channels)
    to its previous and next frame (one side at the clip's ends), mean(m) over the clip.
    Moving pixels, the ones whose place says *when* an event happens, weigh more."""
    d = (x0[:, 1:] - x0[:, :-1]).abs().mean(2, keepdim=True)                 # [B, T-1, 1, S, S]
    if d.shape[1] == 0:
        return torch.ones_like(x0[:, :, :1])
    m = torch.cat([d[:, :1], 0.5 * (d[:, 1:] + d[:, :-1]), d[:, -1:]], dim=1)  # [B, T, 1, S, S]
    return 1 + strength * m / (m.flatten(1).mean(1)[:, None, None, None, None] + 1e-3)


def noise_loss(net: TempoTokensNet, xt: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor,
               noise: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The noise MSE with Min-SNR-5 weights (Hang et al. 2023): per clip,
    ``min(SNR, 5) / SNR x mean (eps_hat - eps)^2``, SNR = abar / (1 - abar); the weight
    keeps the nearly clean steps (SNR up to 1e4) from swamping the others. ``weight``
    (broadcast to the clip, e.g. :func:`motion_weights`) multiplies each squared error."""
    a = alphas_cumprod(net.cfg.diffusion_steps).to(xt.device)[t].float()
    snr = a / (1 - a)
    err = (predict_eps(net, xt, t, ctx, mask) - noise).pow(2)
    per_clip = (err if weight is None else err * weight).flatten(1).mean(1)
    return (snr.clamp(max=MIN_SNR) / snr * per_clip).mean()


@torch.no_grad()
def sample(net: TempoTokensNet, ctx: torch.Tensor | None, mask: torch.Tensor | None, n_frames: int,
           gen: torch.Generator, steps: int, guidance: float) -> torch.Tensor:
    """One clip: DDIM (eta 0) from seeded noise -> frames [T, 3, S, S] in [-1, 1].

    ``guidance == 0`` (or no context) runs only the unconditional (empty-context) pass."""
    cfg = net.cfg
    dev = net.denoiser.null.device
    abar = alphas_cumprod(cfg.diffusion_steps)
    ts = torch.linspace(cfg.diffusion_steps - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    x = torch.randn(1, n_frames, 3, cfg.size, cfg.size, generator=gen).to(dev)
    guided = guidance != 0 and ctx is not None
    if guided:  # one pass of two: [empty context (all keys masked but the null), context]
        ctx = torch.cat([torch.zeros_like(ctx), ctx])
        mask = torch.cat([torch.zeros_like(mask), mask])
    else:
        ctx, mask = net.empty_context(1, n_frames)
    x0 = x
    for i, t in enumerate(ts):
        tt = torch.tensor([t] * ctx.shape[0], device=dev)
        eps = predict_eps(net, x.expand(ctx.shape[0], -1, -1, -1, -1), tt, ctx, mask)
        eps = eps[:1] + guidance * (eps[1:] - eps[:1]) if guided else eps
        a = float(abar[t])
        x0 = ((x - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
        if i + 1 == len(ts):
            break
        eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
        a_prev = float(abar[ts[i + 1]])
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    return x0[0]


# --------------------------------------------------------------------------- training
@dataclass
class Clip:
    clip_id: str
    label: str
    video: torch.Tensor  # [T, 3, S, S] in [-1, 1] at cfg.fps
    audio: torch.Tensor  # [N] mono at cfg.sample_rate, N = T * sample_rate / fps
    events: tuple[int, ...] = ()  # frames (at cfg.fps) of the manifest's event times


def event_codes(events: Sequence[int], frames: Sequence[int]) -> list[int]:
    """Per frame, the signed offset d = frame - nearest event frame as a code d + EVENT_REACH
    when |d| <= EVENT_REACH, else 2 EVENT_REACH + 1 (no event near; also with no events)."""
    out = []
    for f in frames:
        d = min((f - e for e in events), key=abs, default=None)
        out.append(d + EVENT_REACH if d is not None and abs(d) <= EVENT_REACH else 2 * EVENT_REACH + 1)
    return out


def event_code_logits(net: TempoTokensNet, s: torch.Tensor) -> torch.Tensor:
    """Frame tokens s [B, T, D] -> logits [B, T, codes] over the event-offset codes:
    minus the Euclidean distance to each code's stage-1 event token (the frozen table,
    LayerNorm output; no gradient reaches the text encoder)."""
    with torch.no_grad():
        table = net.text.event_tokens(torch.arange(2 * EVENT_REACH + 2, device=s.device)[None])[0, :, 0]
    return -(s[..., None, :] - table).pow(2).sum(-1).clamp(min=1e-12).sqrt()


def event_code_ce(net: TempoTokensNet, s: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each frame's true event code [B, T] under :func:`event_code_logits`."""
    logits = event_code_logits(net, s)
    return F.cross_entropy(logits.flatten(0, 1), codes.flatten())


def stage2_modes(cfg: TempoTinyConfig) -> list[tuple[float, tuple[str, int, bool]]]:
    """(probability, (context, n_windows, global_only)) of each stage-2 batch context."""
    if cfg.train_contexts == "audio":
        return [(1.0, ("audio", 4, False))]
    return [(0.4, ("audio", 4, False)), (0.1, ("audio", 1, False)), (0.1, ("audio", 2, False)),
            (0.1, ("audio", 3, False)), (0.1, ("audio", 4, True)), (0.2, ("text_audio", 4, False))]


class TempoTokensTrainer(Trainer):
    """The driver's hooks (foleybench.train): two stages in one run, by the net's step count."""

    def build_net(self, cfg: TempoTinyConfig) -> nn.Module:
        return TempoTokensNet(cfg)

    def load_data(self, train_split: Any, cfg: TempoTinyConfig) -> list[Clip]:
        from foleybench.baselines.video_context import prepare_frames
        from foleybench.media import read_audio, read_video

        spf = cfg.sample_rate / cfg.fps
        out = []
        for r in train_split:
            v = read_video(r.video)
            a = read_audio(r.audio_source, sample_rate=cfg.sample_rate).samples.mean(0)
            n_fr = min(int(v.frames.shape[0] * cfg.fps / v.fps + 1e-6), int(len(a) / spf))
            if n_fr < cfg.crop_frames:
                continue
            video = prepare_frames(v.frames, v.fps, cfg.fps, cfg.size, n_fr)
            events = tuple(int(round(e * cfg.fps)) for e in (r.events or ()))
            out.append(Clip(r.clip_id, r.label, video,
                            torch.from_numpy(np.ascontiguousarray(a[: int(round(n_fr * spf))], np.float32)), events))
        return out

    def batch(self, data: Sequence[Clip], cfg: TempoTinyConfig, rng: np.random.Generator) -> dict[str, Any]:
        k, spf = cfg.crop_frames, cfg.sample_rate / cfg.fps
        vids, auds, labels, codes = [], [], [], []
        for _ in range(cfg.batch_size):
            c = data[int(rng.integers(len(data)))]
            f0 = int(rng.integers(c.video.shape[0] - k + 1))
            vids.append(c.video[f0:f0 + k])
            codes.append(event_codes(c.events, range(f0, f0 + k)))
            a0 = int(round(f0 * spf))
            auds.append(c.audio[a0:a0 + int(round(k * spf))])
            labels.append(c.label)
        g = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        x0 = torch.stack(vids)
        modes = stage2_modes(cfg)
        mode = modes[int(rng.choice(len(modes), p=[p for p, _ in modes]))][1]
        return {"x0": x0, "audio": torch.stack(auds), "labels": labels,
                "t": torch.randint(0, cfg.diffusion_steps, (len(vids),), generator=g),
                "noise": torch.randn(x0.shape, generator=g),
                "drop": torch.rand(len(vids), generator=g) < cfg.cond_dropout, "mode": mode,
                "events": torch.tensor(codes, dtype=torch.long),
                "event_drop": torch.rand(len(vids), generator=g) < cfg.event_dropout,
                # drawn last, so the draws above (and older recipes' batches) are unchanged
                "window_drop": torch.rand(len(vids), generator=g) < cfg.event_window_dropout}

    def stage(self, net: TempoTokensNet) -> int:
        return 1 if int(net.trained_steps) < net.cfg.stage1_steps else 2

    def loss(self, net: nn.Module, batch: dict[str, Any], cfg: TempoTinyConfig) -> torch.Tensor:
        stage = self.stage(net)
        net.trained_steps += 1
        x0, noise, t = batch["x0"], batch["noise"], batch["t"]
        dev = net.denoiser.null.device
        x0, noise, t = x0.to(dev), noise.to(dev), t.to(dev)
        abar = alphas_cumprod(cfg.diffusion_steps).to(dev)[t].float()[:, None, None, None, None]
        xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        n = x0.shape[1]
        weight = motion_weights(x0, cfg.motion_weight) if cfg.motion_weight else None
        if stage == 1:
            net.denoiser.requires_grad_(True)
            net.text.requires_grad_(True)
            labels = ["" if d else s for s, d in zip(batch["labels"], batch["drop"].tolist())]
            ctx, mask = net.text_context(labels, n)
            if cfg.event_tokens:  # label text + this frame's event context (masked when dropped)
                ev = net.event_context(batch["events"].to(dev))
                keep = ~(batch["drop"] | batch["event_drop"]).to(dev)
                ev_mask = keep[:, None, None].expand(-1, n, ev.shape[2]).clone()
                if ev.shape[2] > 1 and "window_drop" in batch:  # e_f alone for these clips
                    ev_mask[batch["window_drop"].to(dev), :, 1:] = False
                ctx = torch.cat([ctx, ev], dim=2)
                mask = torch.cat([mask, ev_mask], dim=2)
            return noise_loss(net, xt, t, ctx, mask, noise, weight)
        net.denoiser.requires_grad_(False)  # frozen: its grads stay None, Adam skips it
        net.text.requires_grad_(False)
        mode, n_windows, global_only = batch["mode"]
        ctx, mask, s = net.context(mode, batch["labels"], batch["audio"].to(dev), n, cfg.fps, n_windows, global_only)
        loss = noise_loss(net, xt, t, ctx, mask, noise, weight) + cfg.l1_weight * s.abs().mean()
        codes = batch["events"].to(dev)
        if cfg.event_align_weight and cfg.event_context == "six":
            # pull all six mapper tokens [s_f, w1..w8, g] of the clip's audio to stage 1's event
            # context of its true event codes (frozen target), whatever context this batch drew
            with torch.no_grad():
                target = net.event_context(codes)
            full = ctx[:, :, -6:] if (mode, n_windows, global_only) in (("audio", 4, False), ("text_audio", 4, False)) \
                else net.audio_context(batch["audio"].to(dev), n, cfg.fps)[0]
            loss = loss + cfg.event_align_weight * (full - target).pow(2).mean()
        elif cfg.event_align_weight:  # pull s_f to the stage-1 token of frame f's event offset (frozen target)
            with torch.no_grad():
                target = net.text.event_tokens(codes)[:, :, 0]
            loss = loss + cfg.event_align_weight * (s - target).pow(2).mean()
        if cfg.event_ce_weight:
            loss = loss + cfg.event_ce_weight * event_code_ce(net, s, codes)
        return loss

    def loss_label(self, cfg: TempoTinyConfig) -> str:
        what = "six-token event-context MSE" if cfg.event_context == "six" else "event-token MSE"
        extra = f" + {cfg.event_align_weight} {what}" if cfg.event_align_weight else ""
        extra += f" + {cfg.event_ce_weight} event-code CE" if cfg.event_ce_weight else ""
        mw = f", motion-weighted x{cfg.motion_weight}" if cfg.motion_weight else ""
        return f"noise MSE{mw}, min-SNR-5 (+ {cfg.l1_weight} mean|s|{extra} from step {cfg.stage1_steps})"
