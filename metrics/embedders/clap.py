"""LAION-CLAP HTSAT audio branch (Wu et al. 2023): one normalised 512-d vector per clip.

The network and log-mel front end are transformers' CLAP classes (``ClapAudioModelWithProjection``,
``ClapFeatureExtractor``); the weights are the Hugging Face conversion of LAION's
``music_speech_audioset_epoch_15_esc_89.98.pt`` (HTSAT-base, no fusion), the checkpoint
av-benchmark's LAION-CLAP score uses. The published file holds the full ClapModel (text
tower too): every key and shape is checked against a full ClapModel built on the meta
device, then the audio keys are loaded strictly into the audio model.

Preprocessing as laion_clap's ``get_audio_embedding_from_data`` without fusion: 48 kHz,
clips shorter than 10 s are repeated then zero-padded to 10 s ("repeatpad"); 1024-point
Hann STFT, hop 480, 64 Slaney mel bands 50-14000 Hz (the HTSAT-base audio_cfg), dB.
Clips longer than 10 s: upstream takes a RANDOM 10 s crop; we take the first 10 s so
scores are deterministic (recorded in ``preprocess_id``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleybench import weights as W
from foleybench.metrics.embedders.audio_base import AudioEmbedder
from foleybench.metrics.embedders.base import Factory, build_net

RECORD = W.register(W.WeightRecord(
    name="clap",
    # upstream name is the generic "model.safetensors"; prefixed so it cannot collide
    filename="laion_larger_clap_general-model.safetensors",
    url="https://huggingface.co/laion/larger_clap_general/resolve/main/model.safetensors",
    sha256=None,
    license="Apache-2.0 (LAION-AI/CLAP)",
    paper="Wu et al., Large-scale Contrastive Language-Audio Pretraining with Feature Fusion and "
          "Keyword-to-Caption Augmentation, ICASSP 2023",
    note=("HF conversion of music_speech_audioset_epoch_15_esc_89.98.pt; the Hub's LFS sha256 was "
          "not reachable from here, so none is recorded. Needs transformers (tested 5.23.0)"),
))

SAMPLE_RATE = 48000
MAX_SECONDS = 10
# HTSAT-base, the architecture of LAION's "larger" music/speech/audioset checkpoints.
PRETRAINED_AUDIO = dict(patch_embeds_hidden_size=128, depths=[2, 2, 12, 2], hidden_size=1024,
                        enable_fusion=False, projection_dim=512)
PRETRAINED_TEXT: dict[str, Any] = dict(projection_dim=512)  # roberta-base defaults
# Derived buffers that transformers versions save or not; text tower only, never used here.
OPTIONAL_KEYS = ("text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids")


def _extractor() -> Any:
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(feature_size=64, sampling_rate=SAMPLE_RATE, hop_length=480,
                                max_length_s=MAX_SECONDS, fft_window_size=1024, frequency_min=50,
                                frequency_max=14000, truncation="rand_trunc", padding="repeatpad")


class CLAP(AudioEmbedder):
    name = "clap"
    rate = SAMPLE_RATE
    dim = 512
    frames_level = False
    min_seconds = 0.0
    max_input_seconds = float(MAX_SECONDS)  # only the first 10 s are read (_embed)

    def __init__(self, net: nn.Module, **kw: Any):
        super().__init__(net, **kw)
        self.extractor = _extractor()

    def _extra_id(self) -> str:
        return "|repeatpad10s|first10s"

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` at 48 kHz -> L2-normalised ``[B, 1, 512]``."""
        wav = [a[: SAMPLE_RATE * MAX_SECONDS] for a in x.float().cpu().numpy().astype(np.float64)]
        feats = self.extractor(wav, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        out = self.net(input_features=feats["input_features"].to(self.device),
                       is_longer=feats["is_longer"].to(self.device))
        return F.normalize(out.audio_embeds.float(), dim=-1)[:, None, :]


def _audio_model(audio_cfg: dict[str, Any]) -> nn.Module:
    from transformers import ClapAudioConfig, ClapAudioModelWithProjection

    return ClapAudioModelWithProjection(ClapAudioConfig(**audio_cfg))


def _load(path: Path, make: Factory) -> tuple[nn.Module, dict[str, Any]]:
    from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

    sd = W.read_state_dict(path)
    with torch.device("meta"):  # shapes and names only: no memory for the text tower
        full = ClapModel(ClapConfig(text_config=ClapTextConfig(**PRETRAINED_TEXT).to_dict(),
                                    audio_config=ClapAudioConfig(**PRETRAINED_AUDIO).to_dict()))
    own = full.state_dict()
    check = {k: v for k, v in sd.items() if k not in OPTIONAL_KEYS}
    W.load_strict(_KeysOnly({k: v for k, v in own.items() if k not in OPTIONAL_KEYS}), check, str(path))
    audio = {k: v for k, v in sd.items() if k.startswith(("audio_model.", "audio_projection."))}
    net = make()
    W.load_strict(net, audio, str(path))
    return net, {}


class _KeysOnly(nn.Module):
    """Stands in for a module whose state_dict is ``sd`` (meta tensors): a strict check only."""

    def __init__(self, sd: dict[str, torch.Tensor]):
        super().__init__()
        self._sd = sd

    def state_dict(self, *a: Any, **k: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self._sd

    def load_state_dict(self, *a: Any, **k: Any) -> Any:  # type: ignore[override]
        return None  # nothing to load: load_strict has already compared every key and shape


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu",
          seed: int = 0, verify: bool = True) -> CLAP:
    """CLAP audio embedder. Proxy: transformers' default ClapAudioConfig (HTSAT-tiny),
    seeded random init; pretrained: HTSAT-base from the registered checkpoint."""
    cfg = {} if mode == "proxy" else PRETRAINED_AUDIO
    b = build_net("clap", lambda: _audio_model(cfg), mode=mode, checkpoint=checkpoint, seed=seed,
                  verify=verify, load=_load)
    return CLAP(b.net, weights=b.weights, checkpoint_sha256=b.sha256, device=device)
