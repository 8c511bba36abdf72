"""Device choice and mixed precision, in one place.

GPU paths (device choice, AMP, batching) run on CPU in the tests: ``autocast`` is a
no-op on CPU so CPU results stay bit-for-bit deterministic, and ``resolve_device``
fails with a clear message when CUDA is asked for but absent. Every embedder (and any
model that wants mixed precision) runs its forward pass under :func:`inference` /
:func:`autocast`, so there is one precision policy (see the comment above AMP_DTYPE).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ContextManager, Iterator

from foleybench.api import FoleybenchError

if TYPE_CHECKING:
    import torch


def _torch() -> Any:
    """torch, imported on first use (a fully cached re-score never needs it)."""
    import torch

    return torch


def _gpu_driver_present() -> bool:
    """False only where no CUDA (or ROCm) device can exist: Linux without the NVIDIA
    (``/dev/nvidiactl``), WSL (``/dev/dxg``) or ROCm (``/dev/kfd``) device nodes, so that
    ``torch.cuda.is_available()`` would be False. True (ask torch) everywhere else, and
    whenever torch is imported already (asking it then costs nothing)."""
    import os
    import sys

    if "torch" in sys.modules or not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd"))


def _cuda_available() -> bool:
    """Whether CUDA is usable (imports torch: only asked for a "cuda..." device)."""
    return bool(_torch().cuda.is_available())


def resolve_device(device: str | None) -> str:
    """"auto" -> "cuda" when available else "cpu"; validate explicit choices.

    Under torchrun/srun (LOCAL_RANK or SLURM_LOCALID set, world size > 1), "auto" and
    "cuda" are ``cuda:LOCAL_RANK``: each rank on its own GPU."""
    device = (device or "auto").lower()
    if device == "cpu" or (device == "auto" and not _gpu_driver_present()):
        return "cpu"  # answered without importing torch (seconds a cached re-score saves)
    torch = _torch()
    if device in ("auto", "cuda") and torch.cuda.is_available():
        from foleybench.distributed import current

        env = current()
        if env.active and not env.offline:
            device = f"cuda:{env.local_rank}"
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
        raise FoleybenchError(f"--device {device}: unknown device (cpu, cuda, cuda:N or auto)")
    return device


# ---------------------------------------------------------------------- precision policy
# One policy for every evaluator (audio, video, cross-modal) and for models:
# - CPU (and MPS): full float32, no autocast, so CPU scores are bit-reproducible.
# - CUDA: bfloat16 autocast when ``amp`` is on and the GPU has native bf16 (Ampere and
#   later); float32 otherwise. Never float16: fp16 overflows at 65504, and the audio
#   front ends reach that (a power spectrogram of a full-scale 512-point frame peaks near
#   256^2 = 65536; dB and log-mel of an inf is garbage), attention logits and 527-way
#   classifier logits can too. bf16 keeps float32's exponent range and loses mantissa
#   bits only, which shows as rounding-level noise in embeddings, not as inf/NaN.
# The precision actually used is part of every embedder's preprocess id (cache key) on
# GPU, so bf16 and fp32 embeddings never share a cache entry.
AMP_DTYPE_NAME = "bfloat16"


def __getattr__(name: str) -> Any:  # AMP_DTYPE stays importable without a torch import here
    if name == "AMP_DTYPE":
        return getattr(_torch(), AMP_DTYPE_NAME)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _native_bf16() -> bool:
    torch = _torch()
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch: no emulation flag
        return bool(torch.cuda.is_bf16_supported())


def amp_dtype(device: str) -> torch.dtype | None:
    """The autocast dtype on ``device``: bfloat16 on a CUDA device with native bf16,
    None (full float32) everywhere else, including "cuda" asked for where CUDA is absent."""
    if not str(device).startswith("cuda") or not _cuda_available():
        return None
    return getattr(_torch(), AMP_DTYPE_NAME) if _native_bf16() else None


def precision(device: str, enabled: bool = True) -> str:
    """"bf16" or "fp32": what :func:`autocast` runs ``device`` at (for provenance and cache keys)."""
    return "bf16" if enabled and amp_dtype(device) is not None else "fp32"


def autocast(device: str, enabled: bool = True) -> ContextManager[Any]:
    """The precision policy as a context manager: a null context on CPU or when
    ``enabled`` is False; ``torch.autocast("cuda", dtype=torch.bfloat16)`` on CUDA."""
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return _torch().autocast(device_type="cuda", dtype=dtype)


def full_precision(device: str) -> ContextManager[Any]:
    """Switch autocast off inside an autocast region (e.g. a float64 front end); a null
    context where :func:`autocast` would not have switched it on."""
    if amp_dtype(device) is None:
        return contextlib.nullcontext()
    return _torch().autocast(device_type="cuda", enabled=False)


@contextlib.contextmanager
def inference(device: str, amp: bool = True) -> Iterator[None]:
    """inference_mode + :func:`autocast`: no autograd; bf16 on CUDA when ``amp``, float32 on CPU."""
    with _torch().inference_mode(), autocast(device, amp):
        yield
