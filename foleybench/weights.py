"""Registry of pretrained checkpoint files: where they come from and how to check them.

One declarative record per checkpoint (timm's habit): file name, URL, sha256, licence,
paper. Files live in the weights directory: ``--weights-dir`` (CLI), else the
``FOLEYBENCH_WEIGHTS`` environment variable, else ``~/.cache/foleybench/weights``.
Nothing is downloaded unless ``foleybench weights fetch NAME`` is run; a missing file is
one clear error naming the file, its URL and that command.

Labels (``Embedder.weights``): ``pretrained`` is reserved for the upstream file (its
sha256, or the sha256 prefix / md5 upstream publishes, matches the record; a file in the
weights directory under the upstream name is trusted by name when the record publishes
no checksum, and refused when it publishes one that fails). A file the user names with
``--checkpoint`` that is not the upstream file is ``custom``: loaded just as strictly,
recorded with its own sha256, marked on the leaderboard. ``proxy``: seeded random init.

Reading files: :func:`read_checkpoint` is the one reader (``weights_only=True``, see
foleybench/checkpoint_io.py); :func:`read_state_dict` applies the one unwrap rule;
TorchScript archives are the explicit :func:`read_torchscript` case.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from foleybench.api import FoleybenchError
from foleybench.checkpoint_io import (  # noqa: F401  (re-exported: the one reader lives there)
    CheckpointError,
    is_torchscript_archive,
    read_checkpoint,
    read_state_dict,
    read_torchscript,
    state_dict_of,
)
from foleybench.hashing import file_digest, sha256_file  # noqa: F401  (sha256_file: re-export)

ENV_VAR = "FOLEYBENCH_WEIGHTS"


@dataclass(frozen=True)
class WeightRecord:
    name: str          # registry name, e.g. "vggish"
    filename: str      # file name in the weights directory, as published upstream
    url: str
    sha256: str | None  # None: upstream publishes none; we record what we verified
    license: str
    paper: str
    note: str = ""
    sha256_prefix: str | None = None  # leading hex digits a torch.hub file name publishes
    md5: str | None = None            # what e.g. Zenodo publishes instead of a sha256

    def downloadable(self) -> bool:
        """Whether ``url`` is an address to fetch (some records say there is no release)."""
        return "://" in self.url

    def checks(self) -> bool:
        """Whether upstream publishes anything to check a file against."""
        return bool(self.sha256 or self.sha256_prefix or self.md5)


class MissingWeightsError(FoleybenchError, FileNotFoundError):
    pass


class ChecksumError(FoleybenchError, ValueError):
    pass


class StrictLoadError(FoleybenchError, ValueError):
    pass


WEIGHTS: dict[str, WeightRecord] = {}


def register(record: WeightRecord) -> WeightRecord:
    old = WEIGHTS.get(record.name)
    if old is not None and old != record:
        raise FoleybenchError(f"weights {record.name!r} registered twice with different records")
    WEIGHTS[record.name] = record
    return record


def _load_records() -> None:
    """Import every embedder module: each declares its WeightRecords at import time."""
    import importlib

    from foleybench.registry import EMBEDDERS, load_families, load_plugins

    load_plugins()
    load_families()  # family checkpoints register their records when discovered
    for name in EMBEDDERS.names():
        module = EMBEDDERS.entry(name).target.partition(":")[0]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a missing optional dependency must show, not vanish
                raise


def _load_record_of(name: str) -> None:
    """Import the one embedder module registered under ``name`` (its record lives there),
    so locating one checkpoint does not import every evaluator (and torch, librosa...)."""
    import importlib

    from foleybench.registry import EMBEDDERS

    if name not in EMBEDDERS:
        return
    module = EMBEDDERS.entry(name).target.partition(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise


def record(name: str) -> WeightRecord:
    if name not in WEIGHTS:
        _load_record_of(name)
    if name not in WEIGHTS:
        _load_records()
    if name not in WEIGHTS:
        from foleybench.registry import UnknownNameError

        raise UnknownNameError("weight", name, sorted(WEIGHTS))
    return WEIGHTS[name]


_override: Path | None = None


def set_weights_dir(path: str | os.PathLike | None) -> None:
    global _override
    _override = Path(path).expanduser() if path else None


def weights_dir() -> Path:
    if _override is not None:
        return _override
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/foleybench/weights").expanduser()


def upstream_mismatch(rec: WeightRecord, path: Path, digest: str) -> str | None:
    """Why ``path`` (sha256 ``digest``) is not the upstream file of ``rec``, or None when
    it is, or when the record publishes nothing to check (see :meth:`WeightRecord.checks`)."""
    if rec.sha256 and digest != rec.sha256:
        return f"sha256 {digest} does not match the registered {rec.sha256}"
    if rec.sha256_prefix and not digest.startswith(rec.sha256_prefix):
        return (f"sha256 {digest} does not start with {rec.sha256_prefix}, the prefix the upstream "
                "file name publishes")
    if rec.md5:
        got = file_digest(path, "md5")
        if got != rec.md5:
            return f"md5 {got} does not match the upstream-published {rec.md5}"
    return None


@dataclass(frozen=True)
class Located:
    """A checkpoint file found for an embedder: its path, sha256 and label
    (``"pretrained"``: the upstream file; ``"custom"``: a user's file, see module doc)."""

    path: Path
    sha256: str
    weights: str


def locate(name: str, checkpoint: str | os.PathLike | None = None, verify: bool = True) -> Located:
    """Find, hash and label the checkpoint of ``name``.

    No ``checkpoint``: the weights directory's file under the upstream name, which must
    pass the record's checks (ChecksumError otherwise: a corrupt download or another
    release; ``verify=False`` skips that). A ``checkpoint`` the user names is never
    refused for its hash: it is ``pretrained`` when it passes a check the record
    publishes, ``custom`` otherwise (including when the record publishes none).
    """
    rec = record(name)
    path = Path(checkpoint).expanduser() if checkpoint else weights_dir() / rec.filename
    if not path.is_file():
        how = (f"  fetch it with: foleybench weights fetch {name}  " if rec.downloadable() else
               f"  nothing to download{': ' + rec.note if rec.note else ''}\n  ")
        raise MissingWeightsError(
            f"weights for {name!r} not found: {path} is missing.\n"
            f"  upstream file: {rec.filename}\n  url: {rec.url}\n"
            f"{how}(or put it in {weights_dir()} / set {ENV_VAR}, or pass --checkpoint)"
        )
    digest = sha256_file(path)
    if checkpoint:
        upstream = rec.checks() and upstream_mismatch(rec, path, digest) is None
        return Located(path, digest, "pretrained" if upstream else "custom")
    if verify:
        why = upstream_mismatch(rec, path, digest)
        if why:
            raise ChecksumError(f"{path}: {why} for {name!r} ({rec.url}); the file is corrupt or a "
                                "different release (pass it with --checkpoint to score it as custom)")
    return Located(path, digest, "pretrained")


def resolve(name: str, checkpoint: str | os.PathLike | None = None, verify: bool = True) -> tuple[Path, str]:
    """``(path, sha256)`` of :func:`locate` (kept for callers that need no label)."""
    loc = locate(name, checkpoint, verify)
    return loc.path, loc.sha256


def fetch(name: str, force: bool = False) -> Path:
    """Download the checkpoint for ``name`` into the weights directory and verify it."""
    rec = record(name)
    dest = weights_dir() / rec.filename
    if not rec.downloadable():
        raise MissingWeightsError(f"{name}: there is nothing to download (url: {rec.url})"
                                  + (f"; {rec.note}" if rec.note else ""))
    if dest.is_file() and not force:
        resolve(name)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{rec.filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(rec.url) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
        why = upstream_mismatch(rec, Path(tmp), sha256_file(tmp))
        if why:
            raise ChecksumError(f"{rec.url}: downloaded file: {why}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def status() -> list[dict[str, Any]]:
    """One row per registered checkpoint: present? verified?"""
    _load_records()
    rows = []
    for name in sorted(WEIGHTS):
        rec = WEIGHTS[name]
        path = weights_dir() / rec.filename
        state = "missing"
        if path.is_file():
            state = "BAD SHA256" if upstream_mismatch(rec, path, sha256_file(path)) else "ok"
        rows.append({"name": name, "file": rec.filename, "state": state, "license": rec.license,
                     "url": rec.url})
    return rows


def load_strict(module: Any, state_dict: Mapping[str, Any], source: str) -> None:
    """Load ``state_dict`` into ``module`` requiring every key and every shape to match.

    torch's ``strict=True`` already rejects missing/unexpected keys but raises on the
    first shape mismatch with a terse message; this collects everything and names the
    checkpoint file.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state_dict))
              if tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:5]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:5]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[:3]})")
        raise StrictLoadError(f"{source}: checkpoint does not fit the network: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def state_dict_sha256(state_dict: Mapping[str, Any]) -> str:
    """sha256 over a state_dict's names, dtypes, shapes and bytes (sorted by name).

    Identifies proxy (seeded random-init) weights, which have no file: the same seed
    and architecture give the same digest on every machine.
    """
    import numpy as np

    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        arr = t.detach().cpu().contiguous().numpy() if hasattr(t, "detach") else np.asarray(t)
        h.update(f"{key}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def seeded_init(module: Any, seed: int) -> Any:
    """Re-initialise ``module`` deterministically: proxy weights for tests and the default.

    Uses the module's own ``reset_parameters`` under a private torch generator seed so
    the result does not depend on (or disturb) the global RNG state.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return module


def he_normal_init(module: Any, layers: tuple[str, ...] = ("Conv1d", "Conv2d", "Conv3d", "Linear")) -> Any:
    """He-normal (fan_in, ReLU gain) weights for the named layer types, in place.

    For proxy CNN evaluators: torch's default conv init shrinks activations about 3x per
    layer and BatchNorm in eval mode (running stats 0/1) does not renormalise, so a deep
    default-init proxy outputs near-constant features and every distance collapses to
    ~1e-4. Call after :func:`seeded_init`, under the same seed discipline.
    """
    import torch

    for m in module.modules():
        if type(m).__name__ in layers and isinstance(getattr(m, "weight", None), torch.nn.Parameter):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return module
