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
from typing import Any

import numpy as np
import torch
from torch import nn

from foleybench import weights as W
from foleybench.memtrim import trim
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

    # Inputs longer than two chunks (10 s) run the convolutions in chunks (memory bounded by
    # the chunk, not the input: 10 minutes took 10.4 GB whole). Chunks start CONTEXT samples
    # early and drop those outputs; the causal conv stack reaches back < 1000 samples, so
    # each kept frame sees what it sees in one pass. The chunk (5 s) is half the longest
    # one-pass input, so a long input peaks below a 10 s one.
    chunk_samples: int = 5 * SAMPLE_RATE   # multiple of HOP
    CONTEXT = 10 * HOP
    streams_long = True  # a long file is read chunk by chunk, never held whole

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> ``[B, T, 128]`` continuous encoder latents."""
        if x.shape[-1] <= 2 * self.chunk_samples:
            return self.net.encoder(x[:, None, :]).transpose(1, 2)   # [B, 128, T] -> [B, T, 128]
        return self._encode_chunked(x[:, None, :])

    def _embed_long(self, x: Any) -> torch.Tensor:
        """A LongAudio through the same chunks as :meth:`_encode_chunked`, each chunk read
        from the stream when it is needed."""
        if len(x) <= 2 * self.chunk_samples:  # what _embed does in one pass
            return self._embed(self._window_getter(x)(0, len(x)))
        get = self._window_getter(x)
        return self._encode_chunked(None, get=lambda lo, hi: get(lo, hi)[:, None, :], n=len(x))

    stats_streams = True  # a long input's latents can reduce to statistics as they stream

    def rows_for(self, n: int) -> int:
        return -(-int(n) // HOP)  # the convs' padding adds a few frames

    def _embed_long_stats(self, x: Any) -> np.ndarray:
        """Packed statistics (frechet_state.RowStats) of :meth:`_embed_long`'s rows: each
        LSTM step's latents go into the statistics and are dropped, so memory does not grow
        with the input's length."""
        from foleybench.metrics.frechet_state import RowStats

        acc = RowStats(self.dim)

        def sink(o: torch.Tensor) -> None:  # [1, t, 128]
            acc.add_rows(o[0].float().cpu().numpy())

        get = self._window_getter(x)
        self._encode_chunked(None, get=lambda lo, hi: get(lo, hi)[:, None, :], n=len(x), sink=sink)
        return acc.pack()

    def _encode_chunked(self, x: torch.Tensor | None, get: Any = None, n: int | None = None,
                        sink: Any = None) -> torch.Tensor | None:
        """The encoder of ``x`` ``[B, 1, N]``, streamed: its strided conv stack chunk by chunk,
        each chunk's 512-channel frames fed straight on to the LSTM and final conv
        (:class:`_LatentStream`), so only the 128-d latents are kept for the whole input,
        once: ``[B, T, 128]``, contiguous. ``get(lo, hi)`` and ``n`` in place of ``x``: the
        chunks read from a stream. ``sink``: each step's ``[B, t, 128]`` latents go to it
        instead of the result (None is returned)."""
        layers = list(self.net.encoder.model)
        cut = next(i for i, m in enumerate(layers) if type(m).__name__ == "SLSTM")
        convs, rest = nn.Sequential(*layers[:cut]), nn.Sequential(*layers[cut:])
        if x is not None:
            n = x.shape[-1]
            get = lambda lo, hi: x[..., lo:hi]  # noqa: E731
        step, ctx = self.chunk_samples, self.CONTEXT
        stream = _LatentStream(rest, self.LATENT_CHUNK, self.TAIL_CONTEXT, sink)
        for start in range(0, n, step):
            lo = max(0, start - ctx)
            y = convs(get(lo, min(n, start + step)))
            stream.push(y[..., (start - lo) // HOP:])
            del y
            trim()  # the chunk's freed activations back to the OS (foleybench.memtrim)
        return stream.finish()

    LATENT_CHUNK = 750   # latent frames (10 s) per LSTM / final-conv step
    TAIL_CONTEXT = 16    # > the final causal conv's reach (kernel 7)

    def _rest_chunked(self, rest: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
        """``rest(z)`` (SLSTM, ELU, final causal conv) over a whole ``z`` ``[B, 512, T]``
        in LATENT_CHUNK steps (:class:`_LatentStream`); equal to ``rest(z)`` to float32 rounding
        (returned as ``rest(z)`` is laid out, ``[B, 128, T]``)."""
        stream = _LatentStream(rest, self.LATENT_CHUNK, self.TAIL_CONTEXT)
        stream.push(z)
        return stream.finish().transpose(1, 2)


class _LatentStream:
    """``rest(z)`` (SLSTM, ELU, final causal conv) of a ``z`` ``[B, 512, T]`` that arrives
    in pieces, computed in steps of ``chunk`` frames: the LSTM carries its (h, c) state from
    step to step (the same recurrence as one pass; run whole, its input projections for all
    T steps cost ~4x the input), and the final conv sees ``context`` frames of the previous
    step, whose outputs are dropped. Steps are ``chunk`` frames whatever the pieces' sizes
    (the last one shorter); a ``z`` of at most ``chunk`` frames is one step, ``rest(z)``.
    :meth:`finish` gives ``[B, T, C]`` (time before channels, as the embedding rows are
    laid out): each step's output is stored that way and copied into the result one step
    at a time, so the latents exist once plus one step, never twice."""

    def __init__(self, rest: nn.Sequential, chunk: int, context: int, sink: Any = None):
        self.sink = sink  # takes each step's [B, t, C] output in place of the result
        self.slstm, self.tail = rest[0], nn.Sequential(*list(rest)[1:])
        self.rest, self.chunk, self.context = rest, chunk, context
        self.pending: list[torch.Tensor] = []
        self.n_pending = 0
        self.state: Any = None
        self.prev: torch.Tensor | None = None
        self.out: list[torch.Tensor] = []
        self.whole = type(self.slstm).__name__ != "SLSTM"  # unknown layout: one pass at the end
        self.steps = 0

    def push(self, z: torch.Tensor) -> None:
        self.pending.append(z)
        self.n_pending += z.shape[-1]
        while not self.whole and self.n_pending > self.chunk:
            buf = torch.cat(self.pending, dim=-1)
            self._step(buf[..., :self.chunk])
            self.pending, self.n_pending = [buf[..., self.chunk:]], buf.shape[-1] - self.chunk

    def finish(self) -> torch.Tensor | None:
        rem = torch.cat(self.pending, dim=-1)
        self.pending = []
        if self.whole:
            res = self.rest(rem).transpose(1, 2).contiguous()
            if self.sink is None:
                return res
            self.sink(res)
            return None
        if rem.shape[-1] or not self.steps:
            self._step(rem)
        del rem
        if self.sink is not None:
            return None
        if len(self.out) == 1:
            return self.out.pop()
        first = self.out[0]
        res = first.new_empty((first.shape[0], sum(o.shape[1] for o in self.out), first.shape[2]))
        t = 0
        while self.out:  # move step by step: each step's copy is freed as soon as it is in res
            o = self.out.pop(0)
            res[:, t:t + o.shape[1]] = o
            t += o.shape[1]
            del o
        return res

    def _step(self, z: torch.Tensor) -> None:
        seg = z.permute(2, 0, 1)                                 # [t, B, C]
        y, self.state = self.slstm.lstm(seg, self.state)
        if self.slstm.skip:
            y = y + seg
        y = y.permute(1, 2, 0)                                  # [B, C, t]
        if self.prev is None:
            o = self.tail(y)
        else:
            o = self.tail(torch.cat([self.prev, y], dim=-1))[..., self.prev.shape[-1]:]
        self.steps += 1
        if self.sink is not None:
            self.sink(o.transpose(1, 2))                          # [B, t, C], then dropped
        else:
            self.out.append(o.transpose(1, 2).contiguous())       # [B, t, C]
        self.prev = y[..., -self.context:]


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu",
          seed: int = 0, verify: bool = True) -> EnCodec:
    """EnCodec-24k encoder embedder (the whole published state_dict, strictly); a
    ``checkpoint`` without the upstream sha256 prefix is labelled custom."""
    b = build_net("encodec", _model, mode=mode, checkpoint=checkpoint, seed=seed, verify=verify, lazy=True)
    return EnCodec(b.net, weights=b.weights, checkpoint_sha256=b.sha256, device=device)
