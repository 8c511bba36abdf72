"""Winograd minimal filtering for 3x3, stride-1, padding-1 convolutions (inference only).

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016):
``F(m x m, 3 x 3)`` computes an ``m x m`` output tile from an ``(m + 2) x (m + 2)``
input tile with ``(m + 2)^2`` multiplications per (input, output) channel pair
instead of ``9 m^2``: 2.25x fewer for ``m = 2``, 4x fewer for ``m = 4``. Over channels
the elementwise products become ``(m + 2)^2`` independent matrix products
``V[p] @ U[p]`` (tiles x C_in times C_in x C_out), done by one ``torch.bmm``.

Activations are channels-last ``[B, H, W, C]`` throughout (the transforms then read
and write whole channel rows). Per layer:

- kernels: ``U = G g G^T``, computed once in float64 from the (batch-norm folded)
  weights and stored float32 as ``[(m+2)^2, C_in, C_out]`` (:func:`transform_kernel`);
- input: zero padding of 1 (the convolution's) plus up to ``m - 1`` more at the far
  ends so the tiles cover the map, then ``V = B^T d B`` as strided slices combined
  with the transform's few nonzero coefficients (rows first, then columns);
- output: ``Y = A^T M A``, plus bias, ReLU, and optionally the 2x2 average pool of
  the layer after it (pool windows never straddle tiles when ``m`` is even), then
  the tiles are laid back into ``[B, H, W, C]`` and cropped.

Float32 rounding differs from the direct convolution's summation order; the
transforms' constants (powers of 2 and 1/6, 1/12, 1/24 for ``m = 4``) add a little
more error. :func:`conv3x3` is checked against ``F.conv2d`` in tests/test_winograd.py.
"""
from __future__ import annotations

from fractions import Fraction as Fr

import torch

# (B^T, G, A^T) for F(m x m, 3 x 3), interpolation points 0, +-1 (m = 2) and
# 0, +-1, +-2 (m = 4), plus the point at infinity; exact rationals.
_MATS: dict[int, tuple[list[list[Fr]], list[list[Fr]], list[list[Fr]]]] = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [Fr(1, 2), Fr(1, 2), Fr(1, 2)], [Fr(1, 2), Fr(-1, 2), Fr(1, 2)], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [[4, 0, -5, 0, 1, 0],
         [0, -4, -4, 1, 1, 0],
         [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0],
         [0, 2, -1, -2, 1, 0],
         [0, 4, 0, -5, 0, 1]],
        [[Fr(1, 4), 0, 0],
         [Fr(-1, 6), Fr(-1, 6), Fr(-1, 6)],
         [Fr(-1, 6), Fr(1, 6), Fr(-1, 6)],
         [Fr(1, 24), Fr(1, 12), Fr(1, 6)],
         [Fr(1, 24), Fr(-1, 12), Fr(1, 6)],
         [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0],
         [0, 1, -1, 2, -2, 0],
         [0, 1, 1, 4, 4, 0],
         [0, 1, -1, 8, -8, 1]],
    ),
}


def _mats(m: int) -> tuple[list[list[Fr]], list[list[Fr]], list[list[Fr]]]:
    if m not in _MATS:
        raise ValueError(f"Winograd tile size m={m} is not supported (use one of {sorted(_MATS)})")
    return _MATS[m]


def transform_kernel(weight: torch.Tensor, m: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[C_out, C_in, 3, 3]`` correlation kernel -> ``U [(m+2)^2, C_in, C_out]`` in ``dtype``
    (computed in float64)."""
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"expected a [C_out, C_in, 3, 3] kernel, got {tuple(weight.shape)}")
    g = torch.tensor([[float(v) for v in r] for r in _mats(m)[1]], dtype=torch.float64,
                     device=weight.device)
    u = torch.einsum("ia,okab,jb->ijko", g, weight.to(torch.float64), g)      # [a, a, C_in, C_out]
    a = m + 2
    return u.reshape(a * a, weight.shape[1], weight.shape[0]).to(dtype).contiguous()


def _lincomb(coeffs: list[Fr], terms: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """``out = sum_k coeffs[k] * terms[k]`` over the nonzero coefficients, written in place."""
    first = True
    for c, t in zip(coeffs, terms):
        if c == 0:
            continue
        c = float(c)
        if first:
            if c == 1:
                out.copy_(t)
            else:
                torch.mul(t, c, out=out)
            first = False
        else:
            out.add_(t, alpha=c)
    if first:
        out.zero_()
    return out


def conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, m: int,
            relu: bool = True, pool: bool = False, gemm: str = "bmm") -> torch.Tensor:
    """``relu(conv2d(x, g, bias, padding=1))`` (then ``avg_pool2d(., 2)`` when ``pool``) on a
    channels-last ``x [B, H, W, C_in]``, with ``u = transform_kernel(g, m)``; returns
    channels-last ``[B, H', W', C_out]`` (contiguous).

    ``gemm``: how the ``(m+2)^2`` channel products run: ``"bmm"`` (one ``torch.bmm``) or
    ``"conv"`` (one grouped 1x1 ``conv2d``, channels-last, oneDNN on CPU)."""
    bt, _, at = _mats(m)
    a = m + 2
    n, h, w, c = x.shape
    if u.shape[0] != a * a or u.shape[1] != c:
        raise ValueError(f"transformed kernel {tuple(u.shape)} does not fit F({m}x{m},3x3) on {c} channels")
    if pool and m % 2:
        raise ValueError("the fused 2x2 pool needs an even tile size")
    if gemm not in ("bmm", "conv"):
        raise ValueError(f"gemm must be 'bmm' or 'conv', got {gemm!r}")
    k = u.shape[2]
    th, tw = -(-h // m), -(-w // m)
    hp, wp = th * m + 2, tw * m + 2
    xp = torch.nn.functional.pad(x, (0, 0, 1, wp - w - 1, 1, hp - h - 1))    # [n, hp, wp, c]
    span_h, span_w = m * (th - 1) + 1, m * (tw - 1) + 1
    rows = [xp[:, i:i + span_h:m] for i in range(a)]                         # [n, th, wp, c]
    tmp = x.new_empty(n, th, wp, c)
    p = n * th * tw
    if gemm == "bmm":
        v = x.new_empty(a, a, n, th, tw, c)
        v_at = lambda i, j: v[i, j]  # noqa: E731
    else:
        v = x.new_empty(n, th, tw, a, a, c)
        v_at = lambda i, j: v[:, :, :, i, j]  # noqa: E731
    for i in range(a):
        _lincomb(bt[i], rows, tmp)
        cols = [tmp[:, :, j:j + span_w:m] for j in range(a)]                 # [n, th, tw, c]
        for j in range(a):
            _lincomb(bt[j], cols, v_at(i, j))
    if gemm == "bmm":
        mm = torch.bmm(v.view(a * a, p, c), u).view(a, a, p, k)
        m_at = lambda i: mm[i]  # noqa: E731
    else:
        wt = u.transpose(1, 2).reshape(a * a * k, c, 1, 1)
        out = torch.nn.functional.conv2d(v.view(n, th, tw, a * a * c).permute(0, 3, 1, 2), wt,
                                         groups=a * a)                        # channels-last
        mm = out.permute(0, 2, 3, 1).reshape(p, a, a, k)
        m_at = lambda i: mm[:, i].transpose(0, 1)  # noqa: E731
    s = x.new_empty(m, a, p, k)
    for i in range(m):
        _lincomb(at[i], [m_at(r) for r in range(a)], s[i])
    y = x.new_empty(m, m, p, k)
    for i in range(m):
        for j in range(m):
            _lincomb(at[j], [s[i, q] for q in range(a)], y[i, j])
    if bias is not None:
        y.add_(bias)
    if relu:
        y.relu_()
    if pool:
        h2 = m // 2
        y = y.view(h2, 2, h2, 2, p, k).sum(dim=(1, 3)).mul_(0.25)              # [h2, h2, p, k]
        y = y.view(h2, h2, n, th, tw, k).permute(2, 3, 0, 4, 1, 5).reshape(n, th * h2, tw * h2, k)
        return y[:, :h // 2, :w // 2].contiguous()
    y = y.view(m, m, n, th, tw, k).permute(2, 3, 0, 4, 1, 5).reshape(n, th * m, tw * m, k)
    return y[:, :h, :w].contiguous()
