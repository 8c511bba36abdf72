"""Neural audio codecs behind one interface: waveform <-> int64 tokens ``[B, K, T]``.

A :class:`Codec` turns mono audio at its ``sample_rate`` into ``K`` parallel token
streams at ``frame_rate`` tokens per second (one stream per residual codebook, values in
``[0, cardinality)``), and back. Two codecs, by name (:func:`get_codec`):

- ``encodec_24khz``: the upstream EnCodec 24 kHz network, the very ``EncodecModel`` the
  ``fd_encodec`` evaluator builds (metrics/embedders/encodec.py), loaded strictly from
  the same weights record; ``bandwidth`` (kbps) picks the number of codebooks as
  upstream does (1.5/3/6/12/24 -> 2/4/8/16/32). Its quantiser is EnCodec's own.
- ``foleycodec_16khz``: our small convolutional encoder/decoder with residual vector
  quantisation (baselines/codec_small.py), trained on synthfoley on a CPU; its shipped
  checkpoint is baselines/checkpoints/foleycodec_16khz.pt.

``mode="proxy"`` gives seeded random-init weights of either (tests, debug configs).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foleybench.api import FoleybenchError

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
ENCODEC_BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)  # kbps, as upstream's target_bandwidths


class Codec(nn.Module):
    """Waveform <-> tokens. Subclasses set the four rates and implement the two maps.

    sample_rate: Hz of the audio it reads and writes; hop: samples per token step;
    frame_rate = sample_rate / hop (token steps per second); n_q: codebooks K;
    cardinality: tokens per codebook.
    """

    sample_rate: int
    hop: int
    n_q: int
    cardinality: int

    @property
    def frame_rate(self) -> float:
        """Token steps per second."""
        return self.sample_rate / self.hop

    def n_steps(self, n_samples: int) -> int:
        """Token steps covering ``n_samples`` (the last one zero-padded)."""
        return max(1, math.ceil(n_samples / self.hop))

    def pad(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, 1, N]`` zero-padded on the right to a whole number of hops."""
        return F.pad(wav, (0, self.n_steps(wav.shape[-1]) * self.hop - wav.shape[-1]))

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, 1, N]`` in [-1, 1] at sample_rate -> int64 tokens ``[B, K, ceil(N / hop)]``."""
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """int64 tokens ``[B, k, T]`` (the first k <= K codebooks) -> audio ``[B, 1, T * hop]``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Plain data for params/provenance."""
        return {"sample_rate": self.sample_rate, "frame_rate": self.frame_rate, "n_q": self.n_q,
                "cardinality": self.cardinality}


def bandwidth_to_n_q(bandwidth_kbps: float, frame_rate: float = 75.0, cardinality: int = 1024) -> int:
    """Codebooks that fit ``bandwidth_kbps``: floor(bw / (frame_rate * log2(card)) / 1000), at
    least 1, as upstream EnCodec (24 kHz: 0.75 kbps per codebook, so 6 kbps -> 8)."""
    per_q = frame_rate * math.log2(cardinality) / 1000.0
    return max(1, int(math.floor(bandwidth_kbps / per_q + 1e-9)))


class EncodecCodec(Codec):
    """Upstream EnCodec 24 kHz (the ``encodec`` package's network) at one bandwidth.

    net: an ``encodec.EncodecModel`` (24 kHz: causal SEANet, 32 codebooks of 1024, hop
    320, 75 steps/s, no input normalisation); bandwidth in kbps.
    """

    sample_rate = 24000
    hop = 320
    cardinality = 1024

    def __init__(self, net: nn.Module, bandwidth: float = 6.0, weights: str = "proxy", sha256: str = ""):
        super().__init__()
        if bandwidth not in ENCODEC_BANDWIDTHS:
            raise FoleybenchError(f"encodec_24khz: bandwidth {bandwidth} kbps is not one of {ENCODEC_BANDWIDTHS}")
        self.net, self.bandwidth, self.weights, self.sha256 = net, float(bandwidth), weights, sha256
        self.n_q = bandwidth_to_n_q(bandwidth, self.frame_rate, self.cardinality)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        z = self.net.encoder(self.pad(wav))  # [B, 128, T]
        # upstream's quantiser returns [n_q, B, T]; the layer count comes from our n_q
        return self.net.quantizer.vq.encode(z, n_q=self.n_q).transpose(0, 1).long()

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        z = self.net.quantizer.vq.decode(codes.transpose(0, 1))  # [B, 128, T]
        return self.net.decoder(z)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codec": "encodec_24khz", "bandwidth_kbps": self.bandwidth,
                "weights": self.weights, "weights_sha256": self.sha256}


def _encodec_proxy_init(net: nn.Module) -> None:
    """Random codebooks for proxy weights: upstream initialises them to zeros (k-means on
    the first batch), which would make every code 0 and every test about codes vacuous."""
    for layer in net.quantizer.vq.layers:
        cb = layer._codebook
        cb.embed.copy_(torch.randn_like(cb.embed) * 0.5)
        cb.embed_avg.copy_(cb.embed)
        cb.inited.fill_(1.0)


def encodec_24khz(bandwidth: float = 6.0, mode: str = "pretrained", checkpoint: str | None = None,
                  seed: int = 0) -> EncodecCodec:
    """EnCodec 24 kHz through the weights registry (record ``encodec``, strict load of the
    whole published state_dict), or its seeded random-init proxy (``mode="proxy"``)."""
    from foleybench.metrics.embedders.base import build_net
    from foleybench.metrics.embedders.encodec import _model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # encodec's weight_norm deprecation
        with torch.no_grad():
            b = build_net("encodec", _model, mode=mode, checkpoint=checkpoint, seed=seed,
                          proxy_init=_encodec_proxy_init)
    return EncodecCodec(b.net.eval(), bandwidth, b.weights, b.sha256).eval()


CODECS = ("encodec_24khz", "foleycodec_16khz")


def get_codec(name: str, mode: str = "pretrained", seed: int = 0, **options: Any) -> Codec:
    """The codec ``name`` (:data:`CODECS`), eval mode, gradients off.

    mode: ``pretrained`` (encodec: the weights directory; foleycodec: the shipped
    checkpoint, or ``checkpoint=PATH``) or ``proxy`` (seeded random init).
    options: ``bandwidth`` (encodec, kbps), ``checkpoint``.
    """
    if name == "encodec_24khz":
        codec: Codec = encodec_24khz(options.pop("bandwidth", 6.0), mode, options.pop("checkpoint", None), seed)
    elif name == "foleycodec_16khz":
        from foleybench.baselines.codec_small import load_small_codec

        codec = load_small_codec(mode, options.pop("checkpoint", None), seed)
    else:
        raise FoleybenchError(f"unknown codec {name!r} (known: {', '.join(CODECS)})")
    if options:
        raise FoleybenchError(f"codec {name}: unknown options {sorted(options)}")
    codec.requires_grad_(False)
    return codec.eval()
