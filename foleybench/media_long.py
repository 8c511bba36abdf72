"""Audio preprocessing whose memory does not grow with the input's length.

:func:`load_preprocessed` gives exactly what ``preprocess_audio(read_audio(path), ...)``
gives (mono, DC removed over the *whole* file, resampled, cut to ``clip_seconds``). For a
file longer than :data:`LEAN_ABOVE_S` (or of unknown length) it never holds the decoded
file: it streams it twice, whatever the container (wav/flac through soundfile, AAC and
the rest through PyAV):

1. :func:`scan_audio` decodes block by block and keeps only counts: samples, the float64
   sum of the mono samples (the DC mean), the peak magnitude (silence), and NaN/inf
   checks (an error names the file, as the plain reader's does);
2. the second pass mixes each block to mono, subtracts the mean and feeds a streaming
   resampler that follows :func:`foleybench.media._resample_blocks`' block schedule for
   the file's length, so its output is bit-identical to resampling the whole mono array;
   decoding stops once ``clip_seconds`` of output exist.

Peak memory is then the output at the target rate (at most ``clip_seconds`` of it) plus
one resampler block (``media.RESAMPLE_BLOCK`` input samples), independent of the input's
length, channel count and rate. :func:`iter_audio_blocks` is the streaming decoder both
passes share; it yields the same samples, in order, as :func:`foleybench.media.read_audio`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from foleybench import media
from foleybench.api import InputError

MARGIN_S = 1.0   # kept for callers that size a decode window around clip_seconds
_BLOCK = 1 << 18  # samples per soundfile block
LEAN_ABOVE_S = 60.0  # files longer than this (or of unknown length) are streamed
HOLD_MAX_S = 10.0  # AAC: samples held back while the packets' declared end is unknown


# ----------------------------------------------------------------------------- decoding
def _soundfile_blocks(p: Path) -> Iterator[np.ndarray]:
    try:
        with sf.SoundFile(str(p)) as f:
            for block in f.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True):
                yield media.check_audio(block.T, p)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise InputError(p, f"unreadable or corrupt audio file ({e})") from e


def _pyav_blocks(p: Path) -> Iterator[np.ndarray]:
    """The frames :func:`media._read_audio_pyav` concatenates (start 0, no stop), streamed.

    That reader trims the result to the last packet's declared end (FFmpeg keeps the last
    AAC frame's padding). The declared end only grows as packets demux, and a sample
    before the current declared end is kept whatever comes later, so samples past it are
    held back until more packets arrive (at most :data:`HOLD_MAX_S`; a stream whose
    packets declare no durations is never trimmed, as in the reader) and trimmed at the end.
    """
    import av

    with media._open(p) as c:
        if not c.streams.audio:
            raise InputError(p, "no audio track")
        st = c.streams.audio[0]
        sr, tb, t_start = st.codec_context.sample_rate, st.time_base, st.start_time or 0
        hold_max = int(HOLD_MAX_S * sr)
        pos = end_declared = emitted = 0
        held: list[np.ndarray] = []
        n_held = 0
        try:
            for pk in c.demux(st):
                if pk.pts is not None and pk.duration and not pk.is_discard:
                    end_declared = max(end_declared, round(float((pk.pts + pk.duration - t_start) * tb) * sr))
                for frame in pk.decode():
                    if frame.pts is not None:
                        pos = round(float((frame.pts - t_start) * tb) * sr)
                    a = media._frame_to_float(frame)
                    lo = max(-pos, 0)
                    if a.shape[1] > lo:
                        held.append(a[:, lo:])
                        n_held += a.shape[1] - lo
                    pos += a.shape[1]
                # release what is surely kept: samples before the declared end so far
                keep = max(0, min(n_held, end_declared - emitted)) if end_declared else 0
                if n_held - keep > hold_max:  # give up holding (docstring): no trim applies
                    keep = n_held
                if keep:
                    out, held, n_held = _take(held, keep, n_held)
                    emitted += keep
                    yield media.check_audio(out, p)
        except av.error.FFmpegError as e:
            raise InputError(p, f"corrupt audio stream ({e})") from e
    keep = min(n_held, max(0, end_declared - emitted)) if end_declared else n_held
    if keep:
        yield media.check_audio(_take(held, keep, n_held)[0], p)


def _take(held: list[np.ndarray], k: int, n_held: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """The first ``k`` samples of the held blocks as one [C, k] array, and the rest."""
    whole = held[0] if len(held) == 1 else np.concatenate(held, axis=1)
    rest = whole[:, k:]
    return whole[:, :k], ([rest] if rest.shape[1] else []), n_held - k


def iter_audio_blocks(path: str | Path) -> Iterator[np.ndarray]:
    """float32 ``[C, n]`` blocks whose concatenation is ``media.read_audio(path).samples``.

    InputError (naming the file) on a missing, empty, unreadable or non-finite input, as
    the reader; a zero-length stream yields nothing (callers report it)."""
    p = media._check_file(path)
    if p.suffix.lower() in media._SOUNDFILE_SUFFIXES:
        yield from _soundfile_blocks(p)
    else:
        yield from _pyav_blocks(p)


def _sample_rate(p: Path) -> int:
    if p.suffix.lower() in media._SOUNDFILE_SUFFIXES:
        try:
            return int(sf.info(str(p)).samplerate)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise InputError(p, f"unreadable or corrupt audio file ({e})") from e
    with media._open(p) as c:
        if not c.streams.audio:
            raise InputError(p, "no audio track")
        return int(c.streams.audio[0].codec_context.sample_rate)


@dataclass
class AudioScan:
    """One streaming pass over a file's audio: samples (per channel), rate, channels, the
    float64 sum of its mono mix (for the DC mean) and its peak magnitude."""

    n_samples: int
    sample_rate: int
    channels: int
    mono_sum: float
    peak: float
    mono_peak: float = float("inf")  # peak of the mono mix (channels that cancel are silent)

    @property
    def seconds(self) -> float:
        return self.n_samples / self.sample_rate

    @property
    def mean(self) -> np.float32:
        """The DC value ``media.remove_dc`` subtracts from the mono mix (float32)."""
        return np.float32(self.mono_sum / max(self.n_samples, 1))


def scan_audio(path: str | Path) -> AudioScan:
    """Stream ``path`` once (see the module docstring); InputError on bad or empty audio."""
    p = Path(path)
    sr = _sample_rate(media._check_file(p))
    n, total, peak, mono_peak, channels = 0, 0.0, 0.0, 0.0, 0
    for block in iter_audio_blocks(p):
        mono = media.to_mono(block)[0]
        total += float(np.sum(mono, dtype=np.float64))
        peak = max(peak, float(np.max(np.abs(block))))
        mono_peak = max(mono_peak, float(np.max(np.abs(mono))))
        n += block.shape[1]
        channels = block.shape[0]
    if n == 0:
        media.check_audio(np.zeros((1, 0), np.float32), p)  # raises: zero-length audio
    return AudioScan(n, sr, channels, total, peak, mono_peak)


def declared_seconds(path: str | Path) -> float | None:
    """The audio length a file's headers declare, or None when they do not say."""
    p = Path(path)
    try:
        if p.suffix.lower() in media._SOUNDFILE_SUFFIXES:
            info = sf.info(str(p))
            return info.frames / info.samplerate if info.samplerate else None
        return media.probe(p).duration_s
    except (sf.LibsndfileError, RuntimeError, InputError):
        return None


# ----------------------------------------------------------------------------- resampling
def _stream_resample(blocks: Iterator[np.ndarray], length: int, orig_sr: int, new_sr: int,
                     limit: int | None) -> np.ndarray:
    """``media.resample(x, orig_sr, new_sr)[0][:limit]`` of the mono signal ``x`` that the
    float32 ``[n]`` ``blocks`` concatenate to (``length`` samples in all), holding at most
    one block of the resampler's schedule (:func:`media._resample_blocks`) at a time."""
    want = resampled_length(length, orig_sr, new_sr, limit)
    out, w = np.empty(want, np.float32), 0
    for part in _iter_resample(blocks, length, orig_sr, new_sr, limit):
        out[w:w + len(part)] = part
        w += len(part)
    return out[:w]


def resampled_length(length: int, orig_sr: int, new_sr: int, limit: int | None) -> int:
    """How many samples :func:`_stream_resample` gives for ``length`` input samples."""
    if orig_sr == new_sr:
        total = length
    else:
        g = math.gcd(orig_sr, new_sr)
        total = math.ceil((new_sr // g) * length / (orig_sr // g))
    return total if limit is None else min(total, max(0, limit))


def _iter_resample(blocks: Iterator[np.ndarray], length: int, orig_sr: int, new_sr: int,
                   limit: int | None) -> Iterator[np.ndarray]:
    """:func:`_stream_resample`'s output in consecutive float32 pieces (the same samples)."""
    import torch
    import torchaudio.functional as taf

    want = resampled_length(length, orig_sr, new_sr, limit)
    if orig_sr == new_sr:  # media.resample copies: the blocks up to the limit
        w = 0
        for b in blocks:
            if w >= want:
                break
            k = min(len(b), want - w)
            yield np.ascontiguousarray(b[:k], dtype=np.float32)
            w += k
        return
    if length <= media.RESAMPLE_BLOCK:
        whole = np.concatenate(list(blocks)) if length else np.zeros(0, np.float32)
        y = media.resample(whole[None], orig_sr, new_sr)[0]
        yield np.ascontiguousarray(y[:limit] if limit is not None else y, dtype=np.float32)
        return
    g = math.gcd(orig_sr, new_sr)
    o, n = orig_sr // g, new_sr // g
    width = math.ceil(6 * o / (min(o, n) * 0.99))  # as media._resample_blocks
    ctx = o * (math.ceil(width / o) + 1)
    total = math.ceil(n * length / o)
    n_frames = math.ceil(length / o) + 1
    block = max(1, media.RESAMPLE_BLOCK // (2 * o))
    buf, buf_start = np.zeros(0, np.float32), 0  # buf holds input samples [buf_start, buf_start + len)
    it = iter(blocks)
    f0 = w = 0
    while w < want and f0 * n < total and f0 < n_frames:
        f1 = min(f0 + block, n_frames)
        start, end = max(f0 * o - ctx, 0), min(f1 * o + ctx, length)
        if start > buf_start:
            buf, buf_start = buf[start - buf_start:], start
        if buf_start + len(buf) < end:
            parts, have = [buf], buf_start + len(buf)
            while have < end:  # gather blocks first: one concatenation per resampler block
                nxt = next(it, None)
                if nxt is None:
                    raise InputError("<stream>", "audio ended before its scanned length")
                parts.append(nxt)
                have += len(nxt)
            buf = np.concatenate(parts)
        y = taf.resample(torch.from_numpy(np.ascontiguousarray(buf[:end - buf_start])), orig_sr, new_sr)
        g0 = (f0 * o - start) // o
        part = y[g0 * n:(g0 + f1 - f0) * n].numpy()
        k = min(len(part), want - w)
        yield np.array(part[:k], dtype=np.float32)  # a copy: y's buffer is freed
        w += k
        f0 = f1


def _mono_dc_free(path: Path, mean: np.float32) -> Iterator[np.ndarray]:
    for block in iter_audio_blocks(path):
        yield media.to_mono(block)[0] - mean


def load_preprocessed(path: str, rate: int, clip_seconds: float | None,
                      scan: AudioScan | None = None, lazy: bool = False) -> "np.ndarray | LongAudio":
    """float32 ``[N]``: the protocol's mono, DC-free, resampled, cut audio of ``path``.

    Files up to :data:`LEAN_ABOVE_S` take the plain reader; longer ones (or ones whose
    headers give no length) are streamed (module docstring). ``scan``: a
    :func:`scan_audio` of the file already made (saves the first pass). ``lazy``: a
    streamed file comes back as a :class:`LongAudio` (its samples made block by block
    when read) instead of an array."""
    p = Path(path)
    declared = declared_seconds(p) if scan is None else scan.seconds
    if scan is None and declared is not None and declared <= LEAN_ABOVE_S:
        clip = media.read_audio(path)
        return media.preprocess_audio(clip.samples, clip.sample_rate, rate, clip_seconds)
    scan = scan_audio(p) if scan is None else scan
    limit = None if clip_seconds is None else round(clip_seconds * rate)
    long = LongAudio(str(p), int(rate), scan, limit)
    return long if lazy else long.materialise()


class LongAudio:
    """The preprocessed samples of a long file, made when read: :meth:`blocks` streams them
    (two decoding passes' worth of memory: one resampler block), :meth:`materialise` gives
    the whole array (what :func:`load_preprocessed` returns without ``lazy``), and
    :meth:`reader` serves forward-moving windows. ``len()`` and ``shape`` are known
    without decoding (from the scan)."""

    ndim = 1
    dtype = np.dtype(np.float32)

    def __init__(self, path: str, rate: int, scan: AudioScan, limit: int | None):
        self.path, self.rate, self.scan, self.limit = path, rate, scan, limit
        self.n = resampled_length(scan.n_samples, scan.sample_rate, rate, limit)

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def size(self) -> int:
        return self.n

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"LongAudio({self.path!r}, {self.n} samples at {self.rate} Hz)"

    def blocks(self) -> Iterator[np.ndarray]:
        """float32 pieces whose concatenation is :meth:`materialise` (bit for bit)."""
        return _iter_resample(_mono_dc_free(Path(self.path), self.scan.mean), self.scan.n_samples,
                              self.scan.sample_rate, self.rate, self.limit)

    def materialise(self) -> np.ndarray:
        return _stream_resample(_mono_dc_free(Path(self.path), self.scan.mean), self.scan.n_samples,
                                self.scan.sample_rate, self.rate, self.limit)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        x = self.materialise()
        return x if dtype is None else x.astype(dtype)

    def reader(self) -> "WindowReader":
        return WindowReader(self.blocks(), self.n)


class WindowReader:
    """Windows ``[lo, hi)`` of a signal that arrives in blocks, for readers that move
    forward: a window may start anywhere at or after the previous window's start (overlap
    allowed); samples before the latest start are dropped, and blocks that lie wholly in a
    gap between two windows are never kept (ImageBind's three clips and DeSync's first and
    last windows of a long file: the gap held whole grew with the file's length, 180 MB at
    60 minutes), so memory is one window plus one block."""

    def __init__(self, blocks: Iterator[np.ndarray], n: int):
        self._it, self.n = iter(blocks), n
        self._buf, self._start = np.zeros(0, np.float32), 0

    def get(self, lo: int, hi: int) -> np.ndarray:
        lo, hi = max(0, lo), min(hi, self.n)
        if lo < self._start:
            raise ValueError(f"window start {lo} is before the reader's position {self._start}")
        if lo > self._start:
            drop = min(lo - self._start, len(self._buf))
            self._buf, self._start = self._buf[drop:], self._start + drop
        have = self._start + len(self._buf)
        if have < hi:
            parts = [self._buf] if len(self._buf) else []
            while have < hi:
                nxt = next(self._it, None)
                if nxt is None:
                    raise InputError("<stream>", "audio ended before its scanned length")
                if have + len(nxt) <= lo:  # wholly before the window (a gap between windows): never held
                    have += len(nxt)
                    self._start = have
                    continue
                parts.append(nxt)
                have += len(nxt)
            self._buf = np.concatenate(parts)
            if lo > self._start:  # the start fell in blocks just read
                self._buf, self._start = self._buf[lo - self._start:], lo
        return self._buf[lo - self._start:hi - self._start]
