"""VGGSound test set: the shipped manifest plus a user's folder of clips.

The manifest is VGGSound's ``test.csv`` (``{youtube_id}_{start:06d}.mp4,label``; shipped
in foleybench/data/vggsound, CC BY 4.0) or any file in that format; ``classes.csv``
validates labels and gives their category. Clips are looked up as ``ROOT/{file}``; a
lossless ``ROOT/{stem}.wav``/``.flac`` beside a clip is used for its audio when present.
Missing and unreadable clips are reported by id and count, never replaced.
"""
from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

from foleybench.api import InputError
from foleybench.datasets.base import ClipRecord, Manifest

PROTOCOL_SECONDS = 8.0  # av-benchmark's VGGSound V2A clip length


def _data(name: str) -> Path:
    return Path(str(resources.files("foleybench") / "data" / "vggsound" / name))


def read_classes(path: str | Path | None = None) -> dict[str, str]:
    """label -> category, from classes.csv (``label,count,category``)."""
    path = Path(path) if path else _data("classes.csv")
    with open(path, newline="") as f:
        return {row[0]: row[2] for row in csv.reader(f) if row}


def read_test_csv(path: str | Path | None = None) -> list[tuple[str, str]]:
    path = Path(path) if path else _data("test.csv")
    if not path.is_file():
        raise InputError(str(path), "VGGSound manifest not found")
    with open(path, newline="") as f:
        rows = [(r[0].strip(), r[1].strip()) for r in csv.reader(f) if r]
    for i, (name, _) in enumerate(rows, 1):
        if not name.endswith(".mp4"):
            raise InputError(f"{path}:{i}", f"expected '{{youtube_id}}_{{start:06d}}.mp4,label', got {name!r}")
    return rows


class VGGSound:
    def __init__(self, root: str | Path, manifest: str | Path | None = None,
                 classes: str | Path | None = None, **_: object):
        self.root = Path(root).expanduser().resolve()
        self.rows = read_test_csv(manifest)
        self.classes = read_classes(classes)
        self.missing: list[str] = []
        self.unknown_labels: list[str] = sorted({lab for _, lab in self.rows if lab not in self.classes})

    def manifest(self, split: str | None = None) -> Manifest:
        if not self.root.is_dir():
            raise InputError(str(self.root), "VGGSound clip folder not found")
        recs, self.missing = [], []
        for name, label in self.rows:
            stem = name[:-4]
            video = self.root / name
            if not video.is_file():
                self.missing.append(stem)
                continue
            audio = next((p for p in (self.root / f"{stem}.wav", self.root / f"{stem}.flac") if p.is_file()), None)
            recs.append(ClipRecord(clip_id=stem, video=str(video), audio=str(audio) if audio else None,
                                   duration_s=10.0, label=label, split="test",
                                   extra={"category": self.classes.get(label, "")}))
        if not recs:
            raise InputError(str(self.root), f"none of the {len(self.rows)} VGGSound test manifest clips "
                                             f"({{youtube_id}}_{{start:06d}}.mp4) is in this folder")
        return Manifest(recs, self.root, name="vggsound").split(split)

    def report(self) -> str:
        n = len(self.rows)
        lines = [f"VGGSound: {n - len(self.missing)} of {n} manifest clips present in {self.root}"]
        if self.missing:
            lines.append(f"  missing: {len(self.missing)} (e.g. {', '.join(self.missing[:5])})")
        if self.unknown_labels:
            lines.append(f"  labels not in classes.csv: {self.unknown_labels[:5]}")
        return "\n".join(lines)
