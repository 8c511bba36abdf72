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
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from foleybench.api import InputError


class _LazyCV2:
    """OpenCV, imported on first use (then this placeholder is replaced by the module):
    the package re-exports ``av_align`` eagerly, and a cached re-score must not pay for
    OpenCV's import."""

    def __getattr__(self, name: str) -> Any:
        import cv2 as module

        globals()["cv2"] = module
        return getattr(module, name)


cv2: Any = _LazyCV2()

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
def _magnitude(flow: np.ndarray) -> np.ndarray:
    """cv2.magnitude of a flow ``[H, W, 2]`` with OpenCV's IPP path switched off for the
    call: IPP's magnitude rounds differently depending on where its buffers land (the
    same clip gave values 1e-9 apart between runs), OpenCV's own SIMD loop does not, so
    the serial and the parallel flow curves are bit-identical. Values differ from the
    IPP ones by at most ~1e-9 relative, far below the 0.1 peak threshold."""
    ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        return cv2.magnitude(flow[..., 0], flow[..., 1])
    finally:
        cv2.ipp.setUseIPP(ipp)


def _pair_values(prev: np.ndarray, frames: Iterable[np.ndarray], to_gray: bool) -> list[float]:
    """Mean flow magnitude from ``prev`` to each frame in turn (and frame to frame)."""
    values: list[float] = []
    for frame in frames:
        cur = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if to_gray else np.ascontiguousarray(frame)
        if cur.ndim != 2 or cur.dtype != np.uint8:
            raise ValueError(f"gray frames must be uint8 [H, W], got {cur.dtype} {cur.shape}")
        if cur.shape != prev.shape:
            raise ValueError(f"frame size changed from {prev.shape} to {cur.shape}")
        flow = cv2.calcOpticalFlowFarneback(prev, cur, None, *FLOW_PARAMS)
        mag = _magnitude(flow)
        # cv2.mean accumulates in double, as the reference does; np.mean on float32
        # would sum in float32 and drift in the last digits on 1280x720 frames.
        values.append(cv2.mean(mag)[0])
        prev = cur
    return values


def default_workers() -> int:
    """Processes for one clip's flow or a batch's clips: ``FOLEYBENCH_AV_ALIGN_WORKERS``
    or the CPU count."""
    env = os.environ.get("FOLEYBENCH_AV_ALIGN_WORKERS", "").strip()
    return max(1, int(env)) if env else max(1, os.cpu_count() or 1)


def fork_pool(n: int):
    """A pool of ``n`` forked worker processes, or None where fork is unavailable.

    Forked, not threads: OpenCV's results on near-zero flow (|v| ~ 1e-10 px) depend on
    the calling thread (measured: a worker thread and the main thread differ in the last
    bits of cv2.magnitude), while a child forked from the main thread computes exactly
    what the main thread would. Frames reach the children through the fork itself.
    """
    import multiprocessing as mp
    import threading

    if n < 2 or "fork" not in mp.get_all_start_methods() or threading.current_thread() is not threading.main_thread():
        return None
    return mp.get_context("fork").Pool(n)


_FRAMES: Any = None  # frames shared with forked flow workers (set before the fork)
_RGB = False


def _chunk_values(bounds: tuple[int, int]) -> list[float]:
    lo, hi = bounds
    frames = _FRAMES
    first = frames[lo - 1]
    prev = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY) if _RGB else np.ascontiguousarray(first)
    if prev.ndim != 2 or prev.dtype != np.uint8:
        raise ValueError(f"gray frames must be uint8 [H, W], got {prev.dtype} {prev.shape}")
    return _pair_values(prev, (frames[i] for i in range(lo, hi)), _RGB)


def flow_curve(gray_frames: Iterable[np.ndarray], workers: int = 1, *, rgb: bool = False) -> np.ndarray:
    """Mean Farneback flow magnitude per frame, float64 ``[T]`` (pixels per frame).

    gray_frames: T >= 2 uint8 ``[H, W]`` frames (an array ``[T, H, W]`` or any iterable,
    consumed one frame at a time), or RGB ``[H, W, 3]`` frames with ``rgb=True``
    (converted to luma as OpenCV's RGB2GRAY). Value i (i >= 1) is the flow from frame i-1
    to i; value 0 repeats value 1, as the reference does.

    ``workers > 1`` with a sequence of frames (list or array), called from the main
    thread: the T-1 frame pairs are split into that many contiguous chunks computed in
    forked processes (:func:`fork_pool`), each pair by the same calls as the serial loop,
    so the curve is bit-identical to ``workers=1``.
    """
    global _FRAMES, _RGB
    n = len(gray_frames) if hasattr(gray_frames, "__len__") and hasattr(gray_frames, "__getitem__") else -1
    pool = None
    if workers > 1 and n >= 4:
        k = min(workers, n - 1)
        _FRAMES, _RGB = gray_frames, rgb
        try:
            pool = fork_pool(k)
            if pool is not None:
                bounds = np.linspace(1, n, k + 1).round().astype(int)
                with pool:
                    parts = pool.map(_chunk_values, [(int(bounds[j]), int(bounds[j + 1])) for j in range(k)])
                values = [v for part in parts for v in part]
        finally:
            _FRAMES = None
    if pool is None:
        it = iter(gray_frames)
        first = next(it, None)
        values = []
        if first is not None:
            prev = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY) if rgb else np.ascontiguousarray(first)
            if prev.ndim != 2 or prev.dtype != np.uint8:
                raise ValueError(f"gray frames must be uint8 [H, W], got {prev.dtype} {prev.shape}")
            values = _pair_values(prev, it, rgb)
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
def _read_rgb_frames(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode every frame of ``path`` once: (uint8 [T, H, W, 3] RGB, fps)."""
    from foleybench.media import read_video

    clip = read_video(path)  # at the file's average fps
    return clip.frames, float(clip.fps)


def _read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode the first audio track of ``path`` at its native rate: (float32 [C, N], Hz)."""
    from foleybench.media import read_audio

    clip = read_audio(path)
    return clip.samples, int(clip.sample_rate)


def _onsets_of(audio_path: str | os.PathLike) -> np.ndarray:
    """Onset times of a file: a long one (``media_long.LEAN_ABOVE_S``, or of undeclared
    length) streamed (:func:`streamed_audio_onsets`), never decoded whole."""
    from foleybench import media_long

    secs = media_long.declared_seconds(audio_path)
    if secs is None or secs > media_long.LEAN_ABOVE_S:
        return streamed_audio_onsets(audio_path)
    samples, sr = _read_audio(audio_path)
    return audio_onsets(samples, sr)


N_FFT, HOP, TOP_DB, AMIN = 2048, 512, 80.0, 1e-10  # librosa onset_strength / power_to_db defaults
ONSET_BLOCK_FRAMES = 2048  # STFT frames per streamed block (a 2048-sample float64 frame is 16 KB)
_RESAMPLE_HOLD = 4096  # resampled samples kept unframed until the stream's end (librosa's fix_length)


def streamed_audio_onsets(path: str | os.PathLike) -> np.ndarray:
    """:func:`audio_onsets` of ``read_audio(path)`` without holding the decoded file, its
    resampled signal or its spectrogram (a 60-minute file's STFT alone is 1.3 GB): peak
    picking with ``librosa.onset.onset_detect``'s defaults on :func:`streamed_onset_envelope`."""
    import librosa

    onset_frames = librosa.onset.onset_detect(onset_envelope=streamed_onset_envelope(path), sr=AUDIO_SR)
    return np.asarray(librosa.frames_to_time(onset_frames, sr=AUDIO_SR), dtype=np.float64)


def streamed_onset_envelope(path: str | os.PathLike) -> np.ndarray:
    """``librosa.onset.onset_strength(y=y, sr=22050)`` of the ``y`` :func:`audio_onsets`
    makes of ``read_audio(path)`` (float32 ``[frames]``), streamed.

    The same arithmetic, frame by frame, as librosa's whole-array calls: blocks are mixed
    to mono (``librosa.to_mono``), resampled by soxr's stream (the same samples as
    ``soxr.resample``, then librosa's ``fix_length``), framed as ``stft(center=True,
    pad_mode="constant")`` frames them, and each block of frames goes through the float64
    window product, ``rfft``, complex64 magnitude, power, the mel ``einsum`` and the dB
    scale. ``power_to_db``'s ``top_db`` floor needs the whole file's maximum, so the
    per-frame mel dB columns (512 bytes each, 43 per second) wait in an unlinked temporary
    file and a second pass floors them, forms the onset envelope (positive difference,
    mean over mel bands) and keeps only it (4 bytes per frame). Every step is bit-identical
    to librosa's except the mel product, a float32 BLAS call whose rounding follows its
    column blocking (the whole-array call's also changes with the thread count): the
    envelope agrees to float32 rounding (~1e-7 relative) and the onsets were equal on every
    file tested (tests/test_long_video.py)."""
    import tempfile

    import librosa
    import soxr

    from foleybench import media_long

    p = str(path)
    sr = media_long._sample_rate(media_long.media._check_file(p))
    mel = librosa.filters.mel(sr=AUDIO_SR, n_fft=N_FFT, fmax=0.5 * AUDIO_SR)
    window = librosa.util.pad_center(librosa.filters.get_window("hann", N_FFT, fftbins=True), size=N_FFT)
    window = window.reshape(-1, 1)
    stream = None if sr == AUDIO_SR else soxr.ResampleStream(sr, AUDIO_SR, 1, dtype="float32", quality="soxr_hq")
    half = N_FFT // 2
    buf = np.zeros(half, np.float32)  # y_pad from global index ``start``: the constant centre padding
    start, t_next, n_in, n_out = 0, 0, 0, 0
    top = -np.inf
    sizes: list[int] = []

    with tempfile.TemporaryFile() as spill:
        def frames_upto(limit: int) -> None:
            """Frame, transform and spill every frame whose window ends at or before y_pad[limit]."""
            nonlocal buf, start, t_next, top
            while True:
                last = (limit - N_FFT) // HOP  # last frame index that fits
                k = min(last - t_next + 1, ONSET_BLOCK_FRAMES)
                if k <= 0:
                    return
                off = t_next * HOP - start
                seg = buf[off:off + (k - 1) * HOP + N_FFT]
                y_frames = np.lib.stride_tricks.as_strided(seg, shape=(N_FFT, k), strides=(4, 4 * HOP), writeable=False)
                spec = np.fft.rfft(window * y_frames, axis=-2).astype(np.complex64)
                power = np.abs(spec) ** 2.0
                melspec = np.einsum("...ft,mf->...mt", power, mel, optimize=True)
                log_spec = 10.0 * np.log10(np.maximum(AMIN, np.abs(melspec)))
                log_spec -= 10.0 * np.log10(np.maximum(AMIN, 1.0))
                top = max(top, float(log_spec.max()))
                spill.write(np.ascontiguousarray(log_spec, np.float32).tobytes())
                sizes.append(k)
                t_next += k
                drop = t_next * HOP - start  # samples no later frame needs
                buf = buf[drop:].copy()
                start += drop

        def feed(y: np.ndarray) -> None:
            nonlocal buf, n_out
            if len(y):
                buf = np.concatenate([buf, y.astype(np.float32, copy=False)])
                n_out += len(y)
            frames_upto(start + len(buf) - _RESAMPLE_HOLD)

        for block in media_long.iter_audio_blocks(p):
            n_in += block.shape[1]
            mono = librosa.to_mono(block) if block.shape[0] > 1 else block[0]
            feed(stream.resample_chunk(mono, last=False) if stream is not None else mono)
        if n_in == 0:
            raise InputError(p, "zero-length audio")
        if stream is not None:
            feed(stream.resample_chunk(np.zeros(0, np.float32), last=True))
        n_y = int(np.ceil(n_in * (float(AUDIO_SR) / sr))) if stream is not None else n_in
        if n_out > n_y:  # librosa.util.fix_length trims; those samples were held back
            if n_out - n_y > len(buf) - half:
                raise RuntimeError("resampler overshoot beyond the held-back samples")
            buf = buf[:len(buf) - (n_out - n_y)]
        buf = np.concatenate([buf, np.zeros(max(0, n_y - n_out) + half, np.float32)])  # fix_length pad, centre pad
        frames_upto(start + len(buf))
        n_frames = 1 + n_y // HOP
        if t_next != n_frames:
            raise RuntimeError(f"framed {t_next} of {n_frames} STFT frames")

        # second pass: the top_db floor, then the onset envelope (lag 1, mean over mel bands)
        floor = np.float32(top) - TOP_DB
        spill.seek(0)
        env = np.zeros(n_frames, np.float32)  # the 1 + N_FFT // (2 HOP) leading zeros stay
        prev: np.ndarray | None = None
        t = 0
        n_mel = mel.shape[0]
        for k in sizes:
            d = np.frombuffer(spill.read(4 * n_mel * k), np.float32).reshape(n_mel, k)
            d = np.maximum(d, floor)
            both = d if prev is None else np.concatenate([prev, d], axis=1)
            diff = np.maximum(0.0, both[:, 1:] - both[:, :-1])
            vals = np.mean(diff, axis=-2)
            lo = t + (1 if prev is None else 0)  # envelope value of frame j sits at j + 2
            for_pos = np.arange(lo, lo + len(vals)) + 2
            keep = for_pos < n_frames
            env[for_pos[keep]] = vals[keep]
            prev = d[:, -1:]
            t += k
    return env


def _rgb_stream(video_path: str | os.PathLike) -> tuple[Iterator[np.ndarray], float]:
    """(one uint8 [H, W, 3] RGB frame at a time, fps): the frames of ``read_video(path)``
    decoded in small batches (:func:`foleybench.media.iter_video`), never all held."""
    from foleybench.media import iter_video

    fps, batches = iter_video(video_path, batch=16)
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(str(video_path), f"invalid frame rate {fps}")
    return (f for b in batches for f in b), fps


def _video_curve(video_path: str | os.PathLike, workers: int) -> tuple[np.ndarray, float]:
    if workers == 1:  # streamed: memory does not grow with the video's length
        frames, fps = _rgb_stream(video_path)
    else:
        frames, fps = _read_rgb_frames(video_path)
        if not np.isfinite(fps) or fps <= 0:
            raise InputError(str(video_path), f"invalid frame rate {fps}")
    try:
        return flow_curve(frames, workers, rgb=True), fps
    except ValueError as e:
        raise InputError(str(video_path), str(e)) from e


def _gray_clip(video_path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode ``video_path`` once and convert to luma: (uint8 [T, H, W], fps). The RGB
    frames are dropped as soon as the gray ones exist (cvtColor RGB2GRAY, as the serial
    route computes them)."""
    frames, fps = _read_rgb_frames(video_path)
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(str(video_path), f"invalid frame rate {fps}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(str(video_path), f"expected uint8 RGB frames, got {frames.dtype} {frames.shape}")
    gray = np.empty(frames.shape[:3], np.uint8)
    for i, f in enumerate(frames):
        cv2.cvtColor(f, cv2.COLOR_RGB2GRAY, dst=gray[i])
    return gray, fps


def _queue_gray_chunks(pool: Any, video: str | os.PathLike, parts: list[Any], inflight: deque[Any]) -> float:
    """Decode ``video`` frame batch by frame batch, convert each frame to luma (cvtColor
    RGB2GRAY, as the serial route) and queue its frame pairs on ``pool`` in chunks of
    :data:`CHUNK_PAIRS` (each chunk carries its k+1 gray frames; consecutive chunks share
    a frame), appending the async results to ``parts``. At most
    :data:`MAX_CHUNKS_IN_FLIGHT` chunks wait in ``inflight`` (all clips): beyond that the
    oldest is waited for, so a long video never has all its frames decoded at once.
    Returns the fps; InputError (naming the file) on bad input."""
    frames, fps = _rgb_stream(video)
    chunk: list[np.ndarray] = []
    n = 0

    def submit(c: list[np.ndarray]) -> None:
        r = pool.apply_async(_flow_chunk, (np.stack(c),))
        parts.append(r)
        inflight.append(r)
        while len(inflight) > MAX_CHUNKS_IN_FLIGHT:
            inflight.popleft().wait()

    for f in frames:
        if f.ndim != 3 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise InputError(str(video), f"expected uint8 RGB frames, got {f.dtype} {f.shape}")
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        if chunk and g.shape != chunk[0].shape:
            raise InputError(str(video), f"frame size changed from {chunk[0].shape} to {g.shape}")
        chunk.append(g)
        n += 1
        if len(chunk) == CHUNK_PAIRS + 1:
            submit(chunk)
            chunk = [chunk[-1]]
    if n < 2:
        raise InputError(str(video), "optical flow needs at least 2 frames")
    if len(chunk) > 1:
        submit(chunk)
    return fps


def _flow_chunk(gray: np.ndarray) -> list[float]:
    """Pool task: the values of the pairs (0, 1), (1, 2), ... of a gray chunk [k+1, H, W]."""
    return _pair_values(np.ascontiguousarray(gray[0]), gray[1:], False)


CHUNK_PAIRS = 8  # frame pairs per pool task: small, so the last clip of a batch balances
MAX_CHUNKS_IN_FLIGHT = 32  # queued pool tasks (all clips): bounds the gray frames held
MAX_CLIPS_IN_FLIGHT = 2  # clips whose gray frames are queued or being computed


def _result(curve: np.ndarray, onsets: np.ndarray, fps: float) -> AVAlignResult:
    a = onsets
    v = video_peaks(curve, fps)
    m = match_peaks(a, v, fps)
    if len(a) + len(v) == 0:  # the reference divides by zero here
        return AVAlignResult(None, "no audio onsets and no video flow peaks (AV-Align undefined)",
                             0, 0, 0, a, v, fps)
    return AVAlignResult(m / (len(a) + len(v) - m), None, len(a), len(v), m, a, v, fps)


def _serial(video_path: str | os.PathLike, audio_path: str | os.PathLike) -> AVAlignResult:
    curve, fps = _video_curve(video_path, 1)
    return _result(curve, _onsets_of(audio_path), fps)


def av_align_many(jobs: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
                  workers: int | None = None) -> list[AVAlignResult | InputError]:
    """AV-Align of several clips ``(video_path, audio_path)``: each clip's result, or the
    :class:`InputError` that says why it has none, in input order.

    ``workers`` > 1 (default :func:`default_workers`), from the main thread where fork
    exists: one pool of that many forked processes serves the whole batch. The main
    process decodes each video once, converts it to gray and queues its frame pairs in
    chunks of :data:`CHUNK_PAIRS` (a chunk carries its k+1 gray frames, uint8), so the
    work of all clips is balanced over the workers pair-chunk by pair-chunk, and a lone
    clip is split as well. While the workers compute a clip's flow, the main process
    finds its audio onsets and decodes the next clip; at most
    :data:`MAX_CLIPS_IN_FLIGHT` clips' gray frames are queued at a time. Every pair is
    computed by the serial loop's calls (in the main thread of a forked child), so each
    result is bit-identical to ``workers=1``, the serial route (video, then audio, clip
    after clip, the reference's order).
    """
    workers = default_workers() if workers is None else max(1, int(workers))
    pool = None
    if workers > 1 and jobs:
        # Workers with one OpenCV thread each: they already fill the cores, and OpenCV's
        # own threads gain ~5% on Farneback alone while competing with the other workers.
        # Set here, before the fork: cv2.setNumThreads in a forked child hangs once the
        # parent has used OpenCV's thread pool.
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            pool = fork_pool(workers)
        finally:
            cv2.setNumThreads(threads)
    if pool is None:
        out: list[AVAlignResult | InputError] = []
        for video, audio in jobs:
            try:
                out.append(_serial(video, audio))
            except InputError as e:
                out.append(e)
        return out

    results: list[Any] = [None] * len(jobs)
    pending: list[tuple[int, Any, list[Any], np.ndarray | InputError, float]] = []
    inflight: deque[Any] = deque()  # queued pool tasks (all clips), oldest first

    def finish(entry: tuple[int, Any, list[Any], np.ndarray | InputError, float]) -> None:
        i, video, parts, onsets, fps = entry
        try:
            vals = [v for part in parts for v in part.get()]
        except ValueError as e:
            results[i] = InputError(str(video), str(e))
            return
        if isinstance(onsets, InputError):
            results[i] = onsets
            return
        results[i] = _result(np.array([vals[0]] + vals, dtype=np.float64), onsets, fps)

    with pool:
        for i, (video, audio) in enumerate(jobs):
            while len(pending) >= MAX_CLIPS_IN_FLIGHT:
                finish(pending.pop(0))
            parts: list[Any] = []
            try:
                fps = _queue_gray_chunks(pool, video, parts, inflight)
            except InputError as e:
                results[i] = e
                continue
            try:
                onsets: np.ndarray | InputError = _onsets_of(audio)
            except InputError as e:
                onsets = e
            pending.append((i, video, parts, onsets, fps))
        while pending:
            finish(pending.pop(0))
    return results


def av_align(video_path: str | os.PathLike, audio_path: str | os.PathLike,
             workers: int | None = None) -> AVAlignResult:
    """AV-Align of one clip: video peaks from ``video_path``, onsets from ``audio_path``
    (which may be the same mp4). Raises :class:`InputError` on unreadable input.

    ``workers=1`` is the serial route, in the reference's order (decode the video, flow
    frame pair by frame pair, then the audio's onsets). ``workers`` > 1 (default
    :func:`default_workers`): :func:`av_align_many` on this one clip, its frame pairs
    split over that many forked processes while the onsets are found. Both give
    bit-identical results.
    """
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1:
        return _serial(video_path, audio_path)
    res = av_align_many([(video_path, audio_path)], workers)[0]
    if isinstance(res, InputError):
        raise res
    return res
