"""Reference baselines: the bounds every metric is sanity-checked against.

Each serves both tasks under one name:

========== ============================= ==================================
name       video-to-audio                audio-to-video
========== ============================= ==================================
oracle     the clip's own audio          the clip's own video
shuffled   another clip's audio          another clip's video
silence    all-zero audio                the clip's first frame, held
noise      white noise (std 0.1)         uniform random pixels
========== ============================= ==================================

"shuffled" uses a deterministic derangement of the dataset's clip ids (no clip keeps
its own media), seeded by the run seed, so it is the same on every machine. Media are
cut or zero-padded (audio) / last-frame-held (video) to the requested duration.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench import media
from foleybench.api import A2VRequest, AudioOutput, FoleybenchError, Generator, V2ARequest, VideoOutput
from foleybench.datasets.base import Manifest


def derangement(ids: Sequence[str], seed: int) -> dict[str, str]:
    """A seeded permutation of ``ids`` with no fixed point (Sattolo's cycle).

    Sattolo's algorithm yields a single cycle, so every clip maps to a different one
    whenever there are at least two clips.
    """
    ids = sorted(ids)
    if len(ids) < 2:
        raise FoleybenchError("the shuffled baseline needs at least two clips")
    rng = np.random.default_rng(seed)
    perm = list(range(len(ids)))
    for i in range(len(ids) - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return {ids[i]: ids[perm[i]] for i in range(len(ids))}


def fit_audio(samples: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad [C, N] audio to n samples."""
    if samples.shape[1] >= n:
        return samples[:, :n]
    return np.pad(samples, ((0, 0), (0, n - samples.shape[1])))


def fit_video(frames: np.ndarray, t: int) -> np.ndarray:
    """Cut [T, H, W, 3] frames to t, or hold the last frame."""
    if frames.shape[0] >= t:
        return frames[:t]
    return np.concatenate([frames, np.repeat(frames[-1:], t - frames.shape[0], axis=0)])


class ReferenceBaseline(Generator):
    """Base of the four reference baselines; ``task`` is chosen at construction."""

    kind = "reference"

    def __init__(self, task: str = "v2a", dataset: Manifest | None = None, seed: int = 0, **_: Any):
        if task not in ("v2a", "a2v"):
            raise FoleybenchError(f"unknown task {task!r} (v2a or a2v)")
        self.task = task  # type: ignore[misc]
        self.dataset = dataset
        self.seed = seed

    def params(self) -> dict[str, Any]:
        return {"baseline": self.name, "task": self.task, "seed": self.seed}

    def _need_dataset(self) -> Manifest:
        if self.dataset is None:
            raise FoleybenchError(f"baseline {self.name!r} needs the reference dataset")
        return self.dataset

    def _audio_of(self, clip_id: str, req: V2ARequest) -> np.ndarray:
        rec = self._need_dataset()[clip_id]
        clip = media.read_audio(rec.audio_source, sample_rate=req.sample_rate)
        return fit_audio(clip.samples, int(round(req.duration_s * req.sample_rate)))

    def _video_of(self, clip_id: str, req: A2VRequest) -> tuple[np.ndarray, float]:
        rec = self._need_dataset()[clip_id]
        clip = media.read_video(rec.video, duration_s=req.duration_s)
        return fit_video(clip.frames, int(round(req.duration_s * clip.fps))), clip.fps

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        out = []
        for req in requests:
            if self.task == "v2a":
                out.append(AudioOutput(req.clip_id, self.audio(req).astype(np.float32), req.sample_rate))
            else:
                frames, fps = self.video(req)
                out.append(VideoOutput(req.clip_id, frames, fps))
        return out

    def audio(self, req: V2ARequest) -> np.ndarray:  # [C, N]
        raise NotImplementedError

    def video(self, req: A2VRequest) -> tuple[np.ndarray, float]:  # [T, H, W, 3], fps
        raise NotImplementedError


class Oracle(ReferenceBaseline):
    name = "oracle"

    def audio(self, req: V2ARequest) -> np.ndarray:
        return self._audio_of(req.clip_id, req)

    def video(self, req: A2VRequest) -> tuple[np.ndarray, float]:
        return self._video_of(req.clip_id, req)


class Shuffled(ReferenceBaseline):
    name = "shuffled"

    def _other(self, clip_id: str) -> str:
        if not hasattr(self, "_map"):
            self._map = derangement(self._need_dataset().ids(), self.seed)
        return self._map[clip_id]

    def audio(self, req: V2ARequest) -> np.ndarray:
        return self._audio_of(self._other(req.clip_id), req)

    def video(self, req: A2VRequest) -> tuple[np.ndarray, float]:
        frames, fps = self._video_of(self._other(req.clip_id), req)
        h, w = req.size
        if frames.shape[1:3] != (h, w):  # another clip may have another size: match the request
            import cv2

            frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
        return frames, fps


class Silence(ReferenceBaseline):
    """V2A: silence. A2V: the clip's first frame, held (the "static" baseline)."""

    name = "silence"

    def audio(self, req: V2ARequest) -> np.ndarray:
        return np.zeros((1, int(round(req.duration_s * req.sample_rate))), np.float32)

    def video(self, req: A2VRequest) -> tuple[np.ndarray, float]:
        frames, fps = self._video_of(req.clip_id, req)
        return np.repeat(frames[:1], frames.shape[0], axis=0), fps


class Noise(ReferenceBaseline):
    name = "noise"

    def audio(self, req: V2ARequest) -> np.ndarray:
        rng = np.random.default_rng(req.seed)
        n = int(round(req.duration_s * req.sample_rate))
        return np.clip(rng.normal(0.0, 0.1, (1, n)), -1, 1).astype(np.float32)

    def video(self, req: A2VRequest) -> tuple[np.ndarray, float]:
        rng = np.random.default_rng(req.seed)
        t = max(1, int(round(req.duration_s * req.fps)))
        h, w = req.size
        return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8), req.fps
