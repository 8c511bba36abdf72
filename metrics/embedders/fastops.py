"""CPU inference kernels shared by the fast routes of the PANNs and VGGish networks.

Both run only in eval mode, without autograd, on float32 CPU tensors; each network keeps
its direct route (the upstream graph) and tests both within 1e-5 relative.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_relu(a: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``relu(a @ w.T + b)``; on CPU one oneDNN call (its GEMM runs about twice MKL's sgemm
    rate on the project's AMD machine)."""
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)  # private: absent in some builds
    if op is not None and a.device.type == "cpu" and a.dtype == torch.float32 \
            and torch.backends.mkldnn.is_available():
        return op(a, w, b, "relu", [], "")
    return F.relu(torch.addmm(b, a, w.t()))


def im2col_conv_relu(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``relu(conv2d(x, ., padding=1))`` for ``x [B, C, H, W]`` as one matrix product of the
    3x3 windows ``[B H W, 9C]`` (columns ``(dh, dw, c)``) with ``w [K, 9C]``: for block 1's
    single-channel input this writes the channels-last output directly, where oneDNN's
    1-channel convolution is slow. Returns ``[B, K, H, W]`` (channels-last memory)."""
    n, c, h, width = x.shape
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))                      # [B, H+2, W+2, C]
    a = xp.unfold(1, 3, 1).unfold(2, 3, 1).permute(0, 1, 2, 4, 5, 3).reshape(n * h * width, 9 * c)
    return linear_relu(a, w, b).view(n, h, width, -1).permute(0, 3, 1, 2)
