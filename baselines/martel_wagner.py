"""The three waveform models of Martel & Wagner (arXiv 2308.12408) behind VideoToAudio.

Configs (``family.tag``): ``debug`` (random init, CPU tests in seconds), ``tiny`` (trains
on synthfoley on 2 CPU cores in minutes; trained weights ship in baselines/checkpoints)
and ``paper`` (their architecture at a GPU-sized scale; the paper gives no layer sizes,
so ours are a guess and say so). Audio runs at the config's own rate (the paper also
downsampled) and is resampled to the request's rate on output.

Generation follows the paper (Sec. III-D): sample by sample for ``wavenet_video`` and
``av_transformer`` (frame by frame for ``deepfusion``), the video context of each frame
held for that frame's samples, the model's own output fed back as audio context. The
cached path reuses past activations; ``cached=False`` recomputes the receptive field at
every sample and must give the same audio (tests/test_mw_models.py).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleybench.api import AudioOutput, V2ARequest, VideoToAudio, check_outputs
from foleybench.baselines.mulaw import gumbel_noise, mulaw_decode, sample_classes
from foleybench.baselines.video_context import context_windows, pad_context, prepare_frames

# Bump when a change alters what training produces or what a checkpoint means; it is
# part of the recipe hash, so shipped checkpoints then show up as stale.
CODE_VERSION = "mw-2"
FAMILIES = ("deepfusion", "wavenet_video", "av_transformer")
TAGS = ("debug", "tiny", "paper")
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


@dataclass(frozen=True)
class MWConfig:
    """Hyper-parameters; each family reads the fields it needs. Rates in Hz and fps."""

    family: str
    sample_rate: int = 4000      # model audio rate (Hz)
    fps: float = 16.0            # video rate the model runs at
    n_frames: int = 4            # video context: the last n frames
    frame_size: int = 16         # frames resized to frame_size x frame_size
    channels: int = 1            # 1 mono, 2 stereo
    output: str = "mulaw"        # "mulaw" (256-class cross-entropy), "mse", "mae"
    n_classes: int = 256
    c_vid: int = 8               # video stream channels
    vid_blocks: int = 2          # 3D residual blocks in the video encoder
    vid_down: int = 1            # of which this many halve H and W
    residual: int = 24           # wavenet residual channels
    skip: int = 48               # wavenet skip channels
    dilations: tuple[int, ...] = ()
    d_model: int = 32            # transformer width
    n_heads: int = 4
    n_layers: int = 2
    window: int = 256            # attention window (samples)
    c_aud: int = 16              # deep-fusion audio channels
    fusion_blocks: int = 2
    audio_down: int = 4          # deep-fusion strided entry
    steps: int = 300             # training recipe
    batch_size: int = 8
    crop_frames: int = 6         # training crop length (video frames)
    warm_frames: int = 2         # leading crop frames that give context but no loss
    lr: float = 2e-3
    temperature: float = 1.0

    @property
    def spf(self) -> int:
        """Audio samples per video frame."""
        spf = self.sample_rate / self.fps
        if spf != int(spf):
            raise ValueError(f"sample_rate {self.sample_rate} is not a multiple of fps {self.fps}")
        return int(spf)

    @property
    def out_dim(self) -> int:
        return self.n_classes if self.output == "mulaw" else 1


@dataclass(frozen=True)
class MWConfigExt(MWConfig):
    """MWConfig plus fields added after the tiny checkpoints shipped.

    A subclass, not new MWConfig fields: ``dataclasses.asdict`` of a config is its recipe
    hash and checkpoint check, so a new field on MWConfig would make every shipped
    checkpoint stale. ``get_config`` returns this class only when a new field is off its
    default, so today's configs keep today's asdict.
    """

    audio_frontend: str = "raw"  # av_transformer audio tokens: "raw" (one per sample) or "strided"
    audio_stride: int = 4        # "strided": samples per token (conv kernel = stride)

    def __post_init__(self) -> None:
        if self.audio_frontend not in ("raw", "strided") or self.audio_stride < 2:
            raise ValueError(f"audio_frontend {self.audio_frontend!r} / audio_stride {self.audio_stride}: "
                             "want 'raw' or 'strided' with a stride of at least 2")


def _dil(top: int, stacks: int) -> tuple[int, ...]:
    return tuple(2 ** i for i in range(int(math.log2(top)) + 1)) * stacks


_BASE = {
    "debug": dict(sample_rate=800, n_frames=2, frame_size=16, c_vid=4, vid_blocks=1, vid_down=1,
                  residual=8, skip=8, dilations=_dil(8, 1), d_model=16, n_heads=2, n_layers=1,
                  window=32, c_aud=8, fusion_blocks=1, audio_down=4, steps=20, batch_size=4,
                  crop_frames=3, warm_frames=1),
    "tiny": dict(dilations=_dil(256, 2)),
    "paper": dict(sample_rate=16000, n_frames=8, frame_size=32, c_vid=32, vid_blocks=4, vid_down=2,
                  residual=64, skip=128, dilations=_dil(512, 3), d_model=128, n_heads=8, n_layers=4,
                  window=1024, c_aud=32, fusion_blocks=4, audio_down=16, steps=20000, batch_size=16,
                  crop_frames=6, warm_frames=2, lr=5e-4),
}
# Per-family tiny recipes: deep fusion needs n frames of context but costs one pass per
# frame, so its crops are n + 2 frames with the first n for context only.
_FAMILY = {("deepfusion", "tiny"): dict(steps=400, batch_size=8, crop_frames=6, warm_frames=4),
           ("wavenet_video", "tiny"): dict(residual=16, skip=32, dilations=_dil(512, 2), steps=300, batch_size=6, crop_frames=5,
                                           warm_frames=1),
           ("av_transformer", "tiny"): dict(n_heads=2, steps=300, batch_size=6, crop_frames=3,
                                            warm_frames=1)}


# Variants outside TAGS: (family, tag) -> (base tag, MWConfigExt fields). The strided
# audio front end is the paper's first AV-transformer variant (Sec. III-D3).
_VARIANTS = {("av_transformer", "strided_debug"): ("debug", dict(audio_frontend="strided", audio_stride=4)),
             ("av_transformer", "strided_tiny"): ("tiny", dict(audio_frontend="strided", audio_stride=4))}
_EXT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(MWConfigExt)
                 if f.name not in {g.name for g in dataclasses.fields(MWConfig)}}


def get_config(family: str, tag: str, **overrides: Any) -> MWConfig:
    base, extra = _VARIANTS.get((family, tag), (tag, {}))
    if family not in FAMILIES or base not in TAGS:
        raise KeyError(f"unknown Martel-Wagner model {family}.{tag}")
    kw = {**_BASE[base], **_FAMILY.get((family, base), {}), **extra, **overrides}
    ext = {k: kw.pop(k) for k in _EXT_DEFAULTS if k in kw}
    if all(v == _EXT_DEFAULTS[k] for k, v in ext.items()):  # canonical: plain MWConfig
        return MWConfig(family=family, **kw)
    return MWConfigExt(family=family, **kw, **ext)


def build_net(cfg: MWConfig) -> nn.Module:
    if cfg.family == "deepfusion":
        from foleybench.baselines.deepfusion import DeepFusion
        return DeepFusion(cfg)
    if cfg.family == "wavenet_video":
        from foleybench.baselines.wavenet_video import WaveNetVideo
        return WaveNetVideo(cfg)
    from foleybench.baselines.av_transformer import AVTransformer, StridedAVTransformer
    return StridedAVTransformer(cfg) if getattr(cfg, "audio_frontend", "raw") == "strided" else AVTransformer(cfg)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def loss_fn(out: torch.Tensor, target: torch.Tensor, cfg: MWConfig) -> torch.Tensor:
    """Mean loss per sample and channel: out [B, C, N, K], target amplitudes [B, C, N].

    mulaw: cross-entropy in nats over 256 classes; mse/mae on tanh(out).
    """
    if cfg.output == "mulaw":
        from foleybench.baselines.mulaw import mulaw_encode
        return F.cross_entropy(out.flatten(0, 2), mulaw_encode(target, cfg.n_classes).flatten())
    pred = torch.tanh(out[..., 0])
    return F.mse_loss(pred, target) if cfg.output == "mse" else F.l1_loss(pred, target)


def _pick(out: torch.Tensor, noise: torch.Tensor | None, cfg: MWConfig) -> torch.Tensor:
    """Outputs [..., K] -> amplitudes [...]: a seeded mu-law draw, or the tanh value."""
    if cfg.output != "mulaw":
        return torch.tanh(out[..., 0])
    return mulaw_decode(sample_classes(out, noise, cfg.temperature), cfg.n_classes).to(out.dtype)


@torch.inference_mode()  # not no_grad: less per-op bookkeeping, and steps are tiny ops
def generate_audio(net: nn.Module, video: torch.Tensor, n_samples: int,
                   gens: Sequence[torch.Generator], cached: bool = True) -> torch.Tensor:
    """Autoregressive audio [B, C, n_samples] at cfg.sample_rate for frames [B, F, 3, S, S].

    gens: one generator per clip; each draws its clip's noise frame by frame, so a clip's
    audio does not depend on its batch neighbours. Frames past F repeat the last one.
    """
    cfg = net.cfg
    spf, n, C, B = cfg.spf, cfg.n_frames, cfg.channels, video.shape[0]
    n_fr = -(-n_samples // spf)
    if video.shape[1] < n_fr:
        video = torch.cat([video, video[:, -1:].expand(-1, n_fr - video.shape[1], -1, -1, -1)], 1)
    p = next(net.parameters())
    ctx = context_windows(pad_context(video[:, :n_fr].to(p), n), n)  # [B, F, 3, n, S, S]
    out = p.new_zeros(B, C, n_fr * spf)

    def noise() -> torch.Tensor | None:
        if cfg.output != "mulaw":
            return None
        return torch.stack([gumbel_noise(g, (spf, C, cfg.n_classes)) for g in gens])  # [B, spf, C, K]

    if cfg.family == "deepfusion":
        # One pass per frame; there are no activations to reuse, so cached == naive.
        padded = F.pad(out, (n * spf, 0))
        for f in range(n_fr):
            y = net.frame_logits(padded[..., f * spf:(f + n) * spf], ctx[:, f])  # [B, C, spf, K]
            z = noise()
            padded[..., (f + n) * spf:(f + n + 1) * spf] = _pick(y, None if z is None else z.transpose(1, 2), cfg)
        return padded[..., n * spf:n * spf + n_samples]

    x_prev = p.new_zeros(B, C)
    if cached:
        state = net.init_state(B)
    else:
        hx, hc = p.new_zeros(B, C, n_fr * spf), None
    for f in range(n_fr):
        emb = net.frame_embedding(ctx[:, f])  # [B, D, spf], held for the frame's samples
        z = noise()
        if not cached and hc is None:
            hc = p.new_zeros(B, emb.shape[1], n_fr * spf)
        for o in range(spf):
            s = f * spf + o
            if cached:
                y = net.step(state, x_prev, emb[:, :, o])
            else:
                hx[..., s], hc[..., s] = x_prev, emb[:, :, o]
                y = net.naive_step(hx[..., :s + 1], hc[..., :s + 1])
            x_prev = _pick(y, None if z is None else z[:, o], cfg)
            out[..., s] = x_prev
    return out[..., :n_samples]


def default_checkpoint(name: str) -> Path:
    return CHECKPOINT_DIR / f"{name}.pt"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(str(path), map_location="cpu", weights_only=False)


class MWModel(VideoToAudio):
    """A Martel-Wagner network as a foleybench generator (mono or stereo, seeded)."""

    def __init__(self, cfg: MWConfig, name: str, checkpoint: str | Path | None = None,
                 device: str = "cpu", cached: bool = True):
        from foleybench.weights import load_strict, seeded_init, sha256_file

        self.cfg, self.name, self.device, self.cached = cfg, name, device, cached
        self.net = build_net(cfg)
        self.meta: dict[str, Any] = {"weights": "random-init", "checkpoint": None}
        if checkpoint is not None:
            ck = load_checkpoint(checkpoint)
            if ck.get("config") != dataclasses.asdict(cfg):
                raise ValueError(f"{checkpoint}: checkpoint was trained with another config of {name}")
            load_strict(self.net, ck["state_dict"], str(checkpoint))
            self.meta = {"weights": "trained", "checkpoint": str(checkpoint),
                         "checkpoint_sha256": sha256_file(checkpoint),
                         "recipe_hash": ck.get("recipe_hash"), "data_fingerprint": ck.get("data_fingerprint"),
                         "steps": ck.get("steps_done")}
        else:
            seeded_init(self.net, 0)
        self.net.to(device).eval()

    def params(self) -> dict[str, Any]:
        return {"model": self.name, "config": dataclasses.asdict(self.cfg), "cached": self.cached,
                "n_params": n_params(self.net), **self.meta}

    def generate(self, requests: Sequence[V2ARequest]) -> list[AudioOutput]:
        import torchaudio.functional as AF

        if not requests:
            return []
        cfg = self.cfg
        lengths = [max(1, int(round(r.duration_s * cfg.sample_rate))) for r in requests]
        n_fr = -(-max(lengths) // cfg.spf)
        video = torch.stack([prepare_frames(r.frames, r.fps, cfg.fps, cfg.frame_size, n_fr) for r in requests])
        gens = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
        audio = generate_audio(self.net, video.to(self.device), max(lengths), gens, self.cached).float().cpu()
        outs = []
        for r, n, a in zip(requests, lengths, audio):
            a = a[:, :n]
            if r.sample_rate != cfg.sample_rate:
                a = AF.resample(a, cfg.sample_rate, int(r.sample_rate))
            want = max(1, int(round(r.duration_s * r.sample_rate)))
            a = F.pad(a, (0, max(0, want - a.shape[-1])))[:, :want]
            outs.append(AudioOutput(r.clip_id, np.ascontiguousarray(a.clamp(-1, 1).numpy(), dtype=np.float32),
                                    int(r.sample_rate)))
        check_outputs(requests, outs, self.name)
        return outs


def build_model(family: str, config: str, checkpoint: str | Path | None = None, device: str = "cpu",
                dataset: Any = None, cached: bool = True, task: str = "v2a", seed: int = 0,
                **overrides: Any) -> MWModel:
    """Registry constructor. ``checkpoint=None`` loads the shipped checkpoint for the
    config when there is one (tiny), else seeded random weights (labelled in params).
    ``seed`` is unused: sampling seeds travel with each request (V2ARequest.seed)."""
    if task != "v2a":
        raise ValueError(f"{family}.{config} generates audio from video (v2a), not {task}")
    name = f"{family}.{config}"
    cfg = get_config(family, config, **overrides)
    if checkpoint is None and not overrides and default_checkpoint(name).is_file():
        checkpoint = default_checkpoint(name)
    return MWModel(cfg, name, checkpoint, device=device, cached=cached)
