"""Decode, encode and resample media: the one place foleybench touches codecs.

Arrays follow :mod:`foleybench.api`: video uint8 ``[T, H, W, 3]`` RGB at ``fps`` frames/s;
audio float32 ``[C, N]`` in [-1, 1] at ``sample_rate`` Hz. Bad input raises
:class:`~foleybench.api.InputError` naming the file. Silent audio is *not* an error here
(the silence baseline writes it); callers report it with :func:`is_silent`.

Container notes (measured on the realclips set):
- AAC in mp4 carries 1024 priming samples hidden by an edit list, and stream-copied cuts
  (VGGSound) carry whole pre-roll packets/frames flagged "discard"; PyAV/FFmpeg drop both,
  so sample 0 / frame 0 are the edit list's t = 0. The trailing padding of the last AAC
  packet is *not* dropped by FFmpeg: we trim to the last packet's declared end.
- decord ignores such edit lists (it counts and seeks the hidden pre-roll frames, and its
  indexing then disagrees with its own sequential decode), so files whose first decord
  timestamp is < 0 are read with PyAV instead.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
import soundfile as sf

from .api import InputError

RESAMPLER = "torchaudio.functional.resample(sinc_interp_hann, lowpass_filter_width=6, rolloff=0.99)"
_SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
_AAC_SEEK_PREROLL_S = 0.1  # AAC frames overlap (MDCT): decode a little before start_s


@dataclass
class VideoClip:
    """frames: uint8 [T, H, W, 3] RGB; fps: frames per second (the file's average)."""

    frames: np.ndarray
    fps: float
    path: str | None = None


@dataclass
class AudioClip:
    """samples: float32 [C, N] in [-1, 1]; sample_rate in Hz."""

    samples: np.ndarray
    sample_rate: int
    path: str | None = None


@dataclass
class MediaInfo:
    """What a file holds. ``n_frames`` counts frames a reader returns (edit list applied);
    ``duration_s`` in seconds; fields of an absent stream are None."""

    path: str
    has_video: bool
    has_audio: bool
    fps: float | None
    n_frames: int | None
    width: int | None
    height: int | None
    duration_s: float | None
    sample_rate: int | None
    channels: int | None


# ----------------------------------------------------------------------------- checks
def check_audio(samples: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Validate float audio [C, N]: 2-D, non-empty, finite. Returns it as float32."""
    a = np.asarray(samples)
    if a.ndim != 2:
        raise InputError(path, f"audio must be [C, N], got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(path, f"zero-length audio (shape {a.shape})")
    if not np.all(np.isfinite(a)):
        raise InputError(path, f"audio has {int(np.size(a) - np.isfinite(a).sum())} NaN/inf samples")
    return a.astype(np.float32, copy=False)


def check_video(frames: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Validate video uint8 [T, H, W, 3] with T, H, W > 0."""
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise InputError(path, f"video must be [T, H, W, 3], got shape {f.shape}")
    if f.shape[0] == 0:
        raise InputError(path, "video has no frames")
    if f.shape[1] == 0 or f.shape[2] == 0:
        raise InputError(path, f"video frames are empty (shape {f.shape})")
    if f.dtype != np.uint8:
        raise InputError(path, f"video frames must be uint8, got {f.dtype}")
    return f


SILENT_EPS = 1e-8  # peak magnitude at or below which audio counts as silent


def is_silent(samples: np.ndarray, eps: float = SILENT_EPS) -> bool:
    """True when every sample's magnitude is <= eps (an empty array counts as silent)."""
    a = np.asarray(samples)
    return a.size == 0 or float(np.max(np.abs(a))) <= eps


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "file not found")
    if p.stat().st_size == 0:
        raise InputError(p, "empty file (0 bytes)")
    return p


def _open(p: Path) -> av.container.InputContainer:
    try:
        return av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as e:
        raise InputError(p, f"unreadable or corrupt container ({e})") from e


# ----------------------------------------------------------------------------- probe
def probe(path: str | os.PathLike) -> MediaInfo:
    """Read stream headers (no decode; may demux video packets to count frames exactly)."""
    p = _check_file(path)
    if p.suffix.lower() in _SOUNDFILE_SUFFIXES:
        try:
            i = sf.info(str(p))
            return MediaInfo(str(p), False, True, None, None, None, None,
                             i.frames / i.samplerate, int(i.samplerate), int(i.channels))
        except (sf.LibsndfileError, RuntimeError):
            pass  # not what the suffix says: let FFmpeg try
    with _open(p) as c:
        vs = c.streams.video[0] if c.streams.video else None
        as_ = c.streams.audio[0] if c.streams.audio else None
        if vs is None and as_ is None:
            raise InputError(p, "no audio or video stream")
        duration = c.duration / 1e6 if c.duration else None
        fps = n_frames = None
        if vs is not None:
            rate = vs.average_rate or vs.guessed_rate
            fps = float(rate) if rate else None
            n_frames = _count_frames(c, vs, fps)
        return MediaInfo(
            str(p), vs is not None, as_ is not None, fps, n_frames,
            vs.codec_context.width if vs else None, vs.codec_context.height if vs else None,
            duration, as_.codec_context.sample_rate if as_ else None,
            as_.codec_context.channels if as_ else None)


def _count_frames(c: av.container.InputContainer, vs: av.video.stream.VideoStream,
                  fps: float | None) -> int | None:
    # Header nb_frames counts pre-roll frames an edit list hides (306 vs 251 on a VGGSound
    # cut); trust it only when it matches duration * fps, else count non-discard packets.
    est = round(float(vs.duration * vs.time_base) * fps) if vs.duration and fps else None
    if vs.frames and est is not None and abs(vs.frames - est) <= 1:
        return int(vs.frames)
    n = sum(1 for pk in c.demux(vs) if pk.size and not pk.is_discard)
    return n or None


# ----------------------------------------------------------------------------- video
def read_video(path: str | os.PathLike, *, start_s: float = 0.0, duration_s: float | None = None,
               max_frames: int | None = None, backend: str = "auto",
               pick: Callable[[int, float], np.ndarray] | None = None) -> VideoClip:
    """Decode frames [start_s, start_s + duration_s) -> uint8 [T, H, W, 3] RGB.

    Frame i is the one shown at t = i / fps; start index round(start_s * fps), count
    round(duration_s * fps), capped by max_frames. Only the frames asked for are decoded
    (plus those from the preceding keyframe). backend: "decord", "pyav" or "auto"
    (decord, falling back to PyAV when decord is missing, fails, or mis-indexes the file).

    ``pick(n, fps) -> indices`` keeps only those frames of the span's ``n`` (the same frames
    as ``clip.frames[pick(len(clip.frames), clip.fps)]``): with decord only they are decoded
    and held, so sampling 8 frames of a 10-minute video costs what 8 frames cost; PyAV
    decodes the span and keeps the picked frames as it goes.
    """
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"backend must be auto, decord or pyav, not {backend!r}")
    p = _check_file(path)
    with _open(p) as c:  # validates the container and the stream before decord sees it
        if not c.streams.video:
            raise InputError(p, "no video stream")
    if backend != "pyav":
        try:
            return _read_video_decord(p, start_s, duration_s, max_frames, pick)
        except InputError:
            if backend == "decord":
                raise
        except Exception as e:  # decord raises its own DECORDError / RuntimeError types
            if backend == "decord":
                raise InputError(p, f"decord cannot read it ({e})") from e
    if pick is not None and _long_span(p, start_s, duration_s):
        return _read_video_pyav_picked(p, start_s, duration_s, max_frames, pick)
    clip = _read_video_pyav(p, start_s, duration_s, max_frames)
    if pick is None:
        return clip
    return VideoClip(clip.frames[np.asarray(pick(len(clip.frames), clip.fps), dtype=np.int64)], clip.fps, clip.path)


PICK_STREAM_ABOVE_S = 60.0  # PyAV route: a longer span is decoded twice rather than held


def _long_span(p: Path, start_s: float, duration_s: float | None) -> bool:
    """True when a span may be longer than :data:`PICK_STREAM_ABOVE_S` (the container
    declares more, or nothing, and no shorter ``duration_s`` caps it)."""
    if duration_s is not None and duration_s <= PICK_STREAM_ABOVE_S:
        return False
    secs = container_seconds(p)
    return secs is None or secs - start_s > PICK_STREAM_ABOVE_S


def iter_video(path: str | os.PathLike, batch: int = 32) -> tuple[float, Iterator[np.ndarray]]:
    """(fps, batches): every frame of ``path`` as uint8 ``[k, H, W, 3]`` RGB batches of at most
    ``batch`` frames, the same frames in the same order as ``read_video(path).frames``,
    never more than one batch held (a long video's frames would be GBs).

    The backend is chosen as :func:`read_video` chooses it (decord unless it is missing,
    cannot open the file or mis-indexes it; then PyAV). A decoder error after frames were
    yielded raises :class:`InputError` naming the file: the caller excludes the clip."""
    p = _check_file(path)
    with _open(p) as c:
        if not c.streams.video:
            raise InputError(p, "no video stream")
    try:
        import decord

        vr = decord.VideoReader(str(p), ctx=decord.cpu(0))
        n = len(vr)
        if n == 0:
            raise InputError(p, "video has no frames")
        if float(vr.get_frame_timestamp(0)[0]) < -1e-3:  # read_video falls back to PyAV here
            raise ValueError("decord mis-indexes this file")
        fps = float(vr.get_avg_fps())
    except InputError:
        raise
    except Exception:  # decord missing or unable: PyAV, as read_video
        return _iter_video_pyav(p, batch)

    def gen() -> Iterator[np.ndarray]:
        for lo in range(0, n, batch):
            try:
                frames = vr.get_batch(list(range(lo, min(n, lo + batch)))).asnumpy()
            except Exception as e:
                raise InputError(p, f"decord failed at frame {lo} ({e})") from e
            yield check_video(frames, p)

    return fps, gen()


def _iter_video_pyav(p: Path, batch: int) -> tuple[float, Iterator[np.ndarray]]:
    with _open(p) as c:
        vs = c.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate
        if not rate:
            raise InputError(p, "video stream has no frame rate")
        fps = float(rate)

    def gen() -> Iterator[np.ndarray]:
        got = 0
        with _open(p) as c:
            vs = c.streams.video[0]
            vs.thread_type = "AUTO"
            tb, t_start = vs.time_base, vs.start_time or 0
            buf: list[np.ndarray] = []
            try:
                for frame in c.decode(vs):
                    # frames before t = 0 (an edit list's pre-roll) are dropped, as read_video does
                    if frame.pts is not None and round(float((frame.pts - t_start) * tb) * fps) < 0:
                        continue
                    buf.append(frame.to_ndarray(format="rgb24"))
                    if len(buf) == batch:
                        got += len(buf)
                        yield check_video(np.stack(buf), p)
                        buf = []
            except av.error.FFmpegError as e:
                raise InputError(p, f"corrupt video stream ({e})") from e
            if buf:
                got += len(buf)
                yield check_video(np.stack(buf), p)
        if got == 0:
            raise InputError(p, "video has no frames")

    return fps, gen()


def container_seconds(path: str | os.PathLike) -> float | None:
    """The length the container's header declares (no decode; None when it declares none)."""
    with _open(_check_file(path)) as c:
        return c.duration / 1e6 if c.duration else None


@dataclass(frozen=True)
class PickedFrames:
    """Which frames ``read_video(path, duration_s=..., pick=...)`` would return, without
    decoding them: absolute frame indices (ascending) and the backend that numbers them
    that way. :func:`iter_picked` decodes them a few at a time."""

    path: str
    fps: float
    indices: np.ndarray
    backend: str  # "decord" or "pyav"

    def __len__(self) -> int:
        return len(self.indices)


def plan_picked(path: str | os.PathLike, *, duration_s: float | None,
                pick: Callable[[int, float], np.ndarray], backend: str = "auto") -> PickedFrames:
    """The frames :func:`read_video` with ``start_s=0`` and ``pick`` selects, decoding none
    of them. ``backend`` "auto" chooses as :func:`read_video` does (decord unless missing,
    unable or mis-indexing; then PyAV, its frames counted by one decoding pass); "pyav"
    reads with PyAV and takes the frame count from the headers (:func:`probe`: the declared
    count where it matches duration x fps, else the demuxed packets), no decoding pass.
    :func:`iter_picked`'s PyAV route decodes sequentially and holds one batch; its decord
    route seeks, and decord's seeking decoder grew resident memory with every call
    interleaved with other work (ImageBind on a 60-minute video: +210 MB)."""
    if backend not in ("auto", "pyav"):
        raise ValueError(f"backend must be auto or pyav, not {backend!r}")
    p = _check_file(path)
    with _open(p) as c:
        if not c.streams.video:
            raise InputError(p, "no video stream")
    if backend == "pyav":
        info = probe(p)
        if not info.fps:
            raise InputError(p, "video stream has no frame rate")
        if not info.n_frames:
            raise InputError(p, "video has no frames")
        return _plan(p, float(info.fps), int(info.n_frames), duration_s, pick, "pyav")
    try:
        import decord

        vr = decord.VideoReader(str(p), ctx=decord.cpu(0))
        n_all = len(vr)
        if n_all == 0:
            raise InputError(p, "video has no frames")
        if float(vr.get_frame_timestamp(0)[0]) < -1e-3:
            raise ValueError("decord mis-indexes this file")
        fps, backend = float(vr.get_avg_fps()), "decord"
    except InputError:
        raise
    except Exception:  # decord missing or unable: PyAV, as read_video (one counting pass)
        fps, backend = _pyav_rate(p), "pyav"
        n_all = sum(1 for _ in _pyav_span_frames(p, fps, 0.0, duration_s, None))
    return _plan(p, fps, n_all, duration_s, pick, backend)


def _plan(p: Path, fps: float, n_all: int, duration_s: float | None, pick: Callable[[int, float], np.ndarray],
          backend: str) -> PickedFrames:
    _, n = _span(fps, 0.0, duration_s, None)
    stop = n_all if n is None else min(n_all, n)
    idx = np.asarray(pick(stop, fps), dtype=np.int64)
    if not len(idx):
        raise InputError(p, "no frames picked from the requested span")
    if (np.diff(idx) < 0).any():
        raise ValueError("picked frame indices must be ascending")
    return PickedFrames(str(p), fps, idx, backend)


def iter_picked(plan: PickedFrames, batch: int = 16) -> Iterator[np.ndarray]:
    """The frames of ``plan`` as uint8 ``[k <= batch, H, W, 3]`` RGB arrays, in order; their
    concatenation is ``read_video(...).frames`` for the same pick. Never more than one
    batch of frames is held (a long video's sampled frames would grow with its length)."""
    p = Path(plan.path)
    idx = plan.indices
    if plan.backend == "decord":
        import decord

        vr = decord.VideoReader(str(p), ctx=decord.cpu(0))
        for lo in range(0, len(idx), batch):
            try:
                frames = vr.get_batch([int(i) for i in idx[lo:lo + batch]]).asnumpy()
            except Exception as e:
                raise InputError(p, f"decord failed at frame {int(idx[lo])} ({e})") from e
            yield check_video(frames, p)
        return
    want = {int(i): int(c) for i, c in zip(*np.unique(idx, return_counts=True))}  # an index may repeat
    k, buf = 0, []
    for j, frame in enumerate(_pyav_span_frames(p, plan.fps, 0.0, None, int(idx[-1]) + 1)):
        if j not in want:
            continue
        rgb = frame.to_ndarray(format="rgb24")
        for _ in range(want[j]):
            buf.append(rgb)
            k += 1
            if len(buf) == batch:
                yield check_video(np.stack(buf), p)
                buf = []
    if buf:
        yield check_video(np.stack(buf), p)
    if k < len(idx):
        raise InputError(p, f"decoded {k} of the {len(idx)} frames planned")


def _span(fps: float, start_s: float, duration_s: float | None, max_frames: int | None) -> tuple[int, int | None]:
    first = max(0, round(start_s * fps))
    n = round(duration_s * fps) if duration_s is not None else None
    if max_frames is not None:
        n = max_frames if n is None else min(n, max_frames)
    return first, n


def _read_video_decord(p: Path, start_s: float, duration_s: float | None, max_frames: int | None,
                       pick: Callable[[int, float], np.ndarray] | None = None) -> VideoClip:
    import decord

    vr = decord.VideoReader(str(p), ctx=decord.cpu(0))
    if len(vr) == 0:
        raise InputError(p, "video has no frames")
    t0 = float(vr.get_frame_timestamp(0)[0])
    if t0 < -1e-3:
        raise InputError(p, f"decord mis-indexes this file (edit list hides frames before t=0, first at "
                            f"{t0:.2f} s); use backend='pyav' or 'auto'")
    fps = float(vr.get_avg_fps())
    first, n = _span(fps, start_s, duration_s, max_frames)
    stop = len(vr) if n is None else min(len(vr), first + n)
    if first >= stop:
        raise InputError(p, f"video has no frames in the requested span (start_s={start_s})")
    wanted = range(first, stop) if pick is None else [first + int(i) for i in pick(stop - first, fps)]
    if not len(wanted):
        raise InputError(p, "no frames picked from the requested span")
    frames = vr.get_batch(list(wanted)).asnumpy()
    return VideoClip(check_video(frames, p), fps, str(p))


def _pyav_rate(p: Path) -> float:
    with _open(p) as c:
        vs = c.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate
        if not rate:
            raise InputError(p, "video stream has no frame rate")
        return float(rate)


def _pyav_span_frames(p: Path, fps: float, start_s: float, duration_s: float | None,
                      max_frames: int | None) -> Iterator[av.VideoFrame]:
    """The decoded frames PyAV's route returns for the span, in order (not converted)."""
    first, n = _span(fps, start_s, duration_s, max_frames)
    got = 0
    with _open(p) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        tb, t_start = vs.time_base, vs.start_time or 0
        try:
            if first > 0:  # seek lands on the keyframe at or before the target
                c.seek(t_start + int(first / fps / tb), stream=vs, backward=True)
            for k, frame in enumerate(c.decode(vs)):
                idx = round(float((frame.pts - t_start) * tb) * fps) if frame.pts is not None else k
                if idx < first:
                    continue
                yield frame
                got += 1
                if n is not None and got >= n:
                    break
        except av.error.FFmpegError as e:
            raise InputError(p, f"corrupt video stream ({e})") from e
    if not got:
        raise InputError(p, "video has no frames" if first == 0 else f"no frames at or after start_s={start_s}")


def _read_video_pyav(p: Path, start_s: float, duration_s: float | None, max_frames: int | None) -> VideoClip:
    fps = _pyav_rate(p)
    out = [frame.to_ndarray(format="rgb24") for frame in _pyav_span_frames(p, fps, start_s, duration_s, max_frames)]
    return VideoClip(check_video(np.stack(out), p), fps, str(p))


def _read_video_pyav_picked(p: Path, start_s: float, duration_s: float | None, max_frames: int | None,
                            pick: Callable[[int, float], np.ndarray]) -> VideoClip:
    """``_read_video_pyav`` then ``pick``, holding only the picked frames: one pass counts the
    span's frames, a second converts the picked ones (twice the decoding, for long spans)."""
    fps = _pyav_rate(p)
    n = sum(1 for _ in _pyav_span_frames(p, fps, start_s, duration_s, max_frames))
    idx = np.asarray(pick(n, fps), dtype=np.int64)
    want = set(int(i) for i in idx)
    kept = {k: f.to_ndarray(format="rgb24")
            for k, f in enumerate(_pyav_span_frames(p, fps, start_s, duration_s, max_frames)) if k in want}
    return VideoClip(check_video(np.stack([kept[int(i)] for i in idx]), p), fps, str(p))


# ----------------------------------------------------------------------------- audio
def read_audio(path: str | os.PathLike, *, sample_rate: int | None = None, mono: bool = False,
               start_s: float = 0.0, duration_s: float | None = None) -> AudioClip:
    """Decode [start_s, start_s + duration_s) of the first audio track -> float32 [C, N].

    wav/flac/ogg/aiff via soundfile; anything else (mp4, m4a, mkv...) via PyAV, demuxing
    only the audio stream (video packets are skipped undecoded). Optional downmix to
    mono ([1, N]) and resample to ``sample_rate`` with :func:`resample`.
    """
    p = _check_file(path)
    if p.suffix.lower() in _SOUNDFILE_SUFFIXES:
        samples, sr = _read_audio_soundfile(p, start_s, duration_s)
    else:
        samples, sr = _read_audio_pyav(p, start_s, duration_s)
    samples = check_audio(samples, p)
    if mono:
        samples = to_mono(samples)
    if sample_rate is not None and sample_rate != sr:
        samples, sr = resample(samples, sr, sample_rate), int(sample_rate)
    return AudioClip(samples, int(sr), str(p))


def _read_audio_soundfile(p: Path, start_s: float, duration_s: float | None) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(str(p)) as f:
            sr = f.samplerate
            f.seek(min(max(0, round(start_s * sr)), f.frames))
            n = -1 if duration_s is None else round(duration_s * sr)
            data = f.read(frames=n, dtype="float32", always_2d=True)  # [N, C]
    except (sf.LibsndfileError, RuntimeError) as e:
        raise InputError(p, f"unreadable or corrupt audio file ({e})") from e
    return data.T.copy(), int(sr)


def _frame_to_float(frame: av.AudioFrame) -> np.ndarray:
    """An audio frame as float32 [C, n], whatever its sample format."""
    a = frame.to_ndarray()
    ch = len(frame.layout.channels)
    if not frame.format.is_planar:  # packed: [1, n * C] interleaved
        a = a.reshape(-1, ch).T
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / float(-np.iinfo(a.dtype).min)
    return a.astype(np.float32, copy=False)


def _read_audio_pyav(p: Path, start_s: float, duration_s: float | None) -> tuple[np.ndarray, int]:
    with _open(p) as c:
        if not c.streams.audio:
            raise InputError(p, "no audio track")
        st = c.streams.audio[0]
        sr, tb, t_start = st.codec_context.sample_rate, st.time_base, st.start_time or 0
        first = max(0, round(start_s * sr))
        stop = None if duration_s is None else first + round(duration_s * sr)
        chunks: list[np.ndarray] = []
        pos = end_declared = 0
        finished = False
        try:
            if start_s > _AAC_SEEK_PREROLL_S:
                c.seek(t_start + int((start_s - _AAC_SEEK_PREROLL_S) / tb), stream=st, backward=True)
            for pk in c.demux(st):
                if pk.pts is not None and pk.duration and not pk.is_discard:
                    end_declared = max(end_declared, round(float((pk.pts + pk.duration - t_start) * tb) * sr))
                for frame in pk.decode():
                    if frame.pts is not None:
                        pos = round(float((frame.pts - t_start) * tb) * sr)
                    a = _frame_to_float(frame)
                    lo, hi = max(first - pos, 0), a.shape[1] if stop is None else min(a.shape[1], stop - pos)
                    if hi > lo:
                        chunks.append(a[:, lo:hi])
                    pos += a.shape[1]
                    finished = stop is not None and pos >= stop
                if finished:
                    break
        except av.error.FFmpegError as e:
            raise InputError(p, f"corrupt audio stream ({e})") from e
    samples = np.concatenate(chunks, axis=1) if chunks else np.zeros((st.codec_context.channels, 0), np.float32)
    if not finished and end_declared > first:
        # FFmpeg keeps the last AAC frame's padding; the packet's duration says where it ends.
        samples = samples[:, : end_declared - first]
    return samples, int(sr)


# ----------------------------------------------------------------------------- DSP
def to_mono(samples: np.ndarray) -> np.ndarray:
    """[C, N] -> [1, N], the mean over channels."""
    return np.asarray(samples, dtype=np.float32).mean(axis=0, keepdims=True)


def remove_dc(samples: np.ndarray) -> np.ndarray:
    """Subtract each channel's mean (over the last axis); same shape, float32."""
    a = np.asarray(samples, dtype=np.float32)
    return a - a.mean(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)


def resample(samples: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """[C, N] at orig_sr Hz -> [C, ~N * new_sr / orig_sr] with torchaudio's default
    windowed-sinc resampler (see :data:`RESAMPLER`). Identity (a float32 copy) when equal."""
    a = np.asarray(samples, dtype=np.float32)
    if int(orig_sr) == int(new_sr):
        return a.copy()
    import torch
    import torchaudio.functional as taf

    x = torch.from_numpy(np.ascontiguousarray(a))
    if x.shape[-1] > RESAMPLE_BLOCK:
        return _resample_blocks(x, int(orig_sr), int(new_sr)).numpy()
    return taf.resample(x, int(orig_sr), int(new_sr)).numpy()


RESAMPLE_BLOCK = 1 << 21  # input samples; longer inputs are resampled block by block


def _resample_blocks(x, orig_sr: int, new_sr: int):
    """``torchaudio.functional.resample(x, orig_sr, new_sr)`` with memory bounded by the
    block instead of the input's length; equal to float32 rounding.

    torchaudio's sinc resampler is a strided convolution: output frame F (``new`` samples,
    rates reduced by their gcd to ``orig``/``new``) reads input samples
    ``[F*orig - width, F*orig + width + orig)``; run whole, its unfolded input costs about
    14x the signal (1.6 GB for 10 minutes at 48 kHz). Here each block of frames is
    resampled from a slice with ``ctx >= width`` samples of context on both sides, starting
    on a multiple of ``orig`` so the slice's frames are the global frames, and only the
    block's own frames are kept. Each output sample then sees exactly the same inputs and
    kernel as in the one-shot call; only the convolution's accumulation order may change
    with the block's size (observed bit-identical at the default block, within 1e-6 at
    tiny blocks: tests/test_media.py)."""
    import math

    import torch
    import torchaudio.functional as taf

    g = math.gcd(orig_sr, new_sr)
    o, n = orig_sr // g, new_sr // g
    width = math.ceil(6 * o / (min(o, n) * 0.99))  # torchaudio's defaults: 6 zero crossings, rolloff 0.99
    ctx = o * (math.ceil(width / o) + 1)
    length = x.shape[-1]
    total = math.ceil(n * length / o)
    n_frames = math.ceil(length / o) + 1
    block = max(1, RESAMPLE_BLOCK // (2 * o))
    out, f0 = [], 0
    while f0 * n < total and f0 < n_frames:
        f1 = min(f0 + block, n_frames)
        start, end = max(f0 * o - ctx, 0), min(f1 * o + ctx, length)
        y = taf.resample(x[..., start:end], orig_sr, new_sr)
        g0 = (f0 * o - start) // o
        out.append(y[..., g0 * n:(g0 + f1 - f0) * n])
        f0 = f1
    return torch.cat(out, -1)[..., :total]


def preprocess_audio(samples: np.ndarray, sample_rate: int, target_sr: int,
                     clip_seconds: float | None = None) -> np.ndarray:
    """METRICS.md default: mono (channel mean), remove DC, resample to target_sr, truncate
    to clip_seconds (never pads; no loudness normalisation). [C, N] or [N] -> float32 [N']."""
    a = np.asarray(samples, dtype=np.float32)
    a = a[None] if a.ndim == 1 else a
    x = resample(remove_dc(to_mono(a)), sample_rate, target_sr)[0]
    if clip_seconds is not None:
        x = x[: round(clip_seconds * target_sr)]
    return np.ascontiguousarray(x, dtype=np.float32)


# Writers live in media_write (kept apart to keep files small); imported last because
# they use the checks above.
from foleybench.media_write import _atomic_target, write_mp4, write_wav  # noqa: E402,F401
