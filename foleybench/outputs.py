"""Checks of output paths, made before any work: a bad ``--out`` must cost seconds, not a run.

Each raises :class:`~foleybench.api.InputError` naming the path and the problem. The
check is real (a probe file is created and removed), because permission bits do not
tell the whole story (read-only mounts, ACLs, root).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from foleybench.api import InputError


def _probe_writable(folder: Path, what: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".foleybench-probe.", suffix=".tmp")
    except OSError as exc:
        raise InputError(str(folder), f"{what} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def _existing_parent(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_file(path: str | os.PathLike) -> Path:
    """``path`` can be written as a file: not a folder, and its folder is (or can be made) writable."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputError(str(p), "is a folder; --out takes a file name (e.g. results.json)")
    parent = _existing_parent(p.parent)
    if not parent.is_dir():
        raise InputError(str(p), f"cannot be created: {parent} is a file, not a folder")
    _probe_writable(parent, "its folder" if parent == p.parent else f"its nearest existing folder {parent}")
    if p.exists() and not p.is_file():  # a device or fifo: the atomic rename would replace the node itself
        raise InputError(str(p), "exists and is not a regular file (a device, fifo or socket)")
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(str(p), "exists and is read-only")
    return p


def check_out_dir(path: str | os.PathLike) -> Path:
    """``path`` is (or can be made) a writable folder; created when missing."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise InputError(str(p), "is a file; this --out takes a folder")
    parent = _existing_parent(p)
    if not parent.is_dir():
        raise InputError(str(p), f"cannot be created: {parent} is a file, not a folder")
    _probe_writable(parent, "the folder" if parent == p else f"its nearest existing folder {parent}")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(p), f"cannot be created ({exc.strerror})") from None
    return p
