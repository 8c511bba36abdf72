"""Protocol preprocessing whose memory does not grow with the input's length.

:func:`load_preprocessed` gives exactly what ``preprocess_audio(read_audio(path), ...)``
gives (mono, DC removed over the *whole* file, resampled, cut to ``clip_seconds``), but
for a lossless file much longer than the protocol length it never holds the whole file:
the DC mean is accumulated block by block, and only ``clip_seconds`` plus a margin
wider than the resampler's filter is decoded and resampled. Without a protocol length,
a long lossless file is mixed to mono block by block (never held as [C, N] plus copies). A 10-minute prediction
then costs what an 8 s one does. Files within the margin take the plain path, so
protocol-length inputs are preprocessed exactly as before.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from foleybench import media

MARGIN_S = 1.0   # >> the sinc resampler's reach (6 zero crossings: a few ms at any rate)
_BLOCK = 1 << 18
LEAN_ABOVE_S = 60.0  # whole files longer than this are mixed to mono block by block


def _mono_blocks(p: Path) -> tuple[np.ndarray, int]:
    """The whole file as mono float32 ``[N]``, mixed block by block into one preallocated
    array: the same numbers as ``to_mono(read_audio(p).samples)`` without the [C, N] array,
    a list of blocks and their concatenation."""
    try:
        with sf.SoundFile(str(p)) as f:
            sr, frames = f.samplerate, f.frames
            mono = np.empty(frames, np.float32)
            at = 0
            for block in f.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True):
                m = media.to_mono(media.check_audio(block.T, p))[0]
                if at + m.shape[0] > frames:  # a header that declares fewer frames than decode
                    mono = np.concatenate([mono[:at], np.empty(at + m.shape[0] - frames, np.float32)])
                    frames = mono.shape[0]
                mono[at:at + m.shape[0]] = m
                at += m.shape[0]
    except (sf.LibsndfileError, RuntimeError) as e:
        from foleybench.api import InputError

        raise InputError(p, f"unreadable or corrupt audio file ({e})") from e
    if at == 0:
        media.check_audio(np.zeros((1, 0), np.float32), p)  # raises: zero-length audio
    return mono[:at], int(sr)


def _lean_preprocess(mono: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """``media.preprocess_audio(mono[None], sr, rate, None)`` for a long mono array, the same
    operations in place: the DC is subtracted from ``mono`` itself (the same float64 mean as
    ``media.remove_dc``) and the resampler runs block by block (``media.resample``)."""
    mono -= mono.mean(dtype=np.float64).astype(np.float32)
    return np.ascontiguousarray(media.resample(mono[None], sr, rate)[0], dtype=np.float32)


def load_preprocessed(path: str, rate: int, clip_seconds: float | None) -> np.ndarray:
    """float32 ``[N]``: the protocol's mono, DC-free, resampled, cut audio of ``path``."""
    p = Path(path)
    try:
        info = sf.info(str(p)) if p.suffix.lower() in (".wav", ".flac") else None
    except (sf.LibsndfileError, RuntimeError):
        info = None
    long_file = info is not None and info.frames > LEAN_ABOVE_S * info.samplerate
    if clip_seconds is None and long_file:
        mono, sr = _mono_blocks(p)
        return _lean_preprocess(mono, sr, rate)
    if clip_seconds is None or info is None or info.frames <= (clip_seconds + MARGIN_S) * info.samplerate:
        clip = media.read_audio(path)
        return media.preprocess_audio(clip.samples, clip.sample_rate, rate, clip_seconds)
    total, n = 0.0, 0
    try:
        with sf.SoundFile(str(p)) as f:
            for block in f.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True):
                media.check_audio(block.T, p)  # NaN/inf anywhere in the file still excludes it
                total += float(block.mean(axis=1, dtype=np.float64).sum(dtype=np.float64))
                n += block.shape[0]
    except (sf.LibsndfileError, RuntimeError) as e:
        from foleybench.api import InputError

        raise InputError(p, f"unreadable or corrupt audio file ({e})") from e
    mean = np.float32(total / max(n, 1))
    head = media.read_audio(path, duration_s=clip_seconds + MARGIN_S)
    mono = media.to_mono(head.samples) - mean
    x = media.resample(mono, head.sample_rate, rate)[0]
    return np.ascontiguousarray(x[: round(clip_seconds * rate)], dtype=np.float32)
