"""The ``antifoley`` family: audio in, video out, an autoencoder (audio-to-video).

The plan in ../shared/seeds/foley-to-video-plan.txt: encode a clip's sound, decode frames
that could have accompanied it, and compare a harmonic representation of the input with
the raw waveform. Networks in ``antifoley_net`` (front ends, the time mapping, the
receptive field). Configs by tag (a tag's kind is its last ``_`` word):

- ``debug`` / ``waveform_debug``: seeded random init, small, seconds on CPU;
- ``tiny`` (**harmonic** front end) and ``waveform_tiny`` (raw-waveform front end):
  trained on the synthfoley train split on a CPU, identical in everything but ``front``.

There is no ``paper`` config: the seed is a plan, not a published model, so there is no
published scale to reproduce.

Training (``AntiFoleyTrainer``) is frame reconstruction: random crops of ``crop_frames``
frames, the audio of the crop plus ``margin_frames`` frames either side (so every
frame in the loss sees the audio context it sees at generation; zeros beyond the clip),
loss = L1(frames) + ``diff_weight`` * L1(frame differences) (the second term rewards
motion where the real video moves, at audio events).

Generation is **deterministic and seed-invariant**: an autoencoder samples nothing, so
``A2VRequest.seed`` is ignored and two seeds give bit-identical video (the model says
so with ``seed_invariant = True`` and in ``params()``). Audio is downmixed to mono,
resampled to the model rate and cut or zero-padded to the requested duration; the video
has ``max(1, round(duration_s * fps))`` frames at the requested fps, frame f made from
the audio in ``[f / fps, (f + 1) / fps)`` (plus the receptive field), decoded at
``frame_size`` and resized (bilinear) to the requested size. Clips are generated one at a
time, so a clip's video never depends on its batch neighbours.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from foleybench.api import A2VRequest, AudioToVideo, VideoOutput, check_outputs
from foleybench.baselines.tempotokens_controls import SHUFFLED_TAG, ShuffledAudio
from foleybench.family import CheckpointRecord, Family, Trainer, register_family

CODE_VERSION = "antifoley-2"
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
PAPER = ("audio-to-video autoencoder planned in 'Foley-to-video' (Ramirez Echavarria & Varma 2022); harmonic "
         "front end after Won et al. 2019, Data-Driven Harmonic Filters for Audio Representation Learning")


@dataclass(frozen=True)
class AntiFoleyConfig:
    """front: "harmonic" or "waveform"; rates in Hz and fps; sizes in units.

    hop: samples per audio patch (sample_rate / hop patches per second; 64 at the tiny
    config, 4 per frame at 16 fps); harmonic front end: n_fft-sample spectra, n_harmonics
    harmonics of n_fc log-spaced f_c from f_min, Q initialised at q_init (learned);
    front_ch: front-end conv channels; d_audio: latent size; dec_ch: decoder width at 4x4.
    """

    front: str = "harmonic"
    sample_rate: int = 8000
    fps: float = 16.0            # the training clips' frame rate (generation takes any fps)
    frame_size: int = 32
    hop: int = 125
    n_fft: int = 512
    n_harmonics: int = 4
    n_fc: int = 24
    f_min: float = 40.0
    q_init: float = 1.0
    front_ch: int = 32
    d_audio: int = 64
    dec_ch: int = 64
    steps: int = 1800
    batch_size: int = 12
    crop_frames: int = 16
    margin_frames: int = 2
    diff_weight: float = 1.0
    lr: float = 2e-3
    # its own train-only synthfoley set (foleybench.train.train_data_spec), or None: the
    # train split of the 48-clip seed-0 set (21 clips)
    train_data: dict | None = field(default=None, hash=False)

    @property
    def spf(self) -> int:
        """Audio samples per training frame."""
        spf = self.sample_rate / self.fps
        if spf != int(spf):
            raise ValueError(f"sample_rate {self.sample_rate} is not a multiple of fps {self.fps}")
        return int(spf)


_DEBUG = dict(sample_rate=4000, hop=50, n_fft=128, n_fc=8, f_min=60.0, frame_size=16, front_ch=4, d_audio=8,
              dec_ch=8, steps=10, batch_size=2, crop_frames=4, margin_frames=1)
# The tiny configs train on 240 train-only synthfoley clips of seed 1 (issue 11: on the
# 21 clips of the seed-0 train split antifoley.tiny's AV-Align did not separate from
# `shuffled`); rendering them takes about 40 s (`python -m foleybench.train` does it).
TRAIN_DATA = {"clips": 240, "seed": 1}
CONFIGS: dict[str, AntiFoleyConfig] = {
    "debug": AntiFoleyConfig(front="harmonic", **_DEBUG),
    "waveform_debug": AntiFoleyConfig(front="waveform", **_DEBUG),
    "tiny": AntiFoleyConfig(front="harmonic", train_data=TRAIN_DATA),
    "waveform_tiny": AntiFoleyConfig(front="waveform", train_data=TRAIN_DATA),
    # the shuffled-audio control (tempotokens_controls): tiny fed another test clip's audio
    SHUFFLED_TAG: AntiFoleyConfig(front="harmonic", train_data=TRAIN_DATA),
}


def build_net(cfg: AntiFoleyConfig) -> torch.nn.Module:
    from foleybench.baselines.antifoley_net import AntiFoleyNet

    return AntiFoleyNet(cfg)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    from foleybench.weights import read_checkpoint

    return read_checkpoint(path)


@dataclass
class ClipFrames:
    """One training clip: mono audio [F * spf] at cfg.sample_rate, frames [F, 3, S, S] in [-1, 1]."""

    clip_id: str
    audio: torch.Tensor
    video: torch.Tensor


def load_clips(manifest: Any, cfg: AntiFoleyConfig) -> list[ClipFrames]:
    """Decode every clip at cfg's audio rate, fps and frame size, cut to whole frames."""
    from foleybench.baselines.video_context import prepare_frames
    from foleybench.media import read_audio, read_video

    out = []
    for r in manifest:
        a = read_audio(r.audio_source, sample_rate=cfg.sample_rate, mono=True).samples[0]
        v = read_video(r.video)
        n_fr = min(a.shape[-1] // cfg.spf, int(v.frames.shape[0] * cfg.fps / v.fps))
        if n_fr < 1:
            continue
        out.append(ClipFrames(r.clip_id, torch.from_numpy(np.ascontiguousarray(a[:n_fr * cfg.spf])),
                              prepare_frames(v.frames, v.fps, cfg.fps, cfg.frame_size, n_fr)))
    return out


def crops(clips: Sequence[ClipFrames], cfg: AntiFoleyConfig,
          rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """cfg.batch_size random crops: audio [B, (k + 2 m) * spf] (the crop's k frames and m
    frames of context either side, zeros beyond the clip) and frames [B, k, 3, S, S]
    (a clip shorter than k holds its last frame, with silence under it)."""
    k, m, spf = cfg.crop_frames, cfg.margin_frames, cfg.spf
    aud, vid = [], []
    for _ in range(cfg.batch_size):
        c = clips[int(rng.integers(len(clips)))]
        n_fr = c.video.shape[0]
        f0 = int(rng.integers(max(1, n_fr - k + 1)))
        a = F.pad(c.audio, (m * spf, (m + k) * spf))                     # room for context and short clips
        aud.append(a[f0 * spf:(f0 + k + 2 * m) * spf])
        idx = torch.arange(f0, f0 + k).clamp(max=n_fr - 1)
        vid.append(c.video[idx])
    return torch.stack(aud), torch.stack(vid)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, diff_weight: float) -> torch.Tensor:
    """L1 per pixel plus diff_weight x L1 of consecutive-frame differences ([B, F, 3, S, S])."""
    loss = (pred - target).abs().mean()
    if diff_weight and pred.shape[1] > 1:
        loss = loss + diff_weight * ((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])).abs().mean()
    return loss


class AntiFoleyTrainer(Trainer):
    """Frame reconstruction from audio (see the module docstring)."""

    def build_net(self, cfg: AntiFoleyConfig) -> torch.nn.Module:
        return build_net(cfg)

    def load_data(self, train_split: Any, cfg: AntiFoleyConfig) -> list[ClipFrames]:
        return load_clips(train_split, cfg)

    def batch(self, data: Sequence[ClipFrames], cfg: AntiFoleyConfig, rng: np.random.Generator) -> Any:
        return crops(data, cfg, rng)

    def loss(self, net: torch.nn.Module, batch: Any, cfg: AntiFoleyConfig) -> torch.Tensor:
        audio, video = batch
        k, m = cfg.crop_frames, cfg.margin_frames
        pred = net(audio, k + 2 * m, cfg.fps)[:, m:m + k]
        return reconstruction_loss(pred, video, cfg.diff_weight)

    def loss_label(self, cfg: AntiFoleyConfig) -> str:
        return f"L1 + {cfg.diff_weight:g} x L1(frame diff), pixels in [-1, 1]"


def prepare_audio(req: A2VRequest, sample_rate: int) -> torch.Tensor:
    """The request's audio as mono [N] at ``sample_rate``, cut or zero-padded to duration_s."""
    import torchaudio.functional as AF

    from foleybench.api import InputError

    a = np.asarray(req.audio, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] == 0:
        raise InputError(req.clip_id, f"audio must be float32 [C, N] with N > 0, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(req.clip_id, "audio holds NaN or infinite samples")
    x = torch.from_numpy(np.ascontiguousarray(a.mean(0)))
    if int(req.sample_rate) != sample_rate:
        x = AF.resample(x, int(req.sample_rate), sample_rate)
    n = max(1, int(round(req.duration_s * sample_rate)))
    return F.pad(x, (0, max(0, n - x.shape[-1])))[:n]


class AntiFoleyModel(AudioToVideo):
    """An antifoley network as a foleybench generator (deterministic: ignores the seed)."""

    seed_invariant = True  # an autoencoder samples nothing: the seed cannot change the video

    def __init__(self, cfg: AntiFoleyConfig, name: str, checkpoint: str | Path | None = None,
                 device: str = "cpu"):
        from foleybench.weights import load_strict, seeded_init, sha256_file

        self.cfg, self.name, self.device = cfg, name, device
        self.net = build_net(cfg)
        self.meta: dict[str, Any] = {"weights": "random-init", "checkpoint": None}
        if checkpoint is not None:
            ck = load_checkpoint(checkpoint)
            if ck.get("config") != dataclasses.asdict(cfg):
                raise ValueError(f"{checkpoint}: checkpoint was trained with another config of {name}")
            load_strict(self.net, ck["state_dict"], str(checkpoint))
            self.meta = {"weights": "trained", "checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                         "recipe_hash": ck.get("recipe_hash"), "data_fingerprint": ck.get("data_fingerprint"),
                         "steps": ck.get("steps_done")}
        else:
            seeded_init(self.net, 0)
        self.net.to(device).eval()

    def params(self) -> dict[str, Any]:
        return {"model": self.name, "config": dataclasses.asdict(self.cfg), "front_end": self.cfg.front,
                "seed_invariant": True, "n_params": sum(p.numel() for p in self.net.parameters()), **self.meta}

    @torch.inference_mode()
    def video(self, req: A2VRequest) -> np.ndarray:
        """uint8 [T, H, W, 3] for one request (T = max(1, round(duration_s * fps)))."""
        from foleybench.api import InputError

        fps, (h, w) = float(req.fps), (int(req.size[0]), int(req.size[1]))
        if not (np.isfinite(fps) and fps > 0) or h < 1 or w < 1 or not req.duration_s > 0:
            raise InputError(req.clip_id, f"need fps > 0, size >= 1 and duration > 0, got fps {req.fps}, "
                                          f"size {req.size}, duration {req.duration_s}")
        n_frames = max(1, int(round(req.duration_s * fps)))
        audio = prepare_audio(req, self.cfg.sample_rate).to(self.device)
        frames = self.net(audio[None], n_frames, fps)[0].float()            # [T, 3, S, S] in [-1, 1]
        if (h, w) != (self.cfg.frame_size, self.cfg.frame_size):
            down = h < self.cfg.frame_size or w < self.cfg.frame_size
            frames = F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False, antialias=down)
        u8 = ((frames.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
        return np.ascontiguousarray(u8.permute(0, 2, 3, 1).cpu().numpy())

    def generate(self, requests: Sequence[A2VRequest]) -> list[VideoOutput]:
        outs = [VideoOutput(r.clip_id, self.video(r), float(r.fps)) for r in requests]
        check_outputs(requests, outs, self.name)
        return outs


def build_model(cfg: AntiFoleyConfig, *, name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                dataset: Any = None, seed: int = 0, **_unused: Any) -> AudioToVideo:
    """Family builder: ``checkpoint``'s weights, or seeded random init when None; the
    shuffled-audio tag wraps the model in :class:`ShuffledAudio` (needs the dataset)."""
    model = AntiFoleyModel(cfg, name, checkpoint, device=device)
    if name.endswith("." + SHUFFLED_TAG):
        return ShuffledAudio(model, name, dataset, seed)
    return model


# Shipped tiny checkpoints: `python -m foleybench.train --model antifoley.TAG` on the
# config's train_data set (240 train-only synthfoley clips, seed 1; train split fingerprint
# below), 1800 steps each, the two run side by side (one torch thread each) on the shared
# 2-core CPU at load 10-14: 39 min 20 s (harmonic) and 41 min 37 s (waveform) wall, about
# 4 min of user CPU time each.
_TINY_RECORD = ("antifoley.tiny.pt", "cc05d4409cb35f9208a64b5549ed40f8fdf4fc2ee589f041648687d86bdb9a10",
                "0f513c414bbaae1d4d7723f65f5b28b60e1317260c895c8f244a3862a771716f",
                "c952e6209b9c6fa6afea35213516462b489990eb7644c4aeabf6d8b44cf40075")
_RECORDS: dict[str, CheckpointRecord] = {
    "tiny": CheckpointRecord("tiny", *_TINY_RECORD),
    SHUFFLED_TAG: CheckpointRecord(SHUFFLED_TAG, *_TINY_RECORD),  # the control runs tiny's checkpoint
    "waveform_tiny": CheckpointRecord("waveform_tiny", "antifoley.waveform_tiny.pt",
                                      "5dd643d4a75248bf78d78a33b60ea4a7530535dbd3644fe75e7554373b694492",
                                      "5b04afa845a773f0f922882a539fb1fc380303c45a1608911e964ea11671a3c9",
                                      "c952e6209b9c6fa6afea35213516462b489990eb7644c4aeabf6d8b44cf40075"),
}
register_family(Family(name="antifoley", task="a2v", module=__name__, paper=PAPER, configs=CONFIGS,
                       builder=build_model, load_checkpoint=load_checkpoint, checkpoint_dir=CHECKPOINT_DIR,
                       checkpoints=_RECORDS, trainer=AntiFoleyTrainer()))
