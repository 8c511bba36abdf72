"""Device choice and mixed precision, in one place.

GPU paths (device choice, AMP, batching) run on CPU in the tests: ``autocast`` is a
no-op on CPU so CPU results stay bit-for-bit deterministic, and ``resolve_device``
falls back to CPU with a clear message when CUDA is asked for but absent.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from foleybench.api import FoleybenchError


def resolve_device(device: str | None) -> str:
    """"auto" -> "cuda" when available else "cpu"; validate explicit choices."""
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FoleybenchError(f"device {device!r} asked for, but CUDA is not available here "
                                  "(use --device cpu or --device auto)")
        idx = int(device.split(":")[1]) if ":" in device else 0
        if idx >= torch.cuda.device_count():
            raise FoleybenchError(f"device {device!r}: only {torch.cuda.device_count()} CUDA devices")
        return device
    if device == "mps" and torch.backends.mps.is_available():
        return device
    if device != "cpu":
        raise FoleybenchError(f"unknown device {device!r} (cpu, cuda, cuda:N or auto)")
    return device


def amp_dtype(device: str) -> torch.dtype | None:
    """The autocast dtype used on ``device``; None means full precision (CPU)."""
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


@contextlib.contextmanager
def inference(device: str, amp: bool = True) -> Iterator[None]:
    """no_grad + autocast on GPU when ``amp``; plain no_grad (float32) on CPU."""
    dtype = amp_dtype(device) if amp else None
    with torch.inference_mode():
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type="cuda", dtype=dtype):
                yield
