"""FoleyGen's audio language model: codec tokens generated from visual features.

Input: the delayed token sequence (codebook_pattern.py) ``[B, K, S]``; the K codebook
embeddings are summed per step (MusicGen), a sinusoidal position of the step is added,
a pre-norm causal transformer runs, and one linear head per codebook gives ``[B, K, S,
card]`` logits (the special token is never an output). Visual features ``[B, F, Dv]``
(one per visual frame, at ``visual_fps``) are projected to the model width and placed on
the audio time axis (frame j at ``j * frame_rate / visual_fps`` steps). Two ways in:

- ``c`` (FoleyGen-C): cross-attention from every audio step to the visual frames;
- ``p`` (FoleyGen-P): the visual frames prepended to the audio steps, one self-attention.

Visual attention mechanisms (:func:`visual_mask`), keyed by the audio time of each step
(step s covers ``[s, s + 1) / frame_rate`` seconds, frame j ``[j, j + 1) / visual_fps``):
``full`` (every frame of the clip), ``causal`` (frames that start before the step ends),
``frame`` (frame-specific: the frames overlapping the step). A step past the clip's last
frame sees that last frame, so every query row has a key (no NaN). In ``p`` the visual
tokens attend among themselves under the same rule keyed by their own time (full: all,
causal: earlier or same, frame: only themselves), so a frame an audio step may not see
cannot reach it through another frame either. ``n_frames`` per clip masks padding frames.

A :class:`Cache` holds per-layer keys and values (and the visual memory) so generation
feeds one column per step; its outputs equal full recomputation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

MECHANISMS = ("full", "causal", "frame")
# FoleyGen-C's cached step folds the cross-attention into the visual memory up to this
# width (the tiny sizes, where a step's cost is its kernel count); the folded maps are
# n_heads times the size of the keys and take more arithmetic, so wider models keep SDPA
FOLD_CROSS_MAX_D = 256


@dataclass(frozen=True)
class LMConfig:
    """Sizes of the LM. variant: "c" or "p"; vis_dim: visual feature width Dv."""

    variant: str
    n_q: int
    card: int
    vis_dim: int
    frame_rate: float
    visual_fps: float
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_mult: int = 4


def visual_mask(steps: torch.Tensor, n_frames: torch.Tensor, n_max: int, frame_rate: float, visual_fps: float,
                mechanism: str) -> torch.Tensor:
    """bool ``[B, S, F]``: may audio step ``steps[i]`` (delayed-sequence column) attend
    visual frame j of clip b (``n_frames[b]`` real frames, F = n_max)?"""
    if mechanism not in MECHANISMS:
        raise ValueError(f"attention mechanism {mechanism!r} is not one of {MECHANISMS}")
    s = steps.double()[None, :, None]
    j = torch.arange(n_max, device=steps.device, dtype=torch.float64)[None, None]
    present = j < n_frames.to(steps.device)[:, None, None]
    starts_before_end = j / visual_fps < (s + 1) / frame_rate - 1e-9
    ends_after_start = (j + 1) / visual_fps > s / frame_rate + 1e-9
    m = present.expand(-1, steps.shape[0], -1)
    if mechanism == "causal":
        m = m & starts_before_end
    elif mechanism == "frame":
        m = m & starts_before_end & ends_after_start
    # steps past the clip's frames (the delay tail, a longer audio request): its last frame
    last = (n_frames.to(steps.device) - 1).clamp_min(0)[:, None, None]
    return m | (~m.any(-1, keepdim=True) & (j == last))


def frame_self_mask(n_frames: torch.Tensor, n_max: int, mechanism: str) -> torch.Tensor:
    """bool ``[B, F, F]``: may visual token i attend visual token j (FoleyGen-P prefix)?"""
    i = torch.arange(n_max, device=n_frames.device)[:, None]
    j = torch.arange(n_max, device=n_frames.device)[None]
    present = (j < n_frames[:, None, None])
    rule = {"full": torch.ones_like(i == j), "causal": j <= i, "frame": i == j}[mechanism]
    return (present & rule) | (i == j)  # padding rows see themselves only: never NaN


def sinusoid(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Positions (float, any shape) -> ``[..., dim]`` sin/cos features (max period 10000)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=pos.device, dtype=torch.float32) / half)
    ang = pos.float()[..., None] * freq
    return torch.cat([ang.cos(), ang.sin()], -1)


class Attention(nn.Module):
    """Multi-head attention; ``mask`` bool [B, Sq, Sk] (True = may attend)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.h = heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, d] -> [B, h, L, d/h]."""
        return x.view(x.shape[0], x.shape[1], self.h, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, Sq, d]; k, v already split [B, h, Sk, d/h] -> [B, Sq, d]."""
        y = F.scaled_dot_product_attention(self.split(self.q(x)), k, v, attn_mask=mask[:, None])
        return self.o(y.transpose(1, 2).reshape(x.shape))


class Block(nn.Module):
    """Pre-norm block: self-attention (cached keys/values), optional cross-attention, MLP."""

    def __init__(self, d: int, heads: int, ff_mult: int, cross: bool):
        super().__init__()
        self.n1, self.att = nn.LayerNorm(d), Attention(d, heads)
        self.cross = Attention(d, heads) if cross else None
        self.n2 = nn.LayerNorm(d) if cross else None
        self.n3 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff_mult * d), nn.GELU(), nn.Linear(ff_mult * d, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, kv: list[torch.Tensor] | None,
                mem_kv: tuple[torch.Tensor, torch.Tensor] | None, cross_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.n1(x)
        k, v = self.att.split(self.att.k(h)), self.att.split(self.att.v(h))
        if kv is not None:  # cache: keys/values of earlier positions, then ours appended
            if kv:
                k, v = torch.cat([kv[0], k], 2), torch.cat([kv[1], v], 2)
            kv[:] = [k, v]
        x = x + self.att(h, k, v, mask)
        if self.cross is not None and mem_kv is not None and cross_mask is not None:
            x = x + self.cross(self.n2(x), mem_kv[0], mem_kv[1], cross_mask)
        return x + self.ff(self.n3(x))


@dataclass
class Cache:
    """Generation state: per-layer self-attention [k, v], the visual memory's per-layer
    cross keys/values (C), and how many audio columns have been fed (``pos``).

    :meth:`FoleyGenLM.forward` grows ``kv`` by concatenation (any number of columns per
    call); :meth:`FoleyGenLM.step` (one column per call, what generation uses) keeps
    instead preallocated buffers ``k_buf`` / ``v_buf`` ``[B, h, L_max, d/h]`` per layer
    (views of one ``kv_buf`` so a step writes its key and value in one copy), the masks of
    every step built once (``step_masks``), the positions' sinusoids, the fused projection
    weights and, for C, the cross-attention folded into the visual memory (``cross``), so a
    step allocates nothing that grows with the sequence."""

    kv: list[list[torch.Tensor]] = field(default_factory=list)
    mem_kv: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    pos: int = 0
    k_buf: list[torch.Tensor] = field(default_factory=list)
    v_buf: list[torch.Tensor] = field(default_factory=list)
    kv_buf: list[torch.Tensor] = field(default_factory=list)  # [B, 2, h, L_max, d/h]: k_buf, v_buf are its views
    n_prefix: int = 0                       # visual tokens before the audio in k_buf (P)
    step_masks: torch.Tensor | None = None  # [B, S_max, keys]: self-attention (P) or cross (C) rows, as
    #                                         additive float (0 / -inf: what SDPA makes of a bool mask)
    pos_emb: torch.Tensor | None = None     # [S_max, d]
    fused: list[tuple[torch.Tensor, ...]] = field(default_factory=list)
    heads: tuple[torch.Tensor, torch.Tensor] | None = None
    emb: tuple[torch.Tensor, torch.Tensor] | None = None
    cross: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)  # C, folded:
    #   per layer (score table [B, S_max, h*F], query-key map [B, d, h*F], value-output map [B, h*F, d])
    args: tuple = ()  # all of the above as foleygen_kernels.step_kernel's arguments after (col, pos)


class FoleyGenLM(nn.Module):
    """The LM of :class:`LMConfig` (torch default init from the global seed)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        if cfg.variant not in ("c", "p"):
            raise ValueError(f"variant {cfg.variant!r}: want 'c' (cross-attention) or 'p' (prepend)")
        self.cfg = cfg
        d = cfg.d_model
        self.emb = nn.ModuleList(nn.Embedding(cfg.card + 1, d) for _ in range(cfg.n_q))  # + special
        self.vis_proj = nn.Linear(cfg.vis_dim, d)
        self.vis_type = nn.Parameter(torch.zeros(d))  # marks visual tokens in the P sequence
        self.blocks = nn.ModuleList(Block(d, cfg.n_heads, cfg.ff_mult, cfg.variant == "c") for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, cfg.card) for _ in range(cfg.n_q))

    def visual_tokens(self, vis: torch.Tensor) -> torch.Tensor:
        """[B, F, Dv] -> [B, F, d] on the audio time axis (frame j at j * fr / vfps steps)."""
        cfg = self.cfg
        t = torch.arange(vis.shape[1], device=vis.device) * (cfg.frame_rate / cfg.visual_fps)
        return self.vis_proj(vis) + sinusoid(t, cfg.d_model) + self.vis_type

    def forward(self, inp: torch.Tensor, vis: torch.Tensor, n_frames: torch.Tensor, mechanism: str = "full",
                cache: Cache | None = None) -> torch.Tensor:
        """Logits ``[B, K, S, card]`` for input columns ``[B, K, S]`` (positions cache.pos
        on when a cache is given; the first call with a cache also takes the visual part)."""
        cfg, (B, K, S) = self.cfg, inp.shape
        start = cache.pos if cache is not None else 0
        steps = torch.arange(start, start + S, device=inp.device)
        x = sum(self.emb[q](inp[:, q]) for q in range(K)) + sinusoid(steps, cfg.d_model)
        vmask = visual_mask(steps, n_frames, vis.shape[1], cfg.frame_rate, cfg.visual_fps, mechanism)
        causal = steps[:, None] >= torch.arange(start + S, device=inp.device)[None]  # [S, start + S]
        first = cache is None or not cache.kv
        mem_kv: list[tuple[torch.Tensor, torch.Tensor]] | list[None] = [None] * len(self.blocks)
        cross_mask = None
        if cfg.variant == "p":
            Fv = vis.shape[1]
            audio_rows = torch.cat([vmask, causal[None].expand(B, -1, -1)], -1)  # [B, S, F + start + S]
            if first:
                vrows = torch.cat([frame_self_mask(n_frames, Fv, mechanism),
                                   torch.zeros(B, Fv, S, dtype=torch.bool, device=inp.device)], -1)
                x = torch.cat([self.visual_tokens(vis), x], 1)
                mask = torch.cat([vrows, audio_rows], 1)
            else:
                mask = audio_rows
        else:
            mask = causal[None].expand(B, -1, -1)
            cross_mask = vmask
            if cache is not None and cache.mem_kv:
                mem_kv = cache.mem_kv
            else:
                mem = self.visual_tokens(vis)
                mem_kv = [(b.cross.split(b.cross.k(mem)), b.cross.split(b.cross.v(mem))) for b in self.blocks]
                if cache is not None:
                    cache.mem_kv = mem_kv
        if cache is not None and not cache.kv:
            cache.kv = [[] for _ in self.blocks]
        for i, blk in enumerate(self.blocks):
            x = blk(x, mask, cache.kv[i] if cache is not None else None, mem_kv[i], cross_mask)
        if cache is not None:
            cache.pos += S
        h = self.norm(x[:, -S:])
        return torch.stack([head(h) for head in self.heads], 1)

    # ---------------------------------------------------------------- one-column generation
    @torch.inference_mode()
    def start(self, vis: torch.Tensor, n_frames: torch.Tensor, mechanism: str, max_steps: int) -> Cache:
        """A :class:`Cache` ready for :meth:`step` over at most ``max_steps`` columns: the
        visual part done (C: cross keys/values; P: the visual prefix through every layer),
        the masks of every step, the positions and the fused weights built once."""
        cfg, B, Fv = self.cfg, vis.shape[0], vis.shape[1]
        dev, d, h = vis.device, cfg.d_model, cfg.n_heads
        c = Cache()
        steps = torch.arange(max_steps, device=dev)
        vmask = visual_mask(steps, n_frames, Fv, cfg.frame_rate, cfg.visual_fps, mechanism)  # [B, S, F]
        c.pos_emb = sinusoid(steps, d)
        vt = self.visual_tokens(vis)
        if cfg.variant == "p":
            c.n_prefix = Fv
            # audio row s sees its frames and the audio columns 0..s (later ones are not yet
            # in the buffer: step() slices the keys up to the current one)
            c.step_masks = torch.cat([vmask, torch.ones(B, max_steps, max_steps, dtype=torch.bool, device=dev)], -1)
            fmask, x = frame_self_mask(n_frames, Fv, mechanism), vt
            for blk in self.blocks:
                kv: list[torch.Tensor] = []
                x = blk(x, fmask, kv, None, None)
                c.kv.append(kv)
        else:
            c.step_masks = vmask
            c.mem_kv = [(b.cross.split(b.cross.k(vt)), b.cross.split(b.cross.v(vt))) for b in self.blocks]
        # the bool masks as SDPA's additive form, once (a bool mask is converted on every call)
        c.step_masks = torch.zeros(c.step_masks.shape, dtype=vis.dtype, device=dev).masked_fill_(~c.step_masks, float("-inf"))
        L = c.n_prefix + max_steps
        for i, blk in enumerate(self.blocks):
            kvb = vis.new_zeros(B, 2, h, L, d // h)  # keys and values of a layer: one write per step
            c.kv_buf.append(kvb)
            kb, vb = kvb[:, 0], kvb[:, 1]
            if c.kv:
                kb[:, :, :Fv], vb[:, :, :Fv] = c.kv[i]
            c.k_buf.append(kb)
            c.v_buf.append(vb)
            a, cr = blk.att, blk.cross
            c.fused.append((blk.n1.weight, blk.n1.bias, torch.cat([a.q.weight, a.k.weight, a.v.weight]).t(),
                            torch.cat([a.q.bias, a.k.bias, a.v.bias]), a.o.weight.t(), a.o.bias,
                            blk.n3.weight, blk.n3.bias, blk.ff[0].weight.t(), blk.ff[0].bias, blk.ff[2].weight.t(),
                            blk.ff[2].bias,
                            *((blk.n2.weight, blk.n2.bias, cr.q.weight.t(), cr.q.bias, cr.o.weight.t(), cr.o.bias)
                              if cr is not None and blk.n2 is not None else ())))
        if cfg.variant == "c" and d <= FOLD_CROSS_MAX_D:
            c.cross = [self._fold_cross(blk.cross, kv, c.step_masks) for blk, kv in zip(self.blocks, c.mem_kv)]
        c.kv = []
        c.heads = (torch.cat([hd.weight for hd in self.heads]).t(), torch.cat([hd.bias for hd in self.heads]))
        c.emb = (torch.cat([e.weight for e in self.emb]),
                 torch.arange(cfg.n_q, device=dev)[None] * (cfg.card + 1))
        folded = bool(c.cross)
        c.args = (c.n_prefix, c.emb[0], c.emb[1], c.pos_emb, [list(w) for w in c.fused], list(c.kv_buf),
                  [] if folded else [k for k, _ in c.mem_kv], [] if folded else [v for _, v in c.mem_kv],
                  [list(t) for t in c.cross], c.step_masks, cfg.variant == "p", d, h, float(self.norm.eps),
                  self.norm.weight, self.norm.bias, c.heads[0], c.heads[1], cfg.n_q, cfg.card)
        return c

    def _fold_cross(self, att: Attention, mem_kv: tuple[torch.Tensor, torch.Tensor], masks: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """FoleyGen-C's cross-attention for :meth:`step_logits`, with the projections folded into
        the visual memory (fixed for the whole generation). Head h's score of frame j is
        ``(W_q,h x + b_q,h) . k_hj / sqrt(d/h)``, linear in x: one ``[d, h*F]`` map per clip, its
        bias and the step's mask in a ``[S_max, h*F]`` table. The output ``W_o concat_h(sum_j
        a_hj v_hj) + b_o`` is one ``[h*F, d]`` map applied to the flat weights, ``b_o / h`` on
        every row (each head's weights sum to 1, so the h heads give back b_o once), and the
        residual is its matmul's input. Four kernels per layer instead of seven; the values
        differ from SDPA's by float32 rounding (tests compare the steps with the forward)."""
        k, v = mem_kv  # [B, h, F, d/h]
        B, h, Fv, dh = k.shape
        d = h * dh
        scale = 1.0 / math.sqrt(dh)
        wq = att.q.weight.view(h, dh, d)
        qk = torch.einsum("hed,bhje->bdhj", wq, k).reshape(B, d, h * Fv) * scale
        bias = torch.einsum("he,bhje->bhj", att.q.bias.view(h, dh), k) * scale  # [B, h, F]
        table = (bias[:, None] + masks[:, :, None]).reshape(B, masks.shape[1], h * Fv)
        vo = torch.einsum("bhje,dhe->bhjd", v, att.o.weight.view(d, h, dh)).reshape(B, h * Fv, d) + att.o.bias / h
        return table.contiguous(), qk.contiguous(), vo.contiguous()

    @torch.inference_mode()
    def step(self, col: torch.Tensor, cache: Cache) -> torch.Tensor:
        """Logits ``[B, K, 1, card]`` of the next column given input column ``[B, K, 1]``
        (position ``cache.pos``); the same values as :meth:`forward` on the whole prefix."""
        return self.step_logits(col[:, :, 0], cache)[:, :, None]

    @torch.inference_mode()
    def step_logits(self, col: torch.Tensor, cache: Cache) -> torch.Tensor:
        """:meth:`step` on a column ``[B, K]`` of tokens, giving ``[B, K, card]``.

        Written for a one-column step's cost, which is the number of tensor operations
        (each on a few hundred numbers), not arithmetic: the body is
        ``foleygen_kernels.step_kernel`` (TorchScript-compiled when available, the same
        kernels either way), on the lists :meth:`start` prepared (``cache.args``).
        """
        from foleybench.baselines.foleygen_kernels import kernels

        c = cache
        assert c.args, "FoleyGenLM.step_logits needs a Cache from FoleyGenLM.start"
        out = kernels().step(col, c.pos, *c.args)
        c.pos += 1
        return out
