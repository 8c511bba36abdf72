"""Results documents: provenance that makes every printed number traceable.

Every results JSON carries the harness version and git commit (with a dirty flag), the
library versions that change numbers (torch, torchaudio, numpy, librosa, opencv, av),
the platform, and the time. Metric entries add their embedder, weights
(``pretrained``/``proxy``) and checkpoint sha256 (see runner.score).
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import foleybench

SCHEMA = "foleybench.results/1"
_LIBS = ["torch", "torchaudio", "torchvision", "numpy", "scipy", "librosa", "opencv-python-headless",
         "av", "decord", "soundfile", "open_clip_torch", "encodec"]


_DIGEST_SUFFIXES = {".py", ".pt", ".yaml", ".csv", ".toml", ".lock"}


@lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over (relative path, sha256) of every file that can change a number: the
    package's Python modules (foleybench, its metrics and baselines), shipped
    checkpoints and data, the benchmark specs, pyproject.toml and requirements.lock.

    Unlike a git commit it can be written into a tracked leaderboard: committing the
    table does not change it, and it is the same in a clone, a tarball or an install.
    """
    import hashlib
    from importlib.util import find_spec

    from foleybench.hashing import sha256_file

    roots = {}
    for mod in ("foleybench", "foleybench.metrics", "foleybench.baselines"):
        spec = find_spec(mod)
        if spec and spec.submodule_search_locations:
            roots[mod] = Path(list(spec.submodule_search_locations)[0])
    repo = Path(foleybench.__file__).resolve().parent.parent
    files: dict[str, Path] = {}
    for mod, root in roots.items():
        for p in root.rglob("*"):
            if p.is_file() and p.suffix in _DIGEST_SUFFIXES and "__pycache__" not in p.parts:
                rel = p.relative_to(root).as_posix()
                if mod == "foleybench" and rel.split("/")[0] in ("metrics", "baselines"):
                    continue  # a regular install nests them; counted under their own name
                files[f"{mod}/{rel}"] = p
    for rel in ("pyproject.toml", "requirements.lock"):
        if (repo / rel).is_file():
            files[rel] = repo / rel
    for p in sorted((repo / "benchmarks").glob("*.yaml")):
        files[f"benchmarks/{p.name}"] = p
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{sha256_file(files[rel])}\n".encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    here = Path(foleybench.__file__).resolve().parent.parent
    info: dict[str, Any] = {"harness_version": foleybench.__version__, "code_digest": code_digest(),
                            "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5)
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


@lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    libs = {}
    for name in _LIBS:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "libraries": libs}


def provenance_block() -> dict[str, Any]:
    return {"schema": SCHEMA, "code": code_version(), "environment": environment(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_json(path: str | os.PathLike, doc: Any) -> Path:
    """Atomic JSON write (temp file + rename): readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = dumps_strict(doc)  # before the temp file: an unserialisable doc leaves nothing behind
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; results are meant to be shared (umask decides)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def finite_only(doc: Any) -> Any:
    """A copy of ``doc`` where every NaN/inf float is None, with the reason beside it.

    A dict that held one gets ``"non_finite": {key: "nan" | "inf" | "-inf"}`` (for a list
    value, the key of the list), so strict JSON readers see null and a human sees why.
    """
    import numpy as np

    def bad(x: Any) -> str | None:
        if isinstance(x, (float, np.floating)) and not math.isfinite(float(x)):
            return "nan" if math.isnan(float(x)) else ("inf" if x > 0 else "-inf")
        return None

    def walk(x: Any) -> tuple[Any, str | None]:
        if isinstance(x, dict):
            out, why = {}, {}
            for k, v in x.items():
                out[k], reason = walk(v)
                if reason:
                    why[str(k)] = reason
            if why:
                out["non_finite"] = {**out.get("non_finite", {}), **why}
            return out, None
        if isinstance(x, (list, tuple)):
            items = [walk(v) for v in x]
            reasons = sorted({r for _, r in items if r})
            return [v for v, _ in items], ",".join(reasons) or None
        if isinstance(x, np.ndarray):
            return walk(x.tolist())
        reason = bad(x)
        return (None, reason) if reason else (x, None)

    return walk(doc)[0]


def dumps_strict(doc: Any) -> str:
    """Strict JSON text (``allow_nan=False``): non-finite numbers become null with a reason."""
    return json.dumps(finite_only(doc), indent=2, sort_keys=False, default=_default, allow_nan=False) + "\n"


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)
