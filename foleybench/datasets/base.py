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
import math
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from foleybench.api import InputError
from foleybench.hashing import sha256_file, sha256_file_cached  # noqa: F401  (sha256_file: re-export)


def normalize_id(clip_id: str) -> str:
    """A clip id in Unicode NFC. Ids are compared in this form everywhere (manifest rows,
    folder stems, prediction stems, output names), so ``café`` typed (NFC) and ``café``
    from a macOS file name (NFD) are one clip; two files whose names differ only in that
    form are one id twice, which is reported as ambiguous (docs/PROTOCOL.md, "Pairing")."""
    return unicodedata.normalize("NFC", clip_id.strip())


LOSSLESS_EXT = (".wav", ".flac")
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

    def __init__(self, records: Sequence[ClipRecord], root: str | Path, name: str = "",
                 problems: dict[str, str] | None = None, notes: Sequence[str] = ()):
        self.records = list(records)
        # Clips (or rows without a usable id, as "FILE:LINE") left out when the manifest was
        # read, with the reason; the runner reports them ("excluded_ref") and goes on.
        self.problems: dict[str, str] = dict(problems or {})
        # Rules applied while reading that a user should hear about (printed in the summary).
        self.notes: list[str] = list(notes)
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
        return Manifest([r for r in self.records if r.split == split], self.root, self.name,
                        self.problems, self.notes)

    def limit(self, n: int | None) -> "Manifest":
        if n is not None and n < 0:
            raise InputError("--limit", f"must be >= 0, got {n}")
        return self if n is None else Manifest(self.records[:n], self.root, self.name, self.problems, self.notes)

    def without(self, excluded: dict[str, str]) -> "Manifest":
        """This manifest less the clips in ``excluded`` ({id: reason}), which join ``problems``."""
        keep = [r for r in self.records if r.clip_id not in excluded]
        m = Manifest(keep, self.root, self.name, {**self.problems, **excluded}, self.notes)
        m._fingerprint = self._fingerprint  # the set's identity is its content, excluded or not
        return m

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
        """Read a manifest CSV. A bad row (no id, unparsable field, negative duration, an id
        given twice, also in another Unicode form) is left out and listed in ``problems``;
        only a file with no usable row at all is an error. Without an ``audio`` column, a
        ``.wav``/``.flac`` of the video's stem beside it is used as the lossless audio (the
        folder rule), and a note says so."""
        path = Path(path)
        if not path.is_file():
            raise InputError(str(path), "manifest file not found" if not path.is_dir() else
                             "is a folder, not a manifest file")
        root = path.parent
        try:
            # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column's name
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                fields = reader.fieldnames
                if not fields or "clip_id" not in fields:
                    raise InputError(str(path), f"not a foleybench manifest (no clip_id column; columns: {fields})")
                twice = sorted({c for c in fields if fields.count(c) > 1})
                if twice:  # DictReader would keep the last silently: which one is meant cannot be known
                    raise InputError(str(path), f"column {twice[0]!r} appears {fields.count(twice[0])} times "
                                                f"in the header; keep one")
                rows = list(reader)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(str(path), f"not a manifest CSV ({type(exc).__name__}: {str(exc)[:80]})") from None
        records, problems, notes = [], {}, []
        lines: dict[str, list[int]] = {}
        for i, row in enumerate(rows, 2):
            n_fields = len(fields) + len(row.get(None) or []) - sum(v is None for k, v in row.items() if k)
            if n_fields != len(fields):  # a cut line or an unquoted comma: the columns cannot be trusted
                cid = normalize_id(row.get("clip_id") or "")
                problems[cid or f"{path.name}:{i}"] = (f"{path.name}:{i}: the row has {n_fields} fields, the header "
                                                       f"{len(fields)} (a cut line, or a comma not in quotes?)")
                continue
            try:
                rec = _record_from_row(row, root, path, i)
            except InputError as exc:
                cid = normalize_id(row.get("clip_id") or "")
                problems[cid or f"{path.name}:{i}"] = f"{path.name}:{i}: {exc.problem}"
                continue
            lines.setdefault(rec.clip_id, []).append(i)
            records.append(rec)
        for cid, at in lines.items():
            if len(at) > 1:
                forms = sorted({(rows[k - 2].get("clip_id") or "").strip() for k in at})
                how = " (in different Unicode forms)" if len(forms) > 1 else ""
                problems[cid] = f"{path.name}: clip id {cid!r} is given {len(at)} times{how}, rows {at}"
        records = [r for r in records if r.clip_id not in problems]
        if "audio" not in fields:
            records, note = _lossless_beside(records, path)
            notes += [note] if note else []
        if not records and problems:
            first = "; ".join(f"{k}: {v}" for k, v in list(problems.items())[:3])
            raise InputError(str(path), f"no usable rows ({first})")
        if not records:
            raise InputError(str(path), "no clip rows (the manifest holds only its header)")
        return cls(records, root, name, problems, notes)


def _lossless_beside(records: list[ClipRecord], path: Path) -> tuple[list[ClipRecord], str]:
    """Without an ``audio`` column: use ``{video stem}.wav``/``.flac`` beside the video when
    exactly one exists (docs/PROTOCOL.md, "Lossless audio first")."""
    import dataclasses

    out, used = [], 0
    for r in records:
        if r.video and not r.audio:
            found = [Path(r.video).with_suffix(e) for e in LOSSLESS_EXT if Path(r.video).with_suffix(e).is_file()]
            if len(found) == 1:
                r, used = dataclasses.replace(r, audio=str(found[0])), used + 1
        out.append(r)
    note = (f"{path}: no audio column; {used} clip(s) read their audio from the .wav/.flac beside the "
            "video instead of its AAC track (docs/PROTOCOL.md, Lossless audio first)") if used else ""
    return out, note


def _record_from_row(row: dict, root: Path, path: Path, line: int) -> ClipRecord:
    """One manifest row as a record (id in NFC); InputError naming ``FILE:LINE`` when it is unusable."""
    def p(key: str) -> str | None:
        v = (row.get(key) or "").strip()
        return str((root / v).resolve()) if v else None

    cid = normalize_id(row.get("clip_id") or "")
    if not cid:
        raise InputError(f"{path}:{line}", "empty clip_id")
    try:
        events = row.get("events") or ""
        ev: tuple[float, ...] | None = tuple(float(t) for t in events.split(";") if t) if events else None
        if "events" in row and events == "":
            ev = ()
        duration = float(row.get("duration_s") or 0.0)
        if not math.isfinite(duration) or duration < 0:
            raise ValueError(f"duration_s must be a finite number >= 0 (0: unknown), got {duration}")
        return ClipRecord(
            clip_id=cid, video=p("video"), audio=p("audio"),
            sha256=(row.get("sha256") or "").strip(),
            duration_s=duration, label=(row.get("label") or "").strip(),
            split=(row.get("split") or "test").strip(), events=ev,
            audio_sha256=(row.get("audio_sha256") or "").strip(),
            content_sha256=(row.get("content_sha256") or "").strip(),
        )
    except (ValueError, KeyError) as exc:
        raise InputError(f"{path}:{line}", f"bad manifest row ({exc})") from None


def write_manifest(records: Iterable[ClipRecord], root: str | Path, filename: str = "manifest.csv") -> Path:
    root = Path(root)
    return Manifest(list(records), root).write(root / filename)
