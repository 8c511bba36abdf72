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

    # Inputs longer than this run the convolutions in chunks (memory bounded by the chunk,
    # not the input: 10 minutes took 10.4 GB whole). Chunks start CONTEXT samples early and
    # drop those outputs; the causal conv stack reaches back < 1000 samples, so each kept
    # frame sees what it sees in one pass. The LSTM and last conv, at 75 Hz, run whole.
    chunk_samples: int = 10 * SAMPLE_RATE   # multiple of HOP
    CONTEXT = 10 * HOP

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> ``[B, T, 128]`` continuous encoder latents."""
        if x.shape[-1] <= self.chunk_samples:
            z = self.net.encoder(x[:, None, :])   # [B, 128, T]
        else:
            z = self._encode_chunked(x[:, None, :])
        return z.transpose(1, 2)

    def _encode_chunked(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder of ``x`` ``[B, 1, N]``, its strided conv stack chunk by chunk."""
        layers = list(self.net.encoder.model)
        cut = next(i for i, m in enumerate(layers) if type(m).__name__ == "SLSTM")
        convs, rest = nn.Sequential(*layers[:cut]), nn.Sequential(*layers[cut:])
        n, step, ctx = x.shape[-1], self.chunk_samples, self.CONTEXT
        parts = []
        for start in range(0, n, step):
            lo = max(0, start - ctx)
            y = convs(x[..., lo:min(n, start + step)])
            parts.append(y[..., (start - lo) // HOP:])
        return self._rest_chunked(rest, torch.cat(parts, dim=-1))

    LATENT_CHUNK = 750   # latent frames (10 s) per LSTM / final-conv step
    TAIL_CONTEXT = 16    # > the final causal conv's reach (kernel 7)

    def _rest_chunked(self, rest: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
        """``rest(z)`` (SLSTM, ELU, final causal conv) over ``z`` ``[B, 512, T]`` in time
        chunks: the LSTM carries its (h, c) state from chunk to chunk (the same recurrence as
        one pass; run whole, its input projections for all T steps cost ~4x the input), and
        the final conv sees TAIL_CONTEXT frames of the previous chunk, whose outputs are
        dropped. Equal to ``rest(z)`` to float32 rounding."""
        slstm, tail = rest[0], nn.Sequential(*list(rest)[1:])
        t_all, step = z.shape[-1], self.LATENT_CHUNK
        if type(slstm).__name__ != "SLSTM" or t_all <= step:
            return rest(z)
        state, prev, out = None, None, []
        for s in range(0, t_all, step):
            seg = z[..., s:s + step].permute(2, 0, 1)            # [t, B, C]
            y, state = slstm.lstm(seg, state)
            if slstm.skip:
                y = y + seg
            y = y.permute(1, 2, 0)                              # [B, C, t]
            if prev is None:
                out.append(tail(y))
            else:
                out.append(tail(torch.cat([prev, y], dim=-1))[..., prev.shape[-1]:])
            prev = y[..., -self.TAIL_CONTEXT:]
        return torch.cat(out, dim=-1)


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu",
          seed: int = 0, verify: bool = True) -> EnCodec:
    """EnCodec-24k encoder embedder (the whole published state_dict, strictly); a
    ``checkpoint`` without the upstream sha256 prefix is labelled custom."""
    b = build_net("encodec", _model, mode=mode, checkpoint=checkpoint, seed=seed, verify=verify, lazy=True)
    return EnCodec(b.net, weights=b.weights, checkpoint_sha256=b.sha256, device=device)
