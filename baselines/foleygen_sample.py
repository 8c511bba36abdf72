"""Sampling FoleyGen's tokens: classifier-free guidance, top-k / top-p / temperature, KV cache.

Conventions follow audiocraft's ``LMModel.generate`` (MusicGen/AudioGen): the
conditional and the unconditional (null-condition) passes run as one doubled batch and
are mixed as ``uncond + coef * (cond - uncond)``; top-k then top-p filter the tempered
logits; one column of the delayed sequence is sampled per step, and only the cells that
hold a real token (the pattern's valid cells) take the sample, the others stay special.
The null condition is all-zero visual features, which is also what condition dropout
feeds in training (foleygen_train.py). Each clip draws its noise from its own
``torch.Generator``, so its tokens do not depend on its batch neighbours.
"""
from __future__ import annotations

from typing import Sequence

import torch

from foleybench.baselines.codebook_pattern import DelayPattern
from foleybench.baselines.foleygen_kernels import cfg_mix, filter_logits, kernels
from foleybench.baselines.foleygen_lm import FoleyGenLM

__all__ = ["GumbelStream", "cfg_logits", "filter_logits", "generate_codes", "sample_tokens", "sample_tokens_reference"]


def cfg_logits(cond: torch.Tensor, uncond: torch.Tensor, coef: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + coef * (cond - uncond)`` (coef 1: cond, 0: uncond)."""
    return cfg_mix(cond, uncond, float(coef))


class GumbelStream:
    """Each clip's Gumbel noise, step after step: step t of clip b is the transform
    ``-log(-log(clamp(u)))`` of the t-th ``[K, V]`` float64 uniform draw of ``gens[b]``.

    Draws ``chunk`` steps per clip at once: the CPU generator fills a tensor element by
    element in order, so one ``[chunk, K, V]`` draw holds exactly the numbers of ``chunk``
    successive ``[K, V]`` draws (a test checks it), and the transform runs once per chunk
    instead of as five small operations per step. Memory: chunk x B x K x V float64."""

    def __init__(self, gens: Sequence[torch.Generator], K: int, V: int, device: torch.device | str = "cpu",
                 chunk: int = 32):
        self.gens, self.K, self.V, self.device, self.chunk = list(gens), K, V, device, max(1, int(chunk))
        self._buf: torch.Tensor | None = None
        self._i = 0

    def next(self) -> torch.Tensor:
        """The ``[B, K, V]`` Gumbel noise of the next step."""
        buf = self._filled()
        self._i += 1
        return buf[:, self._i - 1]

    def _filled(self) -> torch.Tensor:
        if self._buf is None or self._i == self._buf.shape[1]:
            u = torch.empty(len(self.gens), self.chunk, self.K, self.V, dtype=torch.float64)
            for b, g in enumerate(self.gens):
                u[b].uniform_(generator=g)  # what `chunk` calls of torch.rand(K, V, generator=g) draw
            self._buf = u.clamp_(1e-12, 1 - 1e-12).log_().neg_().log_().neg_().to(self.device)
            self._i = 0
        return self._buf

    def take(self, n_max: int) -> torch.Tensor:
        """The noise ``[B, n, K, V]`` of the next n steps, 1 <= n <= n_max, as many as are
        left in the current chunk: the same numbers as n calls of :meth:`next`."""
        buf = self._filled()
        n = min(int(n_max), buf.shape[1] - self._i)
        out = buf[:, self._i:self._i + n]
        self._i += n
        return out


def sample_tokens(logits: torch.Tensor, gens: Sequence[torch.Generator] | GumbelStream, temperature: float = 1.0,
                  top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """``[B, K, V]`` logits -> int64 ``[B, K]`` tokens in [0, V): argmax when temperature <= 0,
    else the Gumbel-max draw from softmax(filter(logits / temperature)) with clip b's noise
    from ``gens[b]`` (one [K, V] draw per step, whatever the settings, so streams stay aligned;
    or the next step of a :class:`GumbelStream` over them, which draws the same numbers).

    The draw is float64 throughout. With top-k alone (top_p 0, the default) the top-k cut is
    found on the float32 logits, from whichever end of the order is shorter (top 250 of
    256 is the 7 smallest): float32 -> float64 and the division by a positive temperature
    keep distinct values distinct and in order, so the cells cut are exactly those
    :func:`filter_logits` cuts in float64 (ties at the cut kept alike). The tokens are
    :func:`sample_tokens_reference`'s (a test checks them against it), at a fraction of its
    cost.
    """
    B, K, V = logits.shape
    stream = gens if isinstance(gens, GumbelStream) else GumbelStream(gens, K, V, logits.device, chunk=1)
    return kernels().sample(logits, stream.next(), float(temperature), int(top_k), float(top_p))


def sample_tokens_reference(logits: torch.Tensor, gens: Sequence[torch.Generator], temperature: float = 1.0,
                            top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """:func:`sample_tokens` written plainly (filter in float64, then Gumbel-max): the
    definition the fast path is tested against."""
    K, V = logits.shape[1:]
    noise = torch.stack([torch.rand(K, V, generator=g, dtype=torch.float64) for g in gens]).to(logits.device)
    if temperature <= 0:
        return logits.argmax(-1)
    z = filter_logits(logits.double() / temperature, top_k, top_p)
    gumbel = -torch.log(-torch.log(noise.clamp(1e-12, 1 - 1e-12)))
    return (z + gumbel).argmax(-1)


@torch.inference_mode()
def generate_codes(lm: FoleyGenLM, vis: torch.Tensor, n_frames: torch.Tensor, n_steps: int | Sequence[int],
                   gens: Sequence[torch.Generator], *, mechanism: str = "full", cfg_coef: float = 3.0,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 0.0,
                   use_cache: bool = True) -> torch.Tensor:
    """Tokens ``[B, K, max(n_steps)]`` for visual features ``[B, F, Dv]`` (``n_frames`` real
    frames per clip). n_steps: one length for all clips, or one per clip: a clip's valid
    cells follow its own length, so a shorter clip's tokens are those it gets alone (the
    columns past its end stay special and feed nothing real); cut them to its length.

    use_cache=False recomputes the whole prefix at every step (the reference the cache is
    tested against); the tokens are identical.
    """
    from foleybench.baselines.foleygen import small_cpu_threads

    with small_cpu_threads(vis.device, lm.cfg.d_model):
        return _generate(lm, vis, n_frames, n_steps, gens, mechanism, cfg_coef, temperature, top_k, top_p, use_cache)


def _generate(lm: FoleyGenLM, vis: torch.Tensor, n_frames: torch.Tensor, n_steps: int | Sequence[int],
              gens: Sequence[torch.Generator], mechanism: str, cfg_coef: float, temperature: float, top_k: int,
              top_p: float, use_cache: bool) -> torch.Tensor:
    cfg = lm.cfg
    pat = DelayPattern(cfg.n_q, cfg.card)
    B = vis.shape[0]
    lengths = [int(n_steps)] * B if isinstance(n_steps, int) else [int(t) for t in n_steps]
    S = pat.seq_len(max(lengths))
    valid = torch.stack([pat.valid(t, vis.device)[:, :S] if pat.seq_len(t) >= S else
                         torch.nn.functional.pad(pat.valid(t, vis.device), (0, S - pat.seq_len(t)))
                         for t in lengths])  # [B, K, S]
    guided = cfg_coef != 1.0
    v_in = torch.cat([vis, torch.zeros_like(vis)]) if guided else vis  # cond rows, then null rows
    nf_in = torch.cat([n_frames, n_frames]) if guided else n_frames
    # one buffer: column 0 the start column, column s + 1 the tokens sampled at step s (the
    # input of step s + 1); guided, its rows are the conditional rows then the null rows,
    # which hold the same tokens (written twice, so a step reads its input as a view)
    copies = 2 if guided else 1
    both = torch.full((copies, B, cfg.n_q, S + 1), cfg.card, dtype=torch.long, device=vis.device)
    inp = both.view(copies * B, cfg.n_q, S + 1)  # one write of a step's tokens fills both copies
    special = inp.new_full((), cfg.card)
    all_valid = valid.all(1).all(0).tolist()  # columns where no clip has a special cell
    noise = GumbelStream(gens, cfg.n_q, cfg.card, vis.device, chunk=min(S, 32))
    if use_cache:  # chunks of steps, each one call of foleygen_kernels.run_steps
        cache = lm.start(v_in, nf_in, mechanism, S)
        run, s = kernels().run_steps, 0
        while s < S:
            gumbel = noise.take(S - s)
            n = gumbel.shape[1]
            run(s, n, inp, both, valid, all_valid, gumbel, special, B, guided, float(cfg_coef), float(temperature),
                int(top_k), float(top_p), *cache.args)
            s += n
            cache.pos = s
    else:  # the reference: the whole prefix through the forward at every step
        for s in range(S):
            logits = lm(inp[:, :, :s + 1], v_in, nf_in, mechanism)[:, :, -1]
            if guided:
                logits = cfg_logits(logits[:B], logits[B:], cfg_coef)
            tok = sample_tokens(logits.float(), noise, temperature, top_k, top_p)
            both[:, :, :, s + 1] = tok if all_valid[s] else torch.where(valid[:, :, s], tok, special)
    seq = inp[:B, :, 1:]
    return pat.revert(seq)
