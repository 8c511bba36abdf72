"""FoleyGen's per-step generation code, written once in the part of Python TorchScript compiles.

At the tiny size a cached generation step is about sixty tensor operations on a few
hundred numbers each, and a third of its time was the interpreter between them. These
functions run under TorchScript (``torch.jit.script``) when it is available: the same
ATen kernels, called in the same order with the same arguments, so logits and tokens
are bit for bit those of running the same functions eagerly (tests check scripted
against eager, and both against the full forward), without the per-operation Python
cost. ``run_steps`` goes further: a whole chunk of steps (the model step, guidance, the
sampler and the token write) is one call.

Why not ``torch.compile``: it fuses kernels, which changes float32 rounding (so sampled
tokens, and the benchmark goldens), and it needs a C++ toolchain and seconds of
compilation at run time. TorchScript is deprecated upstream (present in the pinned torch
2.11); where scripting fails (a torch without it, sources not shipped) or
``FOLEYBENCH_NO_TORCHSCRIPT=1`` is set, :func:`kernels` hands back these same functions
to run eagerly: the same tokens, only slower. ``kernels().scripted`` says which ran, and
FoleyGen's model record carries it.

The functions are kept free of ``from __future__ import annotations`` and of anything
TorchScript does not know (dataclasses, closures); the model's state arrives as lists of
tensors (``foleygen_lm.Cache`` builds them once per generation).
"""
import os
import warnings
from typing import List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 0.0) -> Tensor:
    """``[..., V]`` logits with everything outside the top k (k > 0) and outside the smallest
    set of probability >= top_p (0 < p < 1; the most likely token always kept) at -inf."""
    out = logits
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(out, top_k, dim=-1)[0].narrow(-1, top_k - 1, 1)
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p > 0.0 and top_p < 1.0:
        sorted_l, idx = torch.sort(out, dim=-1, descending=True)
        probs = sorted_l.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # mass before this token already >= p
        out = out.masked_fill(drop.scatter(-1, idx, drop), float("-inf"))
    return out


def cfg_mix(cond: Tensor, uncond: Tensor, coef: float) -> Tensor:
    """Classifier-free guidance: ``uncond + coef * (cond - uncond)`` (coef 1: cond, 0: uncond)."""
    if coef == 1.0:  # exactly the conditional logits (no rounding from the subtraction)
        return cond
    if coef == 0.0:
        return uncond
    return uncond + coef * (cond - uncond)


def sample_core(logits: Tensor, gumbel: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """``[B, K, V]`` logits and their float64 Gumbel noise -> int64 ``[B, K]`` tokens; the
    sampler's definition and its fast path are documented at ``foleygen_sample.sample_tokens``."""
    V = logits.size(-1)
    if temperature <= 0.0:
        return logits.argmax(-1)
    if (top_p <= 0.0 or top_p >= 1.0) and logits.dtype == torch.float32:
        z = logits.double()
        if temperature != 1.0:
            z = z / temperature
        z = z.add_(gumbel)
        if top_k > 0 and top_k < V:  # the k-th largest, from the shorter end of the order
            if 2 * top_k <= V:
                kth = torch.topk(logits, top_k, dim=-1)[0].narrow(-1, top_k - 1, 1)
            else:
                kth = torch.topk(logits, V - top_k + 1, dim=-1, largest=False)[0].narrow(-1, V - top_k, 1)
            z.masked_fill_(logits < kth, float("-inf"))
        return z.argmax(-1)
    z = filter_logits(logits.double() / temperature, top_k, top_p)
    return (z + gumbel).argmax(-1)


def step_kernel(col: Tensor, pos: int, n_prefix: int, emb_w: Tensor, emb_off: Tensor, pos_emb: Tensor,
                fused: List[List[Tensor]], kv_buf: List[Tensor], mem_k: List[Tensor], mem_v: List[Tensor],
                cross: List[List[Tensor]], step_masks: Tensor, is_p: bool, d: int, h: int, eps: float,
                norm_w: Tensor, norm_b: Tensor, head_w: Tensor, head_b: Tensor, n_q: int, card: int) -> Tensor:
    """Logits ``[B, K, card]`` of the column after input column ``col`` ``[B, K]`` at step
    ``pos``; documented as ``FoleyGenLM.step_logits`` (the arguments are its Cache's lists).

    The residual stream stays ``[B, d]`` so every projection is one ``addmm`` on the
    pre-transposed fused weights; the new key and value are written into the layer's one
    buffer straight from the fused projection; attention reads the buffers through one
    ``narrow`` each; FoleyGen-C's cross-attention is the folded form when ``cross`` is
    given (``FoleyGenLM._fold_cross``), SDPA on the visual memory otherwise."""
    B = col.size(0)
    x = F.embedding(col + emb_off, emb_w).sum(1) + pos_emb[pos]  # [B, d]
    n_keys = n_prefix + pos + 1
    mask = step_masks.narrow(1, pos, 1)  # [B, 1, F (+ S_max)]
    self_mask: Optional[Tensor] = None  # C: every earlier column
    if is_p:
        self_mask = mask.narrow(2, 0, n_keys).unsqueeze(1)
    dh = d // h
    for i in range(len(fused)):
        w = fused[i]
        hn = F.layer_norm(x, [d], w[0], w[1], eps)
        qkv = torch.addmm(w[3], hn, w[2]).view(B, 3, h, 1, dh)
        kvb = kv_buf[i]
        kvb.narrow(3, n_keys - 1, 1).copy_(qkv.narrow(1, 1, 2))
        y = F.scaled_dot_product_attention(qkv.select(1, 0), kvb.select(1, 0).narrow(2, 0, n_keys),
                                           kvb.select(1, 1).narrow(2, 0, n_keys), attn_mask=self_mask)
        x = x + torch.addmm(w[5], y.view(B, d), w[4])
        if len(w) > 12:  # C: cross-attention to the visual memory
            hn = F.layer_norm(x, [d], w[12], w[13], eps)
            if len(cross) > 0:  # folded (FOLD_CROSS_MAX_D)
                cr = cross[i]
                a = torch.baddbmm(cr[0].narrow(1, pos, 1), hn.unsqueeze(1), cr[1]).view(B, h, -1).softmax(-1)
                x = torch.baddbmm(x.unsqueeze(1), a.view(B, 1, -1), cr[2]).view(B, d)
            else:  # a larger width: the plain projections (a folded map is h times K's size)
                q = torch.addmm(w[15], hn, w[14]).view(B, h, 1, dh)
                y = F.scaled_dot_product_attention(q, mem_k[i], mem_v[i], attn_mask=mask.unsqueeze(1))
                x = x + torch.addmm(w[17], y.view(B, d), w[16])
        hn = F.layer_norm(x, [d], w[6], w[7], eps)
        x = x + torch.addmm(w[11], F.gelu(torch.addmm(w[9], hn, w[8])), w[10])
    hn = F.layer_norm(x, [d], norm_w, norm_b, eps)
    return torch.addmm(head_b, hn, head_w).view(B, n_q, card)


def run_steps(s0: int, n: int, inp: Tensor, both: Tensor, valid: Tensor, all_valid: List[bool], gumbel: Tensor,
              special: Tensor, n_clips: int, guided: bool, coef: float, temperature: float, top_k: int, top_p: float,
              n_prefix: int, emb_w: Tensor, emb_off: Tensor, pos_emb: Tensor, fused: List[List[Tensor]],
              kv_buf: List[Tensor], mem_k: List[Tensor], mem_v: List[Tensor], cross: List[List[Tensor]],
              step_masks: Tensor, is_p: bool, d: int, h: int, eps: float, norm_w: Tensor, norm_b: Tensor,
              head_w: Tensor, head_b: Tensor, n_q: int, card: int) -> None:
    """Steps ``s0 .. s0 + n - 1`` of ``foleygen_sample._generate``'s cached loop: each reads
    its input column ``inp[:, :, s]``, runs :func:`step_kernel`, mixes the guided rows,
    samples with step ``j``'s noise ``gumbel[:, j]`` and writes the tokens (special in the
    pattern's invalid cells) into column ``s + 1`` of both copies in ``both``."""
    for j in range(n):
        s = s0 + j
        logits = step_kernel(inp.select(2, s), s, n_prefix, emb_w, emb_off, pos_emb, fused, kv_buf, mem_k, mem_v,
                             cross, step_masks, is_p, d, h, eps, norm_w, norm_b, head_w, head_b, n_q, card)
        if guided:
            logits = cfg_mix(logits.narrow(0, 0, n_clips), logits.narrow(0, n_clips, n_clips), coef)
        tok = sample_core(logits.float(), gumbel.select(1, j), temperature, top_k, top_p)
        if all_valid[s]:
            both.select(3, s + 1).copy_(tok)
        else:
            both.select(3, s + 1).copy_(torch.where(valid.select(2, s), tok, special))


class Kernels(NamedTuple):
    """The functions above, compiled by TorchScript (``scripted``) or as written."""

    step: object
    sample: object
    run_steps: object
    scripted: bool
    why: str


_KERNELS: List[Kernels] = []


def _as_written(fn):  # type: ignore[no-untyped-def]
    """``fn`` run without the graph executor's optimisation passes. Those rewrite the
    graph after two profiling runs (``addmm`` becomes ``mm`` + ``add``, for a fuser this
    stack does not use on CPU), and that rounds differently from ``addmm`` on some values:
    one token of 27 clips flipped in foleygen-table1. Unoptimised, the compiled graph
    calls exactly the ATen operations the source names."""

    def call(*args):  # type: ignore[no-untyped-def]
        with torch.jit.optimized_execution(False):
            return fn(*args)

    return call


def kernels() -> Kernels:
    """The generation functions, compiled by TorchScript once per process (about a second),
    or the eager ones when TorchScript is unavailable or ``FOLEYBENCH_NO_TORCHSCRIPT`` is
    set (same tokens, slower; warned once)."""
    if _KERNELS:
        return _KERNELS[0]
    eager = Kernels(step_kernel, sample_core, run_steps, False, "")
    if os.environ.get("FOLEYBENCH_NO_TORCHSCRIPT", "").strip() not in ("", "0"):
        _KERNELS.append(eager._replace(why="FOLEYBENCH_NO_TORCHSCRIPT is set"))
        return _KERNELS[0]
    try:
        with warnings.catch_warnings():
            # torch 2.11: "torch.jit.script is deprecated"; the reason for still using it
            # is in this module's docstring, and the eager fallback is below
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            k = Kernels(_as_written(torch.jit.script(step_kernel)), _as_written(torch.jit.script(sample_core)),
                        _as_written(torch.jit.script(run_steps)), True, "")
    except Exception as exc:  # noqa: BLE001 - any failure to compile means: run as written
        why = f"TorchScript unavailable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        warnings.warn(f"FoleyGen generation runs eagerly (same tokens, slower): {why}", RuntimeWarning, stacklevel=2)
        k = eager._replace(why=why)
    _KERNELS.append(k)
    return k
