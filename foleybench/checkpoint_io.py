"""The one checkpoint reader: every file of weights the harness opens goes through here.

Use it through :mod:`foleybench.weights` (which re-exports these names).

- :func:`read_checkpoint` reads a torch file (zip or legacy pickle) with
  ``torch.load(map_location="cpu", weights_only=True)``, or a ``.safetensors`` file, and
  returns its top-level dict. Nothing is ever unpickled with ``weights_only=False``. The
  only globals allowed beyond torch's defaults rebuild plain numpy data (arrays and
  scalars of numeric, bool or string dtype), which published training checkpoints carry
  next to their tensors (e.g. a sampler state): data, not code.
- :func:`state_dict_of` / :func:`read_state_dict` apply the one unwrap rule (below).
- :func:`read_torchscript` is the separate, explicit case of a ``torch.jit.save`` archive
  (StyleGAN-V's I3D and C3D ports, OpenAI's CLIP file), run through ``torch.jit.load``.

Unwrap rule: the tensors of a checkpoint are the top-level dict itself when every value
is a tensor; otherwise its ``"state_dict"`` entry, else its ``"model"`` entry, when that
entry is a non-empty dict whose values are all tensors (PANNs: ``{"model": ...,
"iteration": ...}``; our trained families: ``{"state_dict": ..., "config": ...}``).
Anything else is refused, naming the file and its top-level keys.

Every failure is a :class:`CheckpointError` (an :class:`~foleybench.api.InputError`)
naming the file and the problem: missing, empty, text (e.g. a Git LFS pointer or an HTML
error page saved under the checkpoint's name), truncated or damaged archive, pickled
Python objects that a weights-only load refuses, or no state dict inside.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from foleybench.api import InputError

if TYPE_CHECKING:
    import torch

# torch is imported where a file is read, not at import time: a fully cached re-score
# imports this module (through foleybench.weights) without ever reading a checkpoint.

_ZIP = b"PK\x03\x04"
_PICKLE = b"\x80"  # pickle PROTO opcode: legacy (non-zip) torch.save files start with it
_WRAPPERS = ("state_dict", "model")


class CheckpointError(InputError):
    """A file that cannot be read as weights; the message names the file and the problem."""


def _numpy_data_globals() -> list[Any]:
    """numpy globals that rebuild plain arrays and scalars, under both module names
    (``numpy.core``, as numpy 1.x pickles them, and numpy 2's ``numpy._core``)."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    out: list[Any] = [np.ndarray, np.dtype]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        out += [fn, (fn, f"numpy.core.multiarray.{fn.__name__}"), (fn, f"numpy._core.multiarray.{fn.__name__}")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes by their class
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes)
                if n.endswith("DType") and n not in ("ObjectDType", "VoidDType")]
    return out


def _head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _is_safetensors(path: Path, head: bytes) -> bool:
    # 8-byte little-endian header length, then the JSON header
    if len(head) < 10 or head[8:9] != b"{":
        return False
    return path.suffix == ".safetensors" or int.from_bytes(head[:8], "little") < path.stat().st_size


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True for a ``torch.jit.save`` archive (it has a ``code/`` folder); a ``torch.save``
    zip holds only ``data.pkl`` and tensors, and legacy pickles are not zips at all."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _check_file(path: Path) -> bytes:
    """The file's first bytes, after refusing what can never be a checkpoint."""
    if not path.is_file():
        raise CheckpointError(str(path), "no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(str(path), "empty file (0 bytes): an interrupted download or copy?")
    head = _head(path)
    if head.startswith(_ZIP) or head.startswith(_PICKLE) or _is_safetensors(path, head):
        return head
    if head.startswith(b"version https://git-lfs"):
        raise CheckpointError(str(path), "is a Git LFS pointer, not the weights: run `git lfs pull` "
                                         "or download the file itself")
    text = head.decode("utf-8", "replace")
    kind = "text" if text.isprintable() or "\n" in text else "not a checkpoint format"
    raise CheckpointError(str(path), f"not a PyTorch or safetensors checkpoint ({kind}, starts with "
                                     f"{head[:24]!r}): an error page saved under the file's name?")


def _why_refused(exc: BaseException) -> str:
    msg = str(exc)
    m = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
    if m:
        return (f"it holds pickled Python objects ({m.group(1)}) that a weights-only load refuses; "
                "foleybench never runs a full unpickle. Re-save the tensors alone "
                "(torch.save(model.state_dict(), path) or safetensors)")
    return "its pickle is not a plain weights file: " + msg.strip().splitlines()[-1][:200]


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The top-level dict of a checkpoint file (tensors on CPU), read safely.

    ``.safetensors`` -> ``{name: Tensor}``; a torch file -> whatever dict it holds
    (state dict, or a training checkpoint with ``state_dict``/``config``/...). A
    TorchScript archive is refused here: read it with :func:`read_torchscript`.
    Raises :class:`CheckpointError` naming the file and the problem.
    """
    path = Path(path).expanduser()
    head = _check_file(path)
    if _is_safetensors(path, head):  # first: a header length can start with the byte 0x80
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except SafetensorError as exc:
            raise CheckpointError(str(path), f"damaged or truncated safetensors file ({exc})") from None
    if head.startswith(_ZIP):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(str(path), f"truncated or damaged zip archive ({exc})") from None
        if any("/code/" in n or n.startswith("code/") for n in names):
            raise CheckpointError(str(path), "is a TorchScript archive, not a state dict "
                                             "(only the embedders that accept TorchScript read it)")
    import torch

    try:
        with torch.serialization.safe_globals(_numpy_data_globals()):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(str(path), _why_refused(exc)) from None
    except (EOFError, RuntimeError, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(str(path), f"truncated or damaged checkpoint ({type(exc).__name__}: "
                                         f"{first})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(str(path), f"holds a {type(obj).__name__}, not a dict of tensors")
    return dict(obj)


def _all_tensors(d: Any) -> bool:
    import torch

    return isinstance(d, Mapping) and len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())


def state_dict_of(ckpt: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """The one unwrap rule (module docstring): ``ckpt`` itself, or its ``state_dict``,
    else ``model`` entry, whichever is a dict of tensors. ``source`` names the file."""
    if _all_tensors(ckpt):
        return dict(ckpt)
    for key in _WRAPPERS:
        if _all_tensors(ckpt.get(key)):
            return dict(ckpt[key])
    keys = sorted(map(str, ckpt))
    raise CheckpointError(source, "holds no state dict: neither the file's dict nor its 'state_dict' or "
                                  f"'model' entry is a dict of tensors (top-level keys: {keys[:10]})")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """:func:`read_checkpoint` then :func:`state_dict_of`: ``{name: Tensor}`` on CPU."""
    return state_dict_of(read_checkpoint(path), str(path))


def read_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """A ``torch.jit.save`` archive as a ScriptModule on CPU (the explicit TorchScript case)."""
    path = Path(path).expanduser()
    head = _check_file(path)
    if not head.startswith(_ZIP) or not is_torchscript_archive(path):
        raise CheckpointError(str(path), "is not a TorchScript archive (torch.jit.save)")
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(str(path), f"damaged TorchScript archive ({first})") from None
