"""Frame sampling and spatial preprocessing for the video embedders (pure functions).

Every function takes and returns torch tensors laid out ``[T, C, H, W]`` (frames first,
channels second) unless its docstring says otherwise; index functions return int64
numpy arrays. Each resize names its method in ``RESIZE_METHODS`` so that the embedders
can record it in ``preprocess_id`` (a changed method must change cached embeddings).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# OpenAI CLIP statistics, also ImageBind's vision normalisation.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

RESIZE_METHODS = {
    # TF FVD resizes with tf.image.resize_bilinear; StyleGAN-V's port interpolates bilinearly
    # without antialiasing; align_corners=False is torch's half-pixel convention.
    "bilinear": "torch.interpolate(bilinear,align_corners=False,antialias=False,float)",
    # chainer.functions.resize_images (TGANv2's C3D) maps corners onto corners.
    "bilinear_ac": "torch.interpolate(bilinear,align_corners=True,antialias=False,float)",
    # torchvision v2.Resize on uint8 tensors (av-benchmark ImageBind, open_clip-like): the
    # result is rounded back to uint8, as there.
    "bicubic_aa_uint8": "torchvision.v2.functional.resize(bicubic,antialias=True,uint8)",
}


def sample_consecutive(n_total: int, n: int, fps: float, start_s: float = 0.0) -> np.ndarray:
    """``n`` consecutive frame indices from ``round(start_s * fps)``.

    StyleGAN-V's FVD/IS protocol (16 frames from the clip start, short videos discarded):
    raises ValueError when fewer than ``n`` frames remain.
    """
    first = max(0, round(start_s * fps))
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if first + n > n_total:
        raise ValueError(f"need {n} frames from frame {first}, the video has {n_total}")
    return np.arange(first, first + n, dtype=np.int64)


def sample_uniform(n_total: int, n: int) -> np.ndarray:
    """``n`` indices spread evenly over ``[0, n_total - 1]`` (rounded half to even by numpy).

    With ``n >= n_total`` every frame is returned once (no duplicates).
    """
    if n_total <= 0 or n <= 0:
        raise ValueError(f"need n_total > 0 and n > 0, got {n_total}, {n}")
    if n >= n_total:
        return np.arange(n_total, dtype=np.int64)
    return np.round(np.linspace(0, n_total - 1, n)).astype(np.int64)


def sample_at_rate(n_total: int, fps: float, rate_hz: float, duration_s: float | None = None) -> np.ndarray:
    """Frames an FFmpeg ``fps=rate_hz`` filter (round=near) keeps from a ``fps`` video.

    Output slot k covers timestamps that round to k / rate_hz; the filter keeps the *last*
    input frame of each slot, i.e. the last frame with t < (k + 0.5) / rate_hz. av-benchmark
    reads ImageBind frames this way (torio, frame_rate=0.5) and keeps ``int(rate_hz *
    duration_s)`` of them. duration_s defaults to the video's length ``n_total / fps``.
    """
    if n_total <= 0 or fps <= 0 or rate_hz <= 0:
        raise ValueError(f"need n_total, fps, rate_hz > 0, got {n_total}, {fps}, {rate_hz}")
    duration_s = n_total / fps if duration_s is None else duration_s
    n_out = int(rate_hz * duration_s + 1e-9)
    idx = [min(math.ceil((k + 0.5) * fps / rate_hz - 1e-9) - 1, n_total - 1) for k in range(n_out)]
    return np.asarray(idx, dtype=np.int64)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` (numpy, RGB) -> uint8 tensor ``[T, 3, H, W]``."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()


def short_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """(H', W') with the short side ``size`` and the long side ``int(size * long / short)``
    (torchvision's rounding, truncation)."""
    if h <= w:
        return size, int(size * w / h)
    return int(size * h / w), size


def resize(x: torch.Tensor, size: tuple[int, int], method: str = "bilinear") -> torch.Tensor:
    """Resize ``[T, C, H, W]`` to ``size = (H', W')`` with a named method (RESIZE_METHODS).

    Float methods return float32; "bicubic_aa_uint8" takes and returns uint8.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; one of {sorted(RESIZE_METHODS)}")
    if tuple(x.shape[-2:]) == tuple(size):
        return x if method == "bicubic_aa_uint8" else x.float()
    if method == "bicubic_aa_uint8":
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        if x.dtype != torch.uint8:
            raise ValueError("bicubic_aa_uint8 expects uint8 frames")
        return TF.resize(x, list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=(method == "bilinear_ac"),
                         antialias=False)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size x size`` crop of ``[..., H, W]``; offset round((H - size) / 2)
    (torchvision's convention). Raises ValueError when the frame is smaller."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def three_crops(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """ImageBind/av-benchmark ``SpatialCrop(size, 3)``: start, centre and end crops along
    the long side of ``[..., H, W]`` (left/centre/right when W >= H, else top/centre/bottom);
    the centre offset is ceil((L - size) / 2) as in their ``uniform_crop``."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w}")
    y0, x0 = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    out = []
    for i in range(3):
        y, xx = y0, x0
        if h > w:
            y = (0, y0, h - size)[i]
        else:
            xx = (0, x0, w - size)[i]
        out.append(x[..., y:y + size, xx:xx + size])
    return out


def scale_to_unit(x: torch.Tensor) -> torch.Tensor:
    """0..255 values -> [-1, 1] float32: ``2 x / 255 - 1`` (TF FVD, StyleGAN-V rescale)."""
    return x.float() * (2.0 / 255.0) - 1.0


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel of ``[T, C, H, W]`` 0..255 values (the
    ToDtype(scale=True) + Normalize pair of torchvision); float32."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s
