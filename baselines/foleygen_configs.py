"""Configs of FoleyGen-C and FoleyGen-P, by tag.

Tags: ``debug`` (random init: proxy codec and LM, seconds on CPU), ``tiny`` (our small
codec, the tiny CNN, trained on synthfoley on 2 CPU cores), ``paper`` (EnCodec 24 kHz,
CLIP frames, a MusicGen-small sized LM: the published scale for a GPU; no weights were
released). ``tiny`` variants that differ only in generation parameters share the tiny
checkpoint: ``causal_tiny`` / ``frame_specific_tiny`` (the attention mechanism table)
and ``cfg0_tiny`` / ``cfg1_tiny`` / ``cfg6_tiny`` (the guidance sweep; ``tiny`` is 3), and
``shuffledvideo_tiny`` / ``shuffledvideo_causal_tiny`` / ``shuffledvideo_frame_specific_tiny``
(each mechanism fed another test clip's video: the control a video-using model must beat).

Generation parameters (:data:`GENERATION_FIELDS`) are not part of the training recipe:
``recipe_config`` drops them, so those tags hash to the tiny recipe. Training draws the
attention mechanism per batch from all three (``train_attention="mixed"``), so one
checkpoint can be generated from under each; docs/PROTOCOL.md says why.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from foleybench.baselines.foleygen_lm import MECHANISMS

GENERATION_FIELDS = ("attention", "cfg_coef", "temperature", "top_k", "top_p", "video")
VIDEOS = ("own", "shuffled")
VARIANTS = ("c", "p")


@dataclass(frozen=True)
class FoleyGenConfig:
    """variant "c" (cross-attention) or "p" (prepend). Rates in Hz / fps, lengths in seconds."""

    variant: str
    codec: str = "foleycodec_16khz"   # codec.CODECS
    codec_mode: str = "pretrained"    # "proxy": seeded random-init codec (debug)
    bandwidth: float = 6.0            # kbps, encodec_24khz only
    visual: str = "tiny_cnn"          # foleygen_visual.VISUAL_ENCODERS
    visual_fps: float = 16.0          # frames fed to the visual encoder per second
    frame_size: int = 32              # tiny_cnn input size (frozen towers resize to 224)
    vis_width: int = 64               # tiny_cnn feature width
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_mult: int = 4
    cond_dropout: float = 0.1         # probability a training clip's video is replaced by the null condition
    train_attention: str = "mixed"    # "mixed": a mechanism drawn per batch; or one of MECHANISMS
    steps: int = 1000                 # training recipe
    batch_size: int = 8
    crop_s: float = 2.0               # training crop (aligned to visual frames and codec steps)
    lr: float = 3e-3
    # the config's own train-only synthfoley set ({"clips": N, "seed": S}, foleybench/train.py),
    # None: the 21 train clips of the benchmark's 48-clip seed-0 set
    train_data: Any = None
    # generation parameters (not in the recipe hash; recorded in params)
    attention: str = "full"
    cfg_coef: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    # "own": the clip's video; "shuffled": another test clip's video (the derangement of the
    # `shuffled` baseline, same seed): the control that tells whether the model uses the video
    video: str = "own"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r}: want one of {VARIANTS}")
        if self.attention not in MECHANISMS or self.train_attention not in (*MECHANISMS, "mixed"):
            raise ValueError(f"attention {self.attention!r} / train_attention {self.train_attention!r}: "
                             f"want one of {MECHANISMS} (train: or 'mixed')")
        if self.video not in VIDEOS:
            raise ValueError(f"video {self.video!r}: want one of {VIDEOS}")


_BASE: dict[str, dict[str, Any]] = {
    "debug": dict(codec_mode="proxy", d_model=32, n_heads=2, n_layers=1, vis_width=16, frame_size=16,
                  visual_fps=8.0, steps=20, batch_size=2, crop_s=1.0, top_k=50),
    # tiny: 2500 steps on its own 256-clip train-only set (seed 1): on the 21 train clips of
    # the benchmark set the LM memorised them (loss 0.02 nats/token) and its video-ignoring
    # CFG-0 control scored as well as its best variant
    "tiny": dict(train_data={"clips": 256, "seed": 1}, steps=2500),
    # MusicGen-small sized LM (audiocraft: 1024 wide, 24 layers, 16 heads) on EnCodec 24 kHz
    # at 3 kbps (4 codebooks, as MusicGen/AudioGen); 10 s clips as VGGSound; CLIP frames.
    "paper": dict(codec="encodec_24khz", bandwidth=3.0, visual="clip", visual_fps=8.0, d_model=1024,
                  n_heads=16, n_layers=24, steps=200000, batch_size=64, crop_s=10.0, lr=1e-4),
}
# generation-only variants of tiny: (base tag, overrides)
_GEN_VARIANTS: dict[str, dict[str, Any]] = {
    "causal_tiny": dict(attention="causal"),
    "frame_specific_tiny": dict(attention="frame"),
    "cfg0_tiny": dict(cfg_coef=0.0),
    "cfg1_tiny": dict(cfg_coef=1.0),
    "cfg6_tiny": dict(cfg_coef=6.0),
    # video-ignoring controls: the same model and settings fed another test clip's video
    "shuffledvideo_tiny": dict(video="shuffled"),
    "shuffledvideo_causal_tiny": dict(attention="causal", video="shuffled"),
    "shuffledvideo_frame_specific_tiny": dict(attention="frame", video="shuffled"),
}


def config_tags() -> list[str]:
    """Every tag of either family."""
    return [*_BASE, *_GEN_VARIANTS]


def get_config(variant: str, tag: str, **overrides: Any) -> FoleyGenConfig:
    """The config of ``foleygen_{variant}.{tag}`` with ``overrides`` (KeyError if unknown)."""
    if tag in _GEN_VARIANTS:
        return FoleyGenConfig(variant=variant, **{**_BASE["tiny"], **_GEN_VARIANTS[tag], **overrides})
    if tag not in _BASE:
        raise KeyError(f"unknown FoleyGen config foleygen_{variant}.{tag}")
    return FoleyGenConfig(variant=variant, **{**_BASE[tag], **overrides})


def recipe_config(cfg: FoleyGenConfig) -> dict[str, Any]:
    """The training recipe of ``cfg`` as plain data: the config less its generation
    parameters, plus the sha256 of the codec checkpoint whose tokens it learns (a
    retrained codec stales the LM)."""
    d = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in GENERATION_FIELDS}
    if cfg.codec == "foleycodec_16khz" and cfg.codec_mode == "pretrained":
        from foleybench.baselines.codec_small import CODEC_SHA256

        d["codec_sha256"] = CODEC_SHA256
    return d


def generation_params(cfg: FoleyGenConfig) -> dict[str, Any]:
    """The generation parameters of ``cfg`` (recorded in a model's params)."""
    return {k: getattr(cfg, k) for k in GENERATION_FIELDS}
