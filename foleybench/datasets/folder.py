"""A folder of clips as a dataset: the bring-your-own-samples path.

``DIR/manifest.csv`` is used when present (a foleybench manifest). Otherwise every
``*.mp4`` (and ``*.wav``/``*.flac`` of the same stem as lossless audio, or alone for
audio-only sets) becomes one clip whose id is the file stem. Nothing is guessed from
file names beyond the stem: pairing with predictions is by that id.
"""
from __future__ import annotations

from pathlib import Path

from foleybench.api import InputError
from foleybench.datasets.base import ClipRecord, Manifest

VIDEO_EXT = (".mp4", ".mkv", ".mov", ".webm", ".avi")
AUDIO_EXT = (".wav", ".flac")


def folder_manifest(root: str | Path, split: str | None = None) -> Manifest:
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise InputError(str(root), "reference folder not found")
    if (root / "manifest.csv").is_file():
        return Manifest.read(root / "manifest.csv", name=root.name).split(split)
    videos = {p.stem: p for p in sorted(root.iterdir()) if p.suffix.lower() in VIDEO_EXT}
    audios = {p.stem: p for p in sorted(root.iterdir()) if p.suffix.lower() in AUDIO_EXT}
    ids = sorted(set(videos) | set(audios))
    if not ids:
        raise InputError(str(root), f"no media files ({', '.join(VIDEO_EXT + AUDIO_EXT)}) and no manifest.csv")
    recs = [ClipRecord(clip_id=i, video=str(videos[i]) if i in videos else None,
                       audio=str(audios[i]) if i in audios else None) for i in ids]
    return Manifest(recs, root, name=root.name)


class FolderDataset:
    def __init__(self, root: str | Path, **_: object):
        self.root = Path(root)

    def manifest(self, split: str | None = None) -> Manifest:
        return folder_manifest(self.root, split)
