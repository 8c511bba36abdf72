"""Configs of the three Martel & Wagner networks: one dataclass per network, by tag.

``MWConfig`` holds what every network and the trainer read (rates, video context,
output head, training recipe); each network adds its own fields. Tags: ``debug``
(random init, CPU tests in seconds), ``tiny`` (trains on synthfoley on 2 CPU cores in
minutes), ``paper`` (their architecture at a GPU-sized scale: the paper gives no layer
sizes, so ours are a guess and say so), and the AV transformer's strided-audio variant
(the paper's first variant, Sec. III-D3) at debug and tiny size.

``recipe_config`` is the config as the recipe hash and the checkpoints see it. Its
layout (v1) is that of the single config class the three networks shared when the tiny
checkpoints were trained: that is what keeps their recipe hashes, and so the shipped
files, current (tests/test_model_conformance.py checks every shipped record).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


def _dil(top: int, stacks: int) -> tuple[int, ...]:
    """Dilations 1, 2, 4, ..., top, repeated ``stacks`` times."""
    return tuple(2 ** i for i in range(int(math.log2(top)) + 1)) * stacks


@dataclass(frozen=True)
class MWConfig:
    """Fields every network and the trainer read. Rates in Hz and fps."""

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
        """Outputs per audio sample and channel: 256 mu-law classes or one tanh value."""
        return self.n_classes if self.output == "mulaw" else 1


@dataclass(frozen=True)
class DeepFusionConfig(MWConfig):
    c_aud: int = 16              # audio stream channels
    fusion_blocks: int = 2
    audio_down: int = 4          # strided entry: audio samples per position


@dataclass(frozen=True)
class WaveNetVideoConfig(MWConfig):
    residual: int = 24           # residual channels
    skip: int = 48               # skip channels
    dilations: tuple[int, ...] = _dil(256, 2)


@dataclass(frozen=True)
class AVTransformerConfig(MWConfig):
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    window: int = 256            # attention window (tokens)
    audio_frontend: str = "raw"  # "raw" (one token per sample) or "strided" (paper's first variant)
    audio_stride: int = 4        # "strided": samples per token (conv kernel = stride)

    def __post_init__(self) -> None:
        if self.audio_frontend not in ("raw", "strided") or self.audio_stride < 2:
            raise ValueError(f"audio_frontend {self.audio_frontend!r} / audio_stride {self.audio_stride}: "
                             "want 'raw' or 'strided' with a stride of at least 2")


CLASSES: dict[str, type[MWConfig]] = {"deepfusion": DeepFusionConfig, "wavenet_video": WaveNetVideoConfig,
                                      "av_transformer": AVTransformerConfig}
FAMILIES = tuple(CLASSES)

# Shared by the three networks at each size.
_COMMON: dict[str, dict[str, Any]] = {
    "debug": dict(sample_rate=800, n_frames=2, frame_size=16, c_vid=4, vid_blocks=1, vid_down=1, steps=20,
                  batch_size=4, crop_frames=3, warm_frames=1),
    "tiny": {},
    "paper": dict(sample_rate=16000, n_frames=8, frame_size=32, c_vid=32, vid_blocks=4, vid_down=2,
                  steps=20000, batch_size=16, crop_frames=6, warm_frames=2, lr=5e-4),
}
# Per network. Deep fusion's tiny crops are n + 2 frames with the first n for context
# only: it needs n frames of context but costs one pass per frame.
_STRIDED = dict(audio_frontend="strided", audio_stride=4)
_OWN: dict[str, dict[str, dict[str, Any]]] = {
    "deepfusion": {"debug": dict(c_aud=8, fusion_blocks=1),
                   "tiny": dict(steps=400, crop_frames=6, warm_frames=4),
                   "paper": dict(c_aud=32, fusion_blocks=4, audio_down=16)},
    "wavenet_video": {"debug": dict(residual=8, skip=8, dilations=_dil(8, 1)),
                      "tiny": dict(residual=16, skip=32, dilations=_dil(512, 2), batch_size=6, crop_frames=5,
                                   warm_frames=1),
                      "paper": dict(residual=64, skip=128, dilations=_dil(512, 3))},
    "av_transformer": {"debug": dict(d_model=16, n_heads=2, n_layers=1, window=32),
                       "tiny": dict(n_heads=2, batch_size=6, crop_frames=3, warm_frames=1),
                       "paper": dict(d_model=128, n_heads=8, n_layers=4, window=1024)},
}
_VARIANTS = {("av_transformer", "strided_debug"): ("debug", _STRIDED),
             ("av_transformer", "strided_tiny"): ("tiny", _STRIDED)}


def config_tags(family: str) -> list[str]:
    """Every config tag of ``family`` (``debug``, ``tiny``, ``paper`` and its variants)."""
    return [*_COMMON, *(t for f, t in _VARIANTS if f == family)]


def get_config(family: str, tag: str, **overrides: Any) -> MWConfig:
    """The config of ``family.tag``, with ``overrides`` replacing fields (KeyError if unknown)."""
    base, extra = _VARIANTS.get((family, tag), (tag, {}))
    if family not in CLASSES or base not in _COMMON:
        raise KeyError(f"unknown Martel-Wagner model {family}.{tag}")
    return CLASSES[family](family=family, **{**_COMMON[base], **_OWN[family][base], **extra, **overrides})


# recipe_config v1: the fields of the one class all three networks shared when the tiny
# checkpoints were trained. A network's config is completed with the others' fields at
# the values they had in every tiny config then; fields added since appear only when off
# their default. Changing either table changes the recipe hash of every shipped file.
_V1_FILL: dict[str, Any] = dict(residual=24, skip=48, dilations=_dil(256, 2), d_model=32, n_heads=4,
                                n_layers=2, window=256, c_aud=16, fusion_blocks=2, audio_down=4)
_ADDED_SINCE_V1: dict[str, Any] = dict(audio_frontend="raw", audio_stride=4)


def recipe_config(cfg: MWConfig) -> dict[str, Any]:
    """``cfg`` as stored in a checkpoint and hashed into its recipe (plain data)."""
    out = {**_V1_FILL, **dataclasses.asdict(cfg)}
    if all(out.get(k) == v for k, v in _ADDED_SINCE_V1.items()):
        for k in _ADDED_SINCE_V1:
            out.pop(k, None)
    return out
