"""EnCodec 24 kHz encoder latents (Defossez et al. 2022), before quantisation.

The network is the pinned ``encodec==0.1.1`` package's own ``EncodecModel`` (causal
SEANet encoder, weight-normed convs), built without weights and loaded strictly from the
published ``encodec_24khz-d7cc33bc.th`` (encoder, decoder and quantizer keys: the whole
file must fit). Only the encoder runs: ``[B, N]`` at 24 kHz -> ``[B, ceil(N/320), 128]``,
75 latent frames per second, each one FD sample (``frames_level``), as fadtk's
``encodec-emb``. The 24 kHz model has no input normalisation.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from foleybench import weights as W
from foleybench.metrics.embedders.audio_base import AudioEmbedder
from foleybench.metrics.embedders.base import build_net

RECORD = W.register(W.WeightRecord(
    name="encodec",
    filename="encodec_24khz-d7cc33bc.th",
    url="https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th",
    sha256=None,
    license="MIT (facebookresearch/encodec code and weights)",
    paper="Defossez et al., High Fidelity Neural Audio Compression, TMLR 2023 (arXiv:2210.13438)",
    note=("upstream publishes the sha256 prefix d7cc33bc in the file name (encodec checks it with "
          "torch.hub check_hash); it decides pretrained vs custom. Two third-party records give the full sha256 "
          "d7cc33bcf1aad7f2dad9836f36431530744abeace3ca033005e3290ed4fa47bf (93,171,529 bytes), "
          "not verified here"),
    sha256_prefix="d7cc33bc",
))

SAMPLE_RATE = 24000
HOP = 320  # product of the encoder strides (2, 4, 5, 8)


def _model() -> nn.Module:
    from encodec import EncodecModel

    with warnings.catch_warnings():
        # encodec 0.1.1 uses torch.nn.utils.weight_norm; its deprecation is not ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        return EncodecModel.encodec_model_24khz(pretrained=False)


class EnCodec(AudioEmbedder):
    name = "encodec"
    rate = SAMPLE_RATE
    dim = 128
    frames_level = True
    min_seconds = HOP / SAMPLE_RATE  # one latent frame

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> ``[B, T, 128]`` continuous encoder latents."""
        z = self.net.encoder(x[:, None, :])   # [B, 128, T]
        return z.transpose(1, 2)


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu",
          seed: int = 0, verify: bool = True) -> EnCodec:
    """EnCodec-24k encoder embedder (the whole published state_dict, strictly); a
    ``checkpoint`` without the upstream sha256 prefix is labelled custom."""
    b = build_net("encodec", _model, mode=mode, checkpoint=checkpoint, seed=seed, verify=verify)
    return EnCodec(b.net, weights=b.weights, checkpoint_sha256=b.sha256, device=device)
