"""A folder of clips as a dataset: the bring-your-own-samples path.

``DIR/manifest.csv`` is used when present (a foleybench manifest). Otherwise every
``*.mp4`` (and ``*.wav``/``*.flac`` of the same stem as lossless audio, or alone for
audio-only sets) becomes one clip whose id is the file stem. Nothing is guessed from
file names beyond the stem: pairing with predictions is by that id (in Unicode NFC).
Two files that would give one clip the same role (``x.wav`` and ``x.flac``, or ``x.mp4``
in NFD and NFC forms) leave the clip out, listed in the manifest's ``problems``: which
one is meant cannot be known. Dot-files and temp files (``*.part``, ``*.tmp``) are not clips.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from foleybench.api import InputError
from foleybench.datasets.base import ClipRecord, Manifest, normalize_id

VIDEO_EXT = (".mp4", ".mkv", ".mov", ".webm", ".avi")
AUDIO_EXT = (".wav", ".flac")


def folder_manifest(root: str | Path, split: str | None = None) -> Manifest:
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise InputError(str(root), "reference folder not found")
    if (root / "manifest.csv").is_file():
        return Manifest.read(root / "manifest.csv", name=root.name).split(split)
    videos, vprob = media_by_id(root, VIDEO_EXT)
    audios, aprob = media_by_id(root, AUDIO_EXT)
    problems = {**vprob, **aprob}
    notes = []
    for name, why in skipped_media(root, VIDEO_EXT + AUDIO_EXT).items():
        cid = normalize_id(Path(name).stem)
        if why.startswith(("a hidden", "a temporary")) or cid in problems:
            notes.append(f"{root / name}: {why}; not a clip")
        else:  # a folder or broken link under a clip's name: that clip is listed, not lost silently
            problems[cid] = f"{root / name}: {why}"
    ids = sorted((set(videos) | set(audios)) - set(problems))
    if not ids:
        if problems:
            raise InputError(str(root), f"no usable clip: {next(iter(problems.values()))}")
        raise InputError(str(root), f"no media files ({', '.join(VIDEO_EXT + AUDIO_EXT)}) and no manifest.csv")
    recs = [ClipRecord(clip_id=i, video=str(videos[i]) if i in videos else None,
                       audio=str(audios[i]) if i in audios else None) for i in ids]
    return Manifest(recs, root, name=root.name, problems=problems, notes=notes)


TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", "~")


def is_temp_or_hidden(p: Path) -> bool:
    """Dot-files and temp names of interrupted writes/downloads: never media of a set."""
    return p.name.startswith(".") or p.name.lower().endswith(TEMP_SUFFIXES)


def skipped_media(folder: Path, exts: tuple[str, ...]) -> dict[str, str]:
    """{name: why} for the entries of ``folder`` with a media extension that
    :func:`media_by_id` does not read: dot-files, temp files, folders, broken or looping
    symbolic links and other non-regular files. Callers list them (nothing is dropped
    without a word)."""
    out: dict[str, str] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in exts and not (is_temp_or_hidden(p) and any(
                e in p.name.lower() for e in exts)):
            continue
        if is_temp_or_hidden(p):
            out[p.name] = ("a hidden file (its name starts with '.')" if p.name.startswith(".")
                           else "a temporary file (an interrupted write or download)")
            continue
        try:
            st = p.stat()
        except OSError as exc:
            is_link = p.is_symlink()
            out[p.name] = (("a symbolic link loop" if exc.errno == 40 else f"a broken symbolic link (to "
                            f"{os.readlink(p)})") if is_link else f"unreadable ({exc.strerror})")
            continue
        if stat.S_ISDIR(st.st_mode):
            out[p.name] = "a folder, not a file"
        elif not stat.S_ISREG(st.st_mode):
            out[p.name] = "not a regular file"
    return out


def media_by_id(folder: Path, exts: tuple[str, ...]) -> tuple[dict[str, Path], dict[str, str]]:
    """({NFC id: file}, {id: why it is ambiguous}) for the files of ``folder`` with one of
    ``exts``; an id that two files claim is in the second dict only."""
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in exts and not is_temp_or_hidden(p) and p.is_file():
            found.setdefault(normalize_id(p.stem), []).append(p)
    one = {cid: ps[0] for cid, ps in found.items() if len(ps) == 1}
    amb = {cid: f"ambiguous: {len(ps)} files give clip id {cid!r} ({', '.join(p.name for p in ps)}); "
                "keep one" for cid, ps in found.items() if len(ps) > 1}
    return one, amb


class FolderDataset:
    def __init__(self, root: str | Path, **_: object):
        self.root = Path(root)

    def manifest(self, split: str | None = None) -> Manifest:
        return folder_manifest(self.root, split)
