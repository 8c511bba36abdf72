"""Pairing, validation and content checks: which clips a run scores, and why not the others.

Every rule here excludes and reports; none stops a run (docs/PROTOCOL.md, "Shared rules"):

- :func:`verify_hashes`: a manifest's ``sha256`` / ``audio_sha256`` columns against the
  files on disk (hashes cached by path, size and mtime); a mismatch excludes the clip.
- :func:`pair_clips`: predictions ``DIR/{clip_id}.ext`` by NFC clip id; dot-files and
  temp files (an interrupted write) are ignored; two files naming one id are ambiguous.
- :func:`validate`: every prediction decoded once, and predictions and references checked
  for truncation (declared length vs. what is there, :mod:`foleybench.media_check`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from foleybench import media
from foleybench.api import ClipPair, InputError
from foleybench.datasets.base import Manifest
from foleybench.datasets.folder import media_by_id
from foleybench.hashing import sha256_file_cached
from foleybench.media_check import check_complete

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


def pair_clips(task: str, pred_dir: str | Path, manifest: Manifest) -> tuple[list[ClipPair], dict[str, Any]]:
    """Pairs of (prediction, reference) by clip id, and the ``pairing`` block of the results."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(str(pred_dir), "prediction folder not found" if not pred_dir.exists()
                         else "is a file, not a prediction folder")
    preds, ambiguous = media_by_id(pred_dir, PRED_EXT[task])
    ref_ids = set(manifest.ids())
    known = ref_ids | set(manifest.problems)
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
        raise InputError(str(pred_dir), f"no {want} file matches a reference clip id "
                         f"({len(preds)} predictions, {len(ref_ids)} reference clips; e.g. "
                         f"pred {sorted(preds)[:3]} vs ref {sorted(ref_ids)[:3]})")
    return pairs, {"n_pairs": len(pairs), "unpaired_pred": unpaired, "missing_pred": missing,
                   "invalid_pred": {c: f"{pred_dir}: {why}" for c, why in sorted(ambiguous.items())},
                   "excluded_ref": dict(sorted(manifest.problems.items())), "notes": list(manifest.notes)}


def _check_pred(p: ClipPair) -> str | None:
    """A warning for the prediction (silence), or raise InputError when it cannot be scored."""
    path = p.pred_audio if p.task == "v2a" else p.pred_video
    check_complete(path)
    if p.task == "v2a":
        clip = media.read_audio(path)
        if media.is_silent(clip.samples):
            return f"{path}: audio is silent"
        return None
    media.read_video(path, max_frames=2)
    return None


def validate(pairs: Sequence[ClipPair]) -> tuple[list[ClipPair], dict[str, str], dict[str, str], dict[str, str]]:
    """Check each pair once: (good pairs, invalid predictions {id: reason}, warnings,
    invalid references {id: reason}). References are checked for truncation only; what
    else is wrong with them each metric reports as it reads them."""
    good, bad, warn, bad_ref = [], {}, {}, {}
    for p in pairs:
        try:
            for ref in dict.fromkeys(f for f in (p.ref_video, p.ref_audio) if f):
                check_complete(ref)
        except InputError as exc:
            bad_ref[p.clip_id] = str(exc)
            continue
        try:
            w = _check_pred(p)
        except InputError as exc:
            bad[p.clip_id] = str(exc)
            continue
        if w:
            warn[p.clip_id] = w
        good.append(p)
    return good, bad, warn, bad_ref
