"""Datasets: manifests of clips with content hashes and a fingerprint.

A manifest is a CSV with one row per clip. Columns (the ones marked * are required):
  clip_id*   unique id; generated files are named ``{clip_id}.wav`` / ``{clip_id}.mp4``
  video      path of the video file (mp4), relative to the manifest's folder
  audio      path of a lossless audio file (wav/flac) when one exists; else empty and
             the audio is read from the video's audio track
  sha256     sha256 of the video file's bytes (or of the audio file when there is no video)
  duration_s clip length in seconds
  label      label text (the class name); used for CLIPSIM prompts and label tokens
  split      "train" / "test" / ...
  events     ground-truth event times in seconds, ";"-separated, where known
  audio_sha256   sha256 of the lossless audio file's bytes, when there is one
  content_sha256 sha256 of the clip's decoded content (:func:`foleybench.hashing.content_sha256`)

The fingerprint identifies the dataset's content (docs/PROTOCOL.md, "Fingerprints"): the
sha256 of the canonical rows (sorted by clip_id: id, paths relative to the manifest's
folder, duration, label, split, events) each with one content key. The key is the
``content_sha256`` column when the manifest has it (recipe-made sets such as synthfoley,
whose container bytes differ between machines while what they decode to does not);
otherwise it is the sha256 of the bytes of the clip's video and audio files as they are
on disk now (cached by path, size and mtime), so replacing any file changes it.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from foleybench.api import InputError
from foleybench.hashing import sha256_file, sha256_file_cached  # noqa: F401  (sha256_file: re-export)

COLUMNS = ["clip_id", "video", "audio", "sha256", "duration_s", "label", "split", "events",
           "audio_sha256", "content_sha256"]


@dataclass(frozen=True)
class ClipRecord:
    clip_id: str
    video: str | None = None      # absolute path, or None
    audio: str | None = None      # absolute path of lossless audio, or None
    sha256: str = ""
    duration_s: float = 0.0
    label: str = ""
    split: str = "test"
    events: tuple[float, ...] | None = None
    audio_sha256: str = ""
    content_sha256: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def audio_source(self) -> str | None:
        """The file audio should be read from: lossless when present, else the video."""
        return self.audio or self.video


def content_key(r: ClipRecord) -> str:
    """What a clip's fingerprint row says about its media: its decoded-content hash when
    the manifest gives one, else the sha256 of each media file's bytes as on disk now
    (the declared column value, marked so, for a file that is missing)."""
    if r.content_sha256:
        return f"content:{r.content_sha256}"
    parts = []
    for path, declared in ((r.video, r.sha256 if r.video else ""), (r.audio, r.audio_sha256 or
                                                                    ("" if r.video else r.sha256))):
        if not path:
            parts.append("-")
        elif os.path.isfile(path):
            parts.append(sha256_file_cached(path))
        else:
            parts.append(f"missing:{declared}")
    return "bytes:" + ":".join(parts)


class Manifest:
    """An ordered list of :class:`ClipRecord` rooted at a folder."""

    def __init__(self, records: Sequence[ClipRecord], root: str | Path, name: str = ""):
        self.records = list(records)
        # Resolved, so paths inside it are written (and fingerprinted) relative to it
        # whether the caller said runs/data/x or /abs/runs/data/x.
        self.root = Path(root).resolve()
        self.name = name
        ids = [r.clip_id for r in self.records]
        dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        if dup:
            raise InputError(str(self.root), f"duplicate clip ids in manifest: {dup[:5]}")
        self._by_id = {r.clip_id: r for r in self.records}
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, clip_id: str) -> ClipRecord:
        try:
            return self._by_id[clip_id]
        except KeyError:
            raise InputError(str(self.root), f"no clip with id {clip_id!r} in the manifest") from None

    def ids(self) -> list[str]:
        return [r.clip_id for r in self.records]

    def split(self, split: str | None) -> "Manifest":
        if split is None:
            return self
        return Manifest([r for r in self.records if r.split == split], self.root, self.name)

    def limit(self, n: int | None) -> "Manifest":
        return self if n is None else Manifest(self.records[:n], self.root, self.name)

    # ------------------------------------------------------------------ csv
    def _rel(self, p: str | None) -> str:
        if not p:
            return ""
        try:
            return str(Path(p).relative_to(self.root))
        except ValueError:
            return str(p)

    def to_csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in sorted(self.records, key=lambda r: r.clip_id):
            ev = "" if r.events is None else ";".join(f"{t:.6f}" for t in r.events)
            w.writerow([r.clip_id, self._rel(r.video), self._rel(r.audio), r.sha256,
                        f"{r.duration_s:.6f}", r.label, r.split, ev, r.audio_sha256, r.content_sha256])
        return buf.getvalue()

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_csv_text())
        return path

    def fingerprint(self) -> str:
        """Content fingerprint (module docstring); computed once per Manifest object."""
        if self._fingerprint is None:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["foleybench.fingerprint/2", "clip_id", "video", "audio", "duration_s", "label", "split",
                        "events", "content"])
            for r in sorted(self.records, key=lambda r: r.clip_id):
                ev = "" if r.events is None else ";".join(f"{t:.6f}" for t in r.events)
                w.writerow(["", r.clip_id, self._rel(r.video), self._rel(r.audio), f"{r.duration_s:.6f}",
                            r.label, r.split, ev, content_key(r)])
            self._fingerprint = hashlib.sha256(buf.getvalue().encode()).hexdigest()
        return self._fingerprint

    @classmethod
    def read(cls, path: str | Path, name: str = "") -> "Manifest":
        path = Path(path)
        if not path.is_file():
            raise InputError(str(path), "manifest file not found")
        root = path.parent
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "clip_id" not in reader.fieldnames:
                raise InputError(str(path), f"not a foleybench manifest (columns: {reader.fieldnames})")
            rows = list(reader)
        return cls([_record_from_row(row, root, path, i) for i, row in enumerate(rows, 2)], root, name)


def _record_from_row(row: dict, root: Path, path: Path, line: int) -> ClipRecord:
    def p(key: str) -> str | None:
        v = (row.get(key) or "").strip()
        return str((root / v).resolve()) if v else None

    try:
        events = row.get("events") or ""
        ev: tuple[float, ...] | None = tuple(float(t) for t in events.split(";") if t) if events else None
        if "events" in row and events == "":
            ev = ()
        return ClipRecord(
            clip_id=row["clip_id"].strip(), video=p("video"), audio=p("audio"),
            sha256=(row.get("sha256") or "").strip(),
            duration_s=float(row.get("duration_s") or 0.0), label=(row.get("label") or "").strip(),
            split=(row.get("split") or "test").strip(), events=ev,
            audio_sha256=(row.get("audio_sha256") or "").strip(),
            content_sha256=(row.get("content_sha256") or "").strip(),
        )
    except (ValueError, KeyError) as exc:
        raise InputError(f"{path}:{line}", f"bad manifest row ({exc})") from None


def write_manifest(records: Iterable[ClipRecord], root: str | Path, filename: str = "manifest.csv") -> Path:
    root = Path(root)
    return Manifest(list(records), root).write(root / filename)
