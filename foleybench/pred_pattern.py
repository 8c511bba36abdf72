"""Explicit prediction file names: ``--pred-pattern`` (a template or a CSV mapping).

Released samples of other systems come as ``{id}.mp4`` with muxed audio, ``{id}_{k}.flac``,
``{id}/{k}.wav``... The harness never guesses which: the user names the rule, and every
file under the prediction folder is either matched to a reference clip (and a sample
label) or listed as unmatched with the reason (docs/PROTOCOL.md, "Released samples").

- A **template** holds ``{id}`` once (the clip id, NFC, never spanning a ``/``), ``{k}`` at
  most once (the sample index: decimal digits, read as an integer, so ``01`` and ``1`` are
  one sample), literal text, ``/`` for sub-folders, and ends with a literal media suffix
  (``.flac``; compared case-insensitively). ``{id}`` and ``{k}`` must be separated by
  literal text.
- A **CSV mapping** (``--pred-pattern map.csv``) has columns ``file`` (relative to the
  prediction folder, or absolute) and ``clip_id``, and optionally ``sample``. Rows of one
  clip id without a ``sample`` value are samples ``0, 1, ...`` in row order.

:func:`match` returns the files per clip id, and the unmatched files with their reasons;
pairing (foleybench.pairing) turns them into pairs.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from foleybench.api import InputError
from foleybench.datasets.base import normalize_id
from foleybench.datasets.folder import is_temp_or_hidden

# What a prediction may be, per task, when the user names the files. V2A reads the first
# audio track of any of these (an mp4's video track is ignored: the reference video is scored).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")
PATTERN_SUFFIXES = {"v2a": AUDIO_SUFFIXES + VIDEO_SUFFIXES, "a2v": VIDEO_SUFFIXES}
MEDIA_SUFFIXES = AUDIO_SUFFIXES + VIDEO_SUFFIXES
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class PredFile:
    """One prediction file: its path, its path relative to the folder (``/``-separated),
    its clip id (NFC) and sample label (None: the rule names one file per clip)."""

    path: Path
    rel: str
    clip_id: str
    sample: str | None = None

    @property
    def key(self) -> str:
        """``clip_id`` or ``clip_id#k``: how a sample is named in reports."""
        return self.clip_id if self.sample is None else f"{self.clip_id}#{self.sample}"


@dataclass
class Matches:
    """What :func:`match` found: ``files`` {clip id: files, in sample order},
    ``unmatched`` {relative path: reason}, ``ignored`` (non-media files, not predictions)."""

    files: dict[str, list[PredFile]] = field(default_factory=dict)
    unmatched: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def _sample_order(label: str | None) -> tuple[int, int, str]:
    if label is None:
        return (0, 0, "")
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


class Template:
    """A file-name template such as ``{id}_{k}.flac`` or ``{id}/{k}.wav``."""

    def __init__(self, text: str, task: str):
        self.text = text
        names = _PLACEHOLDER.findall(text)
        bad = sorted({n for n in names if n not in ("id", "k")})
        if bad:
            raise InputError("--pred-pattern", f"{text!r}: unknown placeholder(s) {', '.join('{' + b + '}' for b in bad)}"
                             "; use {id} (clip id) and {k} (sample index)")
        if names.count("id") != 1 or names.count("k") > 1:
            raise InputError("--pred-pattern", f"{text!r}: needs {{id}} exactly once and {{k}} at most once")
        if "{id}{k}" in text or "{k}{id}" in text:
            raise InputError("--pred-pattern", f"{text!r}: separate {{id}} and {{k}} by literal text "
                             "(e.g. {id}_{k}.wav), or the split is a guess")
        if text.startswith("/") or ".." in text.split("/") or "\\" in text:
            raise InputError("--pred-pattern", f"{text!r}: must be a path relative to --pred, with '/' separators")
        suffix = Path(text).suffix.lower()
        if "{" in suffix or "}" in suffix or suffix not in PATTERN_SUFFIXES[task]:
            raise InputError("--pred-pattern", f"{text!r}: must end with a literal media suffix; for {task} one of "
                             f"{', '.join(PATTERN_SUFFIXES[task])}")
        self.has_k = "k" in names
        self.suffix = suffix
        stem = text[: len(text) - len(suffix)]
        self._res = [self._regex(stem, lazy) for lazy in (True, False)]

    @staticmethod
    def _regex(stem: str, lazy: bool) -> re.Pattern[str]:
        out, pos = [], 0
        for m in _PLACEHOLDER.finditer(stem):
            out.append(re.escape(stem[pos:m.start()]))
            out.append(("(?P<id>[^/]+?)" if lazy else "(?P<id>[^/]+)") if m.group(1) == "id" else "(?P<k>[0-9]+)")
            pos = m.end()
        out.append(re.escape(stem[pos:]))
        return re.compile("".join(out))

    def parses(self, rel: str) -> list[tuple[str, str | None]]:
        """The (clip id, sample) readings of a relative path (none, one, or two that differ)."""
        if not rel.lower().endswith(self.suffix):
            return []
        stem = rel[: len(rel) - len(self.suffix)]
        found: list[tuple[str, str | None]] = []
        for rx in self._res:
            m = rx.fullmatch(stem)
            if m:
                reading = (normalize_id(m.group("id")), str(int(m.group("k"))) if self.has_k else None)
                if reading not in found:
                    found.append(reading)
        return found


def _scan(folder: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """(media files as (relative path, path), other files) under ``folder``, recursively;
    dot-files, dot-folders and temp names are skipped."""
    media, other = [], []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(is_temp_or_hidden(Path(part)) for part in rel.parts) or not p.is_file():
            continue
        (media if p.suffix.lower() in MEDIA_SUFFIXES else other).append((rel.as_posix(), p))
    return media, [r for r, _ in other]


def _add(f: PredFile, claimed: dict[tuple[str, str | None], list[PredFile]]) -> None:
    claimed.setdefault((f.clip_id, f.sample), []).append(f)


def _finish(out: Matches, claimed: dict[tuple[str, str | None], list[PredFile]]) -> Matches:
    """Files that claim the same (clip, sample) are all unmatched: which one is meant cannot be known."""
    for (cid, sample), fs in claimed.items():
        if len(fs) > 1:
            what = f"clip {cid!r}" + ("" if sample is None else f" sample {sample}")
            for f in fs:
                out.unmatched[f.rel] = (f"ambiguous: {len(fs)} files give {what} "
                                        f"({', '.join(g.rel for g in fs)}); keep one")
            continue
        out.files.setdefault(cid, []).append(fs[0])
    for cid in out.files:
        out.files[cid].sort(key=lambda f: _sample_order(f.sample))
    out.unmatched = dict(sorted(out.unmatched.items()))
    return out


def match_template(folder: Path, tpl: Template, ref_ids: set[str]) -> Matches:
    """Every media file under ``folder`` read with ``tpl``; ids are checked against ``ref_ids``
    only to settle a path that reads two ways (``a_1_2.wav`` under ``{id}_{k}``... never does
    with digit-only ``{k}``, but a literal made of digits can)."""
    media, other = _scan(folder)
    out, claimed = Matches(ignored=other), {}
    for rel, p in media:
        readings = tpl.parses(rel)
        if len(readings) > 1:
            known = [r for r in readings if r[0] in ref_ids]
            if len(known) != 1:
                out.unmatched[rel] = (f"reads two ways under {tpl.text!r}: "
                                      + " or ".join(f"id {i!r} sample {k}" for i, k in readings))
                continue
            readings = known
        if not readings:
            out.unmatched[rel] = f"does not fit --pred-pattern {tpl.text!r}"
            continue
        cid, sample = readings[0]
        _add(PredFile(p, rel, cid, sample), claimed)
    return _finish(out, claimed)


def match_csv(folder: Path, csv_path: Path) -> Matches:
    """The files a CSV mapping names (columns file, clip_id[, sample]); every other media
    file under ``folder`` is unmatched, and so is every row that cannot be used."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items() if isinstance(v, str) or v is None}
                    for r in reader]
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise InputError(csv_path, f"unreadable mapping CSV ({exc})") from exc
    if "file" not in cols or "clip_id" not in cols:
        raise InputError(csv_path, f"a prediction mapping needs columns file and clip_id (and optionally sample); "
                         f"it has {cols or 'none'}")
    media, other = _scan(folder)
    out, claimed = Matches(ignored=[r for r in other if (folder / r).resolve() != csv_path.resolve()]), {}
    rows_of: dict[Path, list[tuple[str, Path, str, str | None, str]]] = {}  # resolved file -> its usable rows
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        name, cid, sample = row.get("file", ""), normalize_id(row.get("clip_id", "")), row.get("sample") or None
        where = f"{csv_path.name}:{line}"
        if not name or not cid:
            out.unmatched[where] = "row without a file or a clip_id"
            continue
        p = Path(name) if Path(name).is_absolute() else folder / name
        try:
            rel = p.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            rel = str(p)
        if not p.is_file():
            out.unmatched[rel] = f"listed in {where} but not found"
            continue
        rows_of.setdefault(p.resolve(), []).append((rel, p, cid, sample, where))
    counters: dict[str, int] = {}
    for file_rows in rows_of.values():
        if len(file_rows) > 1:  # one file, several rows: which one is meant cannot be known
            out.unmatched[file_rows[0][0]] = f"listed {len(file_rows)} times ({', '.join(r[4] for r in file_rows)})"
            continue
        rel, p, cid, sample, _ = file_rows[0]
        if sample is None:
            sample = str(counters.get(cid, 0))
            counters[cid] = counters.get(cid, 0) + 1
        elif sample.isdigit():
            sample = str(int(sample))
        _add(PredFile(p, rel, cid, sample), claimed)
    listed = set(rows_of)
    for rel, p in media:
        if p.resolve() not in listed and rel not in out.unmatched:
            out.unmatched[rel] = f"not listed in {csv_path.name}"
    # A clip listed once, with no sample column, is one file per clip, not sample 0.
    if "sample" not in cols:
        for key in [k for k in claimed if k[1] == "0" and (k[0], "1") not in claimed]:
            fs = claimed.pop(key)
            claimed[(key[0], None)] = [PredFile(f.path, f.rel, f.clip_id, None) for f in fs]
    return _finish(out, claimed)


def match(folder: str | Path, spec: str, task: str, ref_ids: set[str]) -> tuple[Matches, str]:
    """(matches, the rule as recorded in the results) for ``--pred-pattern spec``."""
    folder = Path(folder)
    as_file = Path(spec).expanduser()
    if spec.lower().endswith(".csv"):
        if not as_file.is_file():
            raise InputError(spec, "--pred-pattern names a CSV mapping that does not exist")
        return match_csv(folder, as_file), f"mapping {as_file.resolve()}"
    return match_template(folder, Template(spec, task), ref_ids), spec
