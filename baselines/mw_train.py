"""Training data and loss of the Martel & Wagner networks (their ``Trainer``).

Clips are cut as the paper does (Sec. III-B): audio to a whole number of video frames,
video to the frames that audio covers. A batch is ``cfg.batch_size`` random crops of
``cfg.crop_frames`` frames; the first ``cfg.warm_frames`` give context but no loss. The
seeded, resumable loop around these hooks is ``foleybench.train.train``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from foleybench.baselines.mulaw import quantize
from foleybench.baselines.mw_configs import MWConfig
from foleybench.baselines.video_context import pad_context, prepare_frames
from foleybench.datasets.base import Manifest
from foleybench.family import Trainer


@dataclass
class ClipData:
    """One clip at the model's rates: audio [C, F*spf] (mu-law quantised amplitudes),
    video_padded [F + n - 1, 3, S, S] (n - 1 zero frames first)."""

    clip_id: str
    label: str
    audio: torch.Tensor
    video_padded: torch.Tensor


def load_clips(manifest: Manifest, cfg: MWConfig) -> list[ClipData]:
    """Decode every clip of ``manifest`` at cfg's audio rate, fps and frame size."""
    from foleybench.media import read_audio, read_video

    spf, out = cfg.spf, []
    for r in manifest:
        a = read_audio(r.audio_source, sample_rate=cfg.sample_rate).samples
        a = a.mean(0, keepdims=True) if cfg.channels == 1 else np.repeat(a, 2, 0)[:2] if a.shape[0] == 1 else a[:2]
        v = read_video(r.video)
        n_fr = min(a.shape[-1] // spf, int(v.frames.shape[0] * cfg.fps / v.fps))
        if n_fr < 1:
            continue
        audio = quantize(torch.from_numpy(np.ascontiguousarray(a[:, :n_fr * spf])), cfg.n_classes) \
            if cfg.output == "mulaw" else torch.from_numpy(np.ascontiguousarray(a[:, :n_fr * spf]))
        video = prepare_frames(v.frames, v.fps, cfg.fps, cfg.frame_size, n_fr)
        out.append(ClipData(r.clip_id, r.label, audio, pad_context(video, cfg.n_frames)))
    return out


def crops(clips: Sequence[ClipData], cfg: MWConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops of cfg.crop_frames frames: audio [B, C, k*spf], video [B, k+n-1, 3, S, S]."""
    k, spf, n = cfg.crop_frames, cfg.spf, cfg.n_frames
    aud, vid = [], []
    for _ in range(cfg.batch_size):
        c = clips[rng.integers(len(clips))]
        n_fr = c.audio.shape[-1] // spf
        if n_fr < k:  # clip shorter than a crop: pad with silence and repeated frames
            c = ClipData(c.clip_id, c.label, F.pad(c.audio, (0, (k - n_fr) * spf)),
                         torch.cat([c.video_padded] + [c.video_padded[-1:]] * (k - n_fr)))
            n_fr = k
        f0 = int(rng.integers(n_fr - k + 1))
        aud.append(c.audio[:, f0 * spf:(f0 + k) * spf])
        vid.append(c.video_padded[f0:f0 + k + n - 1])
    return torch.stack(aud), torch.stack(vid)


def loss_fn(out: torch.Tensor, target: torch.Tensor, cfg: MWConfig) -> torch.Tensor:
    """Mean loss per sample and channel: out [B, C, N, K], target amplitudes [B, C, N].

    mulaw: cross-entropy in nats over 256 classes; mse/mae on tanh(out).
    """
    if cfg.output == "mulaw":
        from foleybench.baselines.mulaw import mulaw_encode
        return F.cross_entropy(out.flatten(0, 2), mulaw_encode(target, cfg.n_classes).flatten())
    pred = torch.tanh(out[..., 0])
    return F.mse_loss(pred, target) if cfg.output == "mse" else F.l1_loss(pred, target)


class MWTrainer(Trainer):
    """Teacher-forced next-sample loss on random crops, past the warm-up frames."""

    def build_net(self, cfg: MWConfig) -> torch.nn.Module:
        from foleybench.baselines.martel_wagner import build_net

        return build_net(cfg)

    def load_data(self, train_split: Manifest, cfg: MWConfig) -> list[ClipData]:
        return load_clips(train_split, cfg)

    def batch(self, data: Sequence[ClipData], cfg: MWConfig,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return crops(data, cfg, rng)

    def loss(self, net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], cfg: MWConfig) -> torch.Tensor:
        audio, video = batch
        out = net.sequence_logits(audio, video, first_frame=cfg.warm_frames)
        return loss_fn(out, audio[..., cfg.warm_frames * cfg.spf:], cfg)

    def loss_label(self, cfg: MWConfig) -> str:
        return "training loss (nats/sample)" if cfg.output == "mulaw" else f"training loss ({cfg.output})"
