"""sha256 of files and of decoded media: the one place the harness hashes content.

``sha256_file`` hashes a file's bytes (``file_digest`` with another algorithm, e.g.
md5 where upstream publishes only that). ``sha256_file_cached`` does the same but
remembers the answer per (absolute path, size, mtime in ns), in memory and in a small
SQLite table under the foleybench cache folder (``$FOLEYBENCH_CACHE`` or
``~/.cache/foleybench``), so a 15k-clip reference set is read once, not on every run.
A file rewritten in place gets a new mtime and is hashed again.

``content_sha256`` hashes what a clip *decodes to* (video frames as uint8 RGB and
lossless audio as float32, with their shapes and rates), not the container bytes:
two encoders can write different bytes for identical pictures and samples (the AAC
encoder's float arithmetic differs between CPUs), and a dataset made from a recipe
must get the same fingerprint on every machine.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Callable

_MEMO: dict[tuple[str, int, int], str] = {}
_CHUNK = 1 << 20


def cache_root() -> Path:
    return Path(os.environ.get("FOLEYBENCH_CACHE") or "~/.cache/foleybench").expanduser()


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file's bytes with any :mod:`hashlib` algorithm (``"md5"`` for
    checksums that upstream publishes only as md5), read in 1 MiB blocks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes: the one implementation (``foleybench.weights``,
    ``foleybench.cache`` and ``foleybench.datasets.base`` re-export it)."""
    return file_digest(path, "sha256")


def _db() -> sqlite3.Connection | None:
    try:
        root = cache_root()
        root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(root / "sha256.sqlite"), timeout=30)
        con.execute("CREATE TABLE IF NOT EXISTS sha (path TEXT, size INTEGER, mtime INTEGER, sha TEXT, "
                    "PRIMARY KEY (path, size, mtime))")
        return con
    except (OSError, sqlite3.Error):
        return None  # an unwritable cache only costs time


def sha256_file_cached(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered per (path, size, mtime) across runs."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key in _MEMO:
        return _MEMO[key]
    con = _db()
    row = None
    if con is not None:
        try:
            row = con.execute("SELECT sha FROM sha WHERE path=? AND size=? AND mtime=?", key).fetchone()
        except sqlite3.Error:
            row = None
    digest = row[0] if row else sha256_file(path)
    if con is not None:
        if not row:
            try:
                with con:
                    con.execute("INSERT OR REPLACE INTO sha VALUES (?, ?, ?, ?)", (*key, digest))
            except sqlite3.Error:
                pass
        con.close()
    _MEMO[key] = digest
    return digest


_CHECKS: dict[tuple[str, int, int, str], str] = {}


def cached_by_stat(path: str | os.PathLike, kind: str, compute: Callable[[], str]) -> str:
    """``compute()`` for ``path``, remembered per (path, size, mtime, kind) in memory and in
    the same SQLite file as the hashes: a check of a 15k-clip reference set (e.g.
    foleybench.media_check) costs its full price once, and again only for files that changed."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, kind)
    if key in _CHECKS:
        return _CHECKS[key]
    con = _db()
    row = None
    if con is not None:
        try:
            con.execute("CREATE TABLE IF NOT EXISTS checks (path TEXT, size INTEGER, mtime INTEGER, kind TEXT, "
                        "result TEXT, PRIMARY KEY (path, size, mtime, kind))")
            row = con.execute("SELECT result FROM checks WHERE path=? AND size=? AND mtime=? AND kind=?",
                              key).fetchone()
        except sqlite3.Error:
            row = None
    result = row[0] if row else compute()
    if con is not None:
        if not row:
            try:
                with con:
                    con.execute("INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?)", (*key, result))
            except sqlite3.Error:
                pass  # an unwritable cache only costs time
        con.close()
    _CHECKS[key] = result
    return result


def content_sha256(video: str | os.PathLike | None, audio: str | os.PathLike | None) -> str:
    """sha256 of the decoded content of a clip.

    Covers every decoded video frame (uint8 RGB [T, H, W, 3] and the fps) and the
    decoded samples of the lossless audio file (float32 [C, N] and the rate). When a
    clip has a lossless audio file, its video's own audio track is not covered: the
    harness never reads it then (docs/PROTOCOL.md, "Fingerprints").
    """
    from foleybench import media

    h = hashlib.sha256(b"foleybench.content/1")
    if video:
        v = media.read_video(video)
        h.update(f"video {tuple(v.frames.shape)} fps={float(v.fps)!r}".encode())
        h.update(v.frames.tobytes())
    if audio:
        a = media.read_audio(audio)
        h.update(f"audio {tuple(a.samples.shape)} sr={a.sample_rate}".encode())
        h.update(a.samples.astype("<f4").tobytes())
    return h.hexdigest()
