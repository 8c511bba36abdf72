"""Pairing, validation and content checks: which clips a run scores, and why not the others.

Every rule here excludes and reports; none stops a run (docs/PROTOCOL.md, "Shared rules"):

- :func:`verify_hashes`: a manifest's ``sha256`` / ``audio_sha256`` columns against the
  files on disk (hashes cached by path, size and mtime); a mismatch excludes the clip.
- :func:`pair_clips`: predictions ``DIR/{clip_id}.ext`` by NFC clip id, or named by an
  explicit ``--pred-pattern``; dot-files and temp files (an interrupted write) are ignored;
  two files naming one id (and sample) are ambiguous.
- :func:`check_pairs` (and its older form :func:`validate`): every prediction decoded once,
  predictions and references checked for truncation (declared length vs. what is there,
  :mod:`foleybench.media_check`), and with a protocol length predictions that are too short
  excluded and longer ones counted as cut.

With ``--pred-pattern`` (:mod:`foleybench.pred_pattern`) a clip may have several samples:
one pair each (``ClipPair.sample``), reported as ``clip_id#k``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from foleybench import media
from foleybench.api import ClipPair, InputError
from foleybench.datasets.base import Manifest, normalize_id
from foleybench.datasets.folder import media_by_id, skipped_media
from foleybench.hashing import sha256_file_cached
from foleybench.media_check import check_complete, format_note, protocol_length, tolerance_s
from foleybench.pred_pattern import PATTERN_SUFFIXES
from foleybench.pred_pattern import match as match_predictions

PRED_EXT = {"v2a": (".wav", ".flac"), "a2v": (".mp4",)}


def verify_hashes(manifest: Manifest) -> Manifest:
    """``manifest`` less the clips whose files no longer match their declared sha256.

    The ``sha256`` column is the video's hash (the audio file's when a clip has no video),
    ``audio_sha256`` the lossless audio file's. The excluded clips join ``problems`` with
    the file and both hashes' first 12 characters. Missing files are left to the readers.
    """
    bad: dict[str, str] = {}
    for r in manifest:
        checks = [(r.video, r.sha256)] if r.video else [(r.audio, r.sha256)]
        if r.video and r.audio:
            checks.append((r.audio, r.audio_sha256))
        for path, declared in checks:
            if not (path and declared) or not os.path.isfile(path):
                continue
            actual = sha256_file_cached(path)
            if actual.lower() != declared.lower():
                bad[r.clip_id] = (f"{path}: content changed: sha256 {actual[:12]}… does not match the "
                                  f"manifest's {declared[:12]}…")
                break
    return manifest.without(bad) if bad else manifest


def pair_clips(task: str, pred_dir: str | Path, manifest: Manifest,
               pred_pattern: str | None = None) -> tuple[list[ClipPair], dict[str, Any]]:
    """Pairs of (prediction, reference) by clip id, and the ``pairing`` block of the results.

    Without ``pred_pattern`` a prediction is ``DIR/{clip_id}.wav|.flac`` (V2A) or ``.mp4``
    (A2V). With it (``--pred-pattern``), the files are named by that template or CSV
    mapping (:mod:`foleybench.pred_pattern`), possibly several samples per clip (one pair
    each, ``ClipPair.sample`` set), and every other file is listed as unmatched.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(str(pred_dir), "prediction folder not found" if not pred_dir.exists()
                         else "is a file, not a prediction folder")
    if pred_pattern is not None:
        return _pair_by_pattern(task, pred_dir, manifest, pred_pattern)
    preds, ambiguous = media_by_id(pred_dir, PRED_EXT[task])
    ref_ids = set(manifest.ids())
    known = ref_ids | set(manifest.problems)
    notes = list(manifest.notes)
    ignored = []
    for name, why in skipped_media(pred_dir, PRED_EXT[task]).items():
        cid = normalize_id(Path(name).stem)
        if cid in ref_ids and not why.startswith(("a hidden", "a temporary")) and cid not in preds:
            ambiguous[cid] = f"{name} is {why}" if why.startswith("a ") else f"{name}: {why}"
        else:
            ignored.append(f"{name} ({why})")
    if ignored:
        notes.append(f"{pred_dir}: {len(ignored)} file(s) not read as predictions: {', '.join(ignored[:10])}"
                     + (" ..." if len(ignored) > 10 else ""))
    unpaired = sorted(set(preds) - known)
    missing = sorted(ref_ids - set(preds) - set(ambiguous))
    pairs = []
    for rec in manifest:
        if rec.clip_id not in preds:
            continue
        p = str(preds[rec.clip_id])
        pairs.append(ClipPair(rec.clip_id, task, pred_audio=p if task == "v2a" else None,
                              pred_video=p if task == "a2v" else None, ref_audio=rec.audio_source,
                              ref_video=rec.video, label=rec.label))
    if not pairs:
        want = "/".join(PRED_EXT[task])
        hint = _pattern_hint(pred_dir, task)
        raise InputError(str(pred_dir), f"no {want} file matches a reference clip id "
                         f"({len(preds)} predictions, {len(ref_ids)} reference clips; e.g. "
                         f"pred {sorted(preds)[:3]} vs ref {sorted(ref_ids)[:3]}){hint}")
    unmatched = {preds[c].name: "no reference clip with this id" for c in unpaired}
    return pairs, {"n_pairs": len(pairs), "unpaired_pred": unpaired, "missing_pred": missing,
                   "invalid_pred": {c: f"{pred_dir}: {why}" for c, why in sorted(ambiguous.items())},
                   "excluded_ref": dict(sorted(manifest.problems.items())), "notes": notes,
                   "pred_pattern": None, "n_files_matched": len(pairs), "n_files_unmatched": len(unmatched),
                   "unmatched_files": dict(sorted(unmatched.items()))}


def _pattern_hint(pred_dir: Path, task: str) -> str:
    """When the default names find nothing but other media are there: say how to name them."""
    others = sorted({p.suffix.lower() for p in pred_dir.iterdir()
                     if p.is_file() and p.suffix.lower() in PATTERN_SUFFIXES[task]} - set(PRED_EXT[task]))
    if not others:
        return ""
    return (f"; the folder holds {', '.join(others)} files: name them with --pred-pattern, e.g. "
            f"--pred-pattern '{{id}}{others[0]}' or '{{id}}_{{k}}{others[0]}' for several samples per clip")


def _pair_by_pattern(task: str, pred_dir: Path, manifest: Manifest,
                     spec: str) -> tuple[list[ClipPair], dict[str, Any]]:
    ref_ids = set(manifest.ids())
    found, rule = match_predictions(pred_dir, spec, task, ref_ids)
    unmatched = dict(found.unmatched)
    unpaired: set[str] = set()
    pairs = []
    by_id = {rec.clip_id: rec for rec in manifest}
    for cid, files in sorted(found.files.items()):
        rec = by_id.get(cid)
        if rec is None:
            why = (f"reference clip {cid!r} is excluded: {manifest.problems[cid]}" if cid in manifest.problems
                   else f"no reference clip with id {cid!r}")
            unmatched.update({f.rel: why for f in files})
            if cid not in manifest.problems:
                unpaired.add(cid)
            continue
        for f in files:
            p = str(f.path)
            pairs.append(ClipPair(cid, task, pred_audio=p if task == "v2a" else None,
                                  pred_video=p if task == "a2v" else None, ref_audio=rec.audio_source,
                                  ref_video=rec.video, label=rec.label, sample=f.sample))
    n_files = len(pairs) + len(unmatched)
    if not pairs:
        raise InputError(str(pred_dir), f"no file matches a reference clip under --pred-pattern {rule!r} "
                         f"({n_files} media files, {len(ref_ids)} reference clips; e.g. "
                         f"{[f'{k}: {v}' for k, v in list(sorted(unmatched.items()))[:2]]})")
    paired_ids = {p.clip_id for p in pairs}
    return pairs, {"n_pairs": len(pairs), "unpaired_pred": sorted(unpaired),
                   "missing_pred": sorted(ref_ids - paired_ids),
                   "invalid_pred": {}, "excluded_ref": dict(sorted(manifest.problems.items())),
                   "notes": list(manifest.notes), "pred_pattern": rule,
                   "n_files_matched": len(pairs), "n_files_unmatched": len(unmatched),
                   "unmatched_files": dict(sorted(unmatched.items())), "ignored_files": found.ignored}


def sample_key(p: ClipPair) -> str:
    """How a prediction is named in reports: its clip id, or ``clip_id#k`` for sample k."""
    return p.clip_id if p.sample is None else f"{p.clip_id}#{p.sample}"


def _check_pred(p: ClipPair, want_length: bool) -> tuple[str | None, float | None, float]:
    """(warning (silence) or None, length in s (None when not asked for), one sample or
    frame in s) of the prediction, or raise InputError when it cannot be scored."""
    path = p.pred_audio if p.task == "v2a" else p.pred_video
    check_complete(path)
    if p.task == "v2a":
        from foleybench.media_long import scan_audio

        scan = scan_audio(path)  # streamed: a long prediction is never held whole
        warn = format_note(path)
        if scan.peak <= media.SILENT_EPS:
            warn = _join(warn, f"{path}: audio is silent")
        elif scan.mono_peak <= media.SILENT_EPS:  # what is scored is the mono mix
            warn = _join(warn, f"{path}: audio is silent once its {scan.channels} channels are mixed to mono "
                               "(they cancel)")
        return warn, scan.seconds, 1.0 / scan.sample_rate
    media.read_video(path, max_frames=2)
    info = media.probe(path)  # headers only: the length rule, or the short-prediction warning
    fps = info.fps or 0.0
    length = info.n_frames / fps if info.n_frames and fps else info.duration_s
    return None, length, (1.0 / fps if fps else 0.0)


def _reason(exc: Exception) -> str:
    """An exclusion reason: an InputError's own text, an OSError's file and problem."""
    if isinstance(exc, OSError) and not isinstance(exc, InputError):
        return f"{exc.filename or '?'}: unreadable ({exc.strerror or exc})"
    return str(exc)


def _join(a: str | None, b: str) -> str:
    return f"{a}; {b}" if a else b


def _ref_seconds(p: ClipPair, known: dict[str, float]) -> float | None:
    """The reference clip's length: the manifest's ``duration_s``, else its audio (V2A
    compares with it; A2V is conditioned on it) or video read from the headers."""
    if known.get(p.clip_id):
        return known[p.clip_id]
    try:
        return media.probe(p.ref_audio or p.ref_video or "").duration_s
    except InputError:
        return None


@dataclass
class Checked:
    """What :func:`check_pairs` found. Keys of ``invalid``, ``warnings``, ``short`` and
    ``cut`` are :func:`sample_key`; ``invalid_ref`` is by clip id."""

    good: list[ClipPair] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)
    invalid_ref: dict[str, str] = field(default_factory=dict)
    short: dict[str, str] = field(default_factory=dict)
    cut: list[str] = field(default_factory=list)


def check_pairs(pairs: Sequence[ClipPair], clip_seconds: float | None = None,
                ref_seconds: dict[str, float] | None = None) -> Checked:
    """Check each pair once: the references for truncation (once per clip, however many
    samples it has), each prediction decoded, and with ``clip_seconds`` the length rule
    (:func:`foleybench.media_check.protocol_length`): too short is excluded, longer is
    counted as cut. What else is wrong with a reference each metric reports as it reads it."""
    out = Checked()
    ref_ok: dict[str, str | None] = {}
    for p in pairs:
        if p.clip_id not in ref_ok:
            try:
                for ref in dict.fromkeys(f for f in (p.ref_video, p.ref_audio) if f):
                    check_complete(ref)
                ref_ok[p.clip_id] = None
            except (InputError, OSError) as exc:  # OSError: permission denied, I/O error... (one clip's)
                ref_ok[p.clip_id] = out.invalid_ref[p.clip_id] = _reason(exc)
        if ref_ok[p.clip_id] is not None:
            continue
        key = sample_key(p)
        try:
            warn, length, step = _check_pred(p, clip_seconds is not None)
        except (InputError, OSError) as exc:
            out.invalid[key] = _reason(exc)
            continue
        if clip_seconds is not None and length is not None:
            verdict, why = protocol_length(length, clip_seconds, _ref_seconds(p, ref_seconds or {}), step)
            if verdict == "short":
                out.short[key] = f"{p.pred_audio or p.pred_video}: {why}"
                continue
            if verdict == "cut":
                out.cut.append(key)
        elif length is not None:  # no protocol length: scored whole, but a short one is said
            ref_s = _ref_seconds(p, ref_seconds or {})
            if ref_s and ref_s - length > tolerance_s(ref_s):
                warn = _join(warn, f"{p.pred_audio or p.pred_video}: {length:.3f} s, shorter than its reference "
                                   f"({ref_s:.3f} s); scored whole (give --clip-seconds to exclude short ones)")
        if warn:
            out.warnings[key] = warn
        out.good.append(p)
    return out


def validate(pairs: Sequence[ClipPair]) -> tuple[list[ClipPair], dict[str, str], dict[str, str], dict[str, str]]:
    """Check each pair once: (good pairs, invalid predictions {id: reason}, warnings,
    invalid references {id: reason}); :func:`check_pairs` without the length rule."""
    c = check_pairs(pairs)
    return c.good, c.invalid, c.warnings, c.invalid_ref


def sample_counts(good: Sequence[ClipPair], checked: Checked, clip_seconds: float | None) -> dict[str, Any]:
    """The counts of the results' ``pairing`` block after validation: clips and files
    scored, samples per clip (a histogram), files whose clip's value is a mean over several
    samples (``n_averaged``), and the length rule's cut and excluded predictions."""
    per_clip: dict[str, int] = {}
    for p in good:
        per_clip[p.clip_id] = per_clip.get(p.clip_id, 0) + 1
    hist: dict[str, int] = {}
    for n in per_clip.values():
        hist[str(n)] = hist.get(str(n), 0) + 1
    rule = ("none: no protocol length (--clip-seconds), every prediction scored whole" if clip_seconds is None else
            f"protocol length {clip_seconds:g} s: longer predictions are cut to it; shorter than "
            "min(protocol length, reference length) less max(0.1 s, 1 %) are excluded")
    return {"n_scored_pairs": len(per_clip), "n_clips": len(per_clip), "n_files_scored": len(good),
            "samples_per_clip": dict(sorted(hist.items(), key=lambda kv: int(kv[0]))),
            "n_averaged": sum(n for n in per_clip.values() if n > 1),
            "n_clips_averaged": sum(n > 1 for n in per_clip.values()),
            "length_rule": rule, "n_cut": len(checked.cut), "cut": sorted(checked.cut),
            "n_excluded_length": len(checked.short), "excluded_length": dict(sorted(checked.short.items()))}
