"""AV-Align (TempoTokens ``av_align.py``, 2025 revision): audio onsets vs optical-flow peaks.

Protocol, pinned to the reference script after its February 2025 fix (TempoTokens issue
#11: one-to-one matching; static-scene threshold 0.1):

- video: every frame, grayscale at native resolution (ITU-R 601 luma, as OpenCV's
  RGB/BGR->GRAY), Farneback flow ``(prev, next, None, 0.5, 3, 15, 3, 5, 1.2, 0)``, mean
  flow magnitude per consecutive pair; the first pair's value is duplicated, so the curve
  has one value per frame. Peaks: strict local maxima with value >= 0.1 at time i / fps,
  fps being the file's own frame rate.
- audio: mono (channel mean), resampled to 22050 Hz with soxr_hq (what ``librosa.load``
  does by default), ``librosa.onset.onset_detect`` defaults (hop 512); times in seconds.
- matching: each audio peak, in order, takes the first unused video peak v with
  v - 1/fps < a < v + 1/fps (open window). Score = matches / (|A| + |V| - matches).

Deviation: the reference divides by zero when neither stream has a peak; here the score
is None with a reason, and callers exclude the clip.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np

from foleybench.api import InputError

AUDIO_SR = 22050  # librosa.load's default rate, used by the reference
FLOW_PARAMS = (0.5, 3, 15, 3, 5, 1.2, 0)  # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
PEAK_THRESHOLD = 0.1  # mean flow magnitude (pixels/frame) below which a maximum is ignored
PROTOCOL = (
    "TempoTokens av_align.py 2025: Farneback(0.5,3,15,3,5,1.2,0), peak>=0.1, "
    "librosa onsets @22050, one-to-one open window 1/fps"
)


@dataclass
class AVAlignResult:
    """One clip's AV-Align. score in [0, 1], or None with ``reason`` when no peaks at all.

    audio_peaks / video_peaks: times in seconds; fps: the video's frame rate (frames/s).
    """

    score: float | None
    reason: str | None
    n_audio_peaks: int
    n_video_peaks: int
    n_matches: int
    audio_peaks: np.ndarray = field(repr=False)
    video_peaks: np.ndarray = field(repr=False)
    fps: float


# ----------------------------------------------------------------------------- pure pieces
def flow_curve(gray_frames: Iterable[np.ndarray]) -> np.ndarray:
    """Mean Farneback flow magnitude per frame, float64 ``[T]`` (pixels per frame).

    gray_frames: T >= 2 uint8 ``[H, W]`` frames (an array ``[T, H, W]`` or any iterable,
    consumed one frame at a time). Value i (i >= 1) is the flow from frame i-1 to i; value 0
    repeats value 1, as the reference does.
    """
    values: list[float] = []
    prev: np.ndarray | None = None
    for frame in gray_frames:
        cur = np.ascontiguousarray(frame)
        if cur.ndim != 2 or cur.dtype != np.uint8:
            raise ValueError(f"gray frames must be uint8 [H, W], got {cur.dtype} {cur.shape}")
        if prev is not None:
            if cur.shape != prev.shape:
                raise ValueError(f"frame size changed from {prev.shape} to {cur.shape}")
            flow = cv2.calcOpticalFlowFarneback(prev, cur, None, *FLOW_PARAMS)
            mag = cv2.magnitude(flow[..., 0], flow[..., 1])
            # cv2.mean accumulates in double, as the reference does; np.mean on float32
            # would sum in float32 and drift in the last digits on 1280x720 frames.
            values.append(cv2.mean(mag)[0])
        prev = cur
    if not values:
        raise ValueError("optical flow needs at least 2 frames")
    return np.array([values[0]] + values, dtype=np.float64)


def video_peaks(curve: np.ndarray, fps: float) -> np.ndarray:
    """Times (s) of strict local maxima of ``curve [T]`` with value >= 0.1: i / fps."""
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 1:
        raise ValueError(f"curve must be 1-D, got shape {c.shape}")
    if c.size < 3:
        return np.zeros(0, dtype=np.float64)
    mid = c[1:-1]
    is_peak = (c[:-2] < mid) & (mid > c[2:]) & (mid >= PEAK_THRESHOLD)
    return (np.flatnonzero(is_peak) + 1) / float(fps)


def audio_onsets(samples: np.ndarray, sr: int) -> np.ndarray:
    """Onset times (s) of audio ``samples`` (``[C, N]`` or ``[N]`` float, at ``sr`` Hz).

    Downmix and resampling follow ``librosa.load(path)`` (channel mean, then soxr_hq to
    22050 Hz), then ``onset_strength`` + ``onset_detect`` with librosa defaults.
    """
    import librosa

    y = np.asarray(samples, dtype=np.float32)
    if y.ndim == 2:
        y = librosa.to_mono(y)
    elif y.ndim != 1:
        raise ValueError(f"audio must be [C, N] or [N], got shape {y.shape}")
    y = librosa.resample(y, orig_sr=int(sr), target_sr=AUDIO_SR, res_type="soxr_hq")
    env = librosa.onset.onset_strength(y=y, sr=AUDIO_SR)
    frames = librosa.onset.onset_detect(onset_envelope=env, sr=AUDIO_SR)
    return np.asarray(librosa.frames_to_time(frames, sr=AUDIO_SR), dtype=np.float64)


def match_peaks(audio_times: Iterable[float], video_times: Iterable[float], fps: float) -> int:
    """Count one-to-one matches: each audio time, in order, takes the first unused video
    time v with v - 1/fps < a < v + 1/fps (both edges open)."""
    vids = [float(v) for v in video_times]
    used = [False] * len(vids)
    win = 1.0 / float(fps)
    matches = 0
    for a in audio_times:
        for j, v in enumerate(vids):
            if not used[j] and v - win < a < v + win:
                used[j] = True
                matches += 1
                break
    return matches


def av_align_score(audio_times: Iterable[float], video_times: Iterable[float], fps: float) -> float | None:
    """matches / (|A| + |V| - matches); None when both lists are empty."""
    a, v = list(audio_times), list(video_times)
    if not a and not v:
        return None
    m = match_peaks(a, v, fps)
    return m / (len(a) + len(v) - m)


# ----------------------------------------------------------------------------- I/O
def _read_gray_frames(path: str | os.PathLike) -> tuple[Iterable[np.ndarray], float]:
    """Decode every frame of ``path``; return (lazy grayscale uint8 [H, W] frames, fps)."""
    from foleybench.media import read_video

    clip = read_video(path)  # uint8 [T, H, W, 3] RGB at the file's average fps
    # Convert lazily, one frame per flow step, so only the RGB array is held in memory.
    return (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.frames), float(clip.fps)


def _read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode the first audio track of ``path`` at its native rate: (float32 [C, N], Hz)."""
    from foleybench.media import read_audio

    clip = read_audio(path)
    return clip.samples, int(clip.sample_rate)


def av_align(video_path: str | os.PathLike, audio_path: str | os.PathLike) -> AVAlignResult:
    """AV-Align of one clip: video peaks from ``video_path``, onsets from ``audio_path``
    (which may be the same mp4). Raises :class:`InputError` on unreadable input."""
    frames, fps = _read_gray_frames(video_path)
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(str(video_path), f"invalid frame rate {fps}")
    try:
        curve = flow_curve(frames)
    except ValueError as e:
        raise InputError(str(video_path), str(e)) from e
    v = video_peaks(curve, fps)
    samples, sr = _read_audio(audio_path)
    a = audio_onsets(samples, sr)
    m = match_peaks(a, v, fps)
    if len(a) + len(v) == 0:  # the reference divides by zero here
        return AVAlignResult(None, "no audio onsets and no video flow peaks (AV-Align undefined)",
                             0, 0, 0, a, v, fps)
    return AVAlignResult(m / (len(a) + len(v) - m), None, len(a), len(v), m, a, v, fps)
