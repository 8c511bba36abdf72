"""synthfoley: a procedural, deterministic audio-visual dataset with known event times.

Each clip is a small rendered scene (see :mod:`foleybench.datasets.synth_scenes`) whose
sound follows what is seen: impacts sound when they are shown, a passing car is as loud
as it is large. Ground-truth event times go into the manifest, so timing metrics
(AV-Align, onset accuracy) can be checked against an oracle, and a deranged pairing
(each video with another clip's audio) gives their chance level.

Files written by :func:`generate` into ``out_dir``:
  {clip_id}.mp4   H.264 video with AAC audio (what V2A models are given)
  {clip_id}.wav   the same audio, lossless PCM16; the manifest's ``audio`` column points
                  here because AAC's priming delay is close to AV-Align's +-1/fps window
  manifest.csv    :mod:`foleybench.datasets.base` columns: sha256 of the mp4's bytes,
                  audio_sha256 of the wav's, and content_sha256 of the decoded frames
                  and wav samples. The fingerprint uses the last: the mp4 bytes (its AAC
                  track) differ between machines, the decoded frames and wav do not.
  synth.json      config, seed, clip count and generator version; :class:`SynthFoley`
                  regenerates when it differs from what is asked for
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from foleybench.datasets.base import ClipRecord, Manifest
from foleybench.datasets.synth_scenes import SCENES
from foleybench.hashing import content_sha256, sha256_file

GENERATOR_VERSION = "1"          # bump whenever a renderer's output changes
MANIFEST_VERSION = 2             # 2: audio_sha256 and content_sha256 columns
CLASSES: tuple[str, ...] = tuple(SCENES)
MIN_FRAMES = 8                   # shortest clip: scenes need a few frames to show an event
NOISE_FLOOR = 3e-4               # RMS of the shared background noise (about -70 dBFS)


@dataclass(frozen=True)
class SynthConfig:
    """size: frame height = width in pixels; fps: frames/s; sample_rate: Hz;
    duration_s: seconds per clip, or (min, max) to draw each clip's length (rounded to
    whole frames); classes: scene names (from :data:`CLASSES`); test_fraction: share of
    each class's clips in the "test" split (the rest are "train")."""

    size: int = 64
    fps: float = 16.0
    sample_rate: int = 16000
    duration_s: float | tuple[float, float] = 3.0
    classes: tuple[str, ...] = CLASSES
    test_fraction: float = 0.5

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in SCENES]
        if unknown or not self.classes:
            raise ValueError(f"unknown synthfoley classes {unknown}; choose from {list(SCENES)}")
        if self.size < 32 or self.size % 2:
            raise ValueError(f"size must be even and >= 32 (H.264 4:2:0), got {self.size}")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be in [0, 1], got {self.test_fraction}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["duration_s"] = list(self.duration_s) if isinstance(self.duration_s, tuple) else self.duration_s
        return d


@dataclass(frozen=True)
class SynthClip:
    """frames: uint8 [T, H, W, 3] RGB at cfg.fps; audio: float32 [1, N] in [-1, 1] at
    cfg.sample_rate with N = T * sample_rate / fps; events: seconds; label: text."""

    frames: np.ndarray
    audio: np.ndarray
    events: tuple[float, ...]
    label: str


def _rng(seed: int, *key: int) -> np.random.Generator:
    # SeedSequence mixes (seed, key...) so clips get independent streams, and clip i is
    # the same whatever n_clips is.
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *map(int, key)])))


def render_clip(cls: str, seed: int, cfg: SynthConfig = SynthConfig()) -> SynthClip:
    """Render one clip of class ``cls``; the same (cls, seed, cfg) gives identical arrays."""
    if cls not in SCENES:
        raise ValueError(f"unknown synthfoley class {cls!r}; choose from {list(SCENES)}")
    rng = _rng(seed, CLASSES.index(cls) if cls in CLASSES else 0)
    dur = cfg.duration_s
    seconds = float(rng.uniform(*dur)) if isinstance(dur, (tuple, list)) else float(dur)
    n_frames = max(MIN_FRAMES, int(round(seconds * cfg.fps)))
    frames, audio, events, label = SCENES[cls](rng, n_frames, cfg.size, cfg.fps, cfg.sample_rate)
    audio = audio + NOISE_FLOOR * rng.standard_normal(len(audio))   # no digital silence
    peak = np.abs(audio).max()
    if peak > 0.95:                                                  # never clip
        audio *= 0.95 / peak
    frames8 = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return SynthClip(frames8, audio[None].astype(np.float32), tuple(k / cfg.fps for k in events), label)


def clip_plan(n_clips: int, cfg: SynthConfig) -> list[tuple[str, str, str]]:
    """(clip_id, class, split) per clip index: classes round-robin, and within a class the
    splits interleave so that test_fraction of them (rounded) are "test", first one test."""
    plan = []
    for i in range(n_clips):
        cls, j = cfg.classes[i % len(cfg.classes)], i // len(cfg.classes)
        f = cfg.test_fraction
        test = int(np.floor((j + 1) * f + 0.5)) > int(np.floor(j * f + 0.5))
        plan.append((f"synth_{cls}_{i:04d}", cls, "test" if test else "train"))
    return plan


def _meta(n_clips: int, seed: int, cfg: SynthConfig) -> dict:
    return {"generator": "synthfoley", "version": GENERATOR_VERSION, "manifest": MANIFEST_VERSION, "seed": int(seed),
            "n_clips": int(n_clips), "config": cfg.to_json()}


def generate(out_dir: str | Path, n_clips: int, seed: int = 0, cfg: SynthConfig = SynthConfig(),
             progress: bool = False) -> Manifest:
    """Render ``n_clips`` clips into ``out_dir`` (see the module docstring) and return the
    manifest. Old ``synth_*`` media not in the new plan are removed."""
    from foleybench.media import write_mp4, write_wav

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "synth.json").unlink(missing_ok=True)     # written last: marks a complete set
    plan = clip_plan(n_clips, cfg)
    keep = {f"{cid}{ext}" for cid, _, _ in plan for ext in (".mp4", ".wav")}
    for old in list(out.glob("synth_*.mp4")) + list(out.glob("synth_*.wav")):
        if old.name not in keep:
            old.unlink()
    from foleybench.progress import track

    it = track(enumerate(plan), len(plan), "synthfoley", "clip", enabled=progress)
    records = []
    for i, (cid, cls, split) in it:
        clip = render_clip(cls, int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0]), cfg)
        mp4 = write_mp4(out / f"{cid}.mp4", clip.frames, cfg.fps, clip.audio, cfg.sample_rate)
        wav = write_wav(out / f"{cid}.wav", clip.audio, cfg.sample_rate)
        records.append(ClipRecord(
            clip_id=cid, video=str(mp4.resolve()), audio=str(wav.resolve()), sha256=sha256_file(mp4),
            duration_s=clip.frames.shape[0] / cfg.fps, label=clip.label, split=split, events=clip.events,
            audio_sha256=sha256_file(wav), content_sha256=content_sha256(mp4, wav)))
    manifest = Manifest(records, out.resolve(), "synthfoley")
    manifest.write(out / "manifest.csv")
    (out / "synth.json").write_text(json.dumps(_meta(n_clips, seed, cfg), indent=2, sort_keys=True) + "\n")
    return manifest


class SynthFoley:
    """The registry's "synthfoley" dataset: generated on first use into ``root``, reused
    while ``root/synth.json`` matches (n_clips, seed, cfg, generator version)."""

    def __init__(self, root: str | Path, n_clips: int = 48, seed: int = 0, cfg: SynthConfig | None = None):
        self.root = Path(root)
        self.n_clips, self.seed, self.cfg = int(n_clips), int(seed), cfg or SynthConfig()

    def is_current(self) -> bool:
        """True when root holds a complete set made with this dataset's settings."""
        try:
            meta = json.loads((self.root / "synth.json").read_text())
        except (OSError, ValueError):
            return False
        return (self.root / "manifest.csv").is_file() and meta == _meta(self.n_clips, self.seed, self.cfg)

    def manifest(self, split: str | None = None) -> Manifest:
        if not self.is_current():
            generate(self.root, self.n_clips, self.seed, self.cfg)
        return Manifest.read(self.root / "manifest.csv", "synthfoley").split(split)
