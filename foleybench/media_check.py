"""Declared versus decodable length: catch half-broken media before they are scored.

A file cut short (an interrupted copy, a crashed writer) often still opens: a wav
whose RIFF header declares 1 s but holds 0.5 s of samples decodes to 0.5 s without an
error, and an mp4 whose sample table (``moov``) declares 16 frames but whose ``mdat``
was cut after 8 demuxes 8 (FFmpeg only logs "partial file"). Scoring such a file
silently changes the score, so :func:`check_complete` compares what the header declares
with what is actually there and raises :class:`~foleybench.api.InputError` naming the
file and both lengths when the shortfall exceeds the tolerance (docs/PROTOCOL.md,
"Declared vs decoded"): ``max(TOLERANCE_S, TOLERANCE_FRAC * declared)``.

Only headers are parsed and packets demuxed (never decoded), so the check is cheap; its
answer is remembered per (path, size, mtime) like file hashes (foleybench.hashing).
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import av
import soundfile as sf

from foleybench.api import InputError
from foleybench.hashing import cached_by_stat

TOLERANCE_S = 0.1        # one AAC frame at 16 kHz (0.064 s) and one video frame at 10 fps fit in it
TOLERANCE_FRAC = 0.01    # and 1 % of the declared length on long files
CHECK_VERSION = "3"      # part of the remembered answer's key: bump when the rule changes
# Sample rates a header may declare (Hz). Outside, the header is wrong, not the audio
# unusual: a "1 Hz" wav of 16000 samples would decode to 4.4 hours at 16 kHz.
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000
# What soundfile reports for a file's content, by the name's suffix (sf.info().format).
_FORMAT_OF_SUFFIX = {".wav": ("WAV", "WAVEX", "RF64", "W64"), ".flac": ("FLAC",), ".ogg": ("OGG",),
                     ".aiff": ("AIFF", "AIFC"), ".aif": ("AIFF", "AIFC")}


def tolerance_s(declared_s: float) -> float:
    """The largest shortfall (seconds) accepted for a file declaring ``declared_s``."""
    return max(TOLERANCE_S, TOLERANCE_FRAC * declared_s)


def _short(path: str, what: str, declared_s: float, found_s: float) -> str | None:
    if declared_s - found_s > tolerance_s(declared_s):
        return (f"truncated: the header declares {declared_s:.3f} s of {what} but only {found_s:.3f} s "
                f"is there (tolerance {tolerance_s(declared_s):.3f} s)")
    return None


def _wav_problem(p: Path) -> str | None:
    """RIFF/WAVE: the ``data`` chunk's declared size against the bytes after it."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None  # RF64, W64...: libsndfile validates those itself
        byte_rate = 0
        while True:
            ch = f.read(8)
            if len(ch) < 8:
                return None  # no data chunk: soundfile reports it on decode
            cid, n = ch[:4], struct.unpack("<I", ch[4:])[0]
            if cid == b"fmt ":
                fmt = f.read(n + (n & 1))
                if len(fmt) >= 12:
                    byte_rate = struct.unpack("<I", fmt[8:12])[0]
                continue
            if cid == b"data":
                if n in (0, 0xFFFFFFFF) or not byte_rate:
                    return None  # streaming writers leave the size open: nothing is declared
                there = size - f.tell()
                return _short(str(p), "audio", n / byte_rate, min(n, there) / byte_rate)
            f.seek(n + (n & 1), os.SEEK_CUR)


def _flac_problem(p: Path) -> str | None:
    """FLAC: STREAMINFO's total samples against the samples that decode."""
    try:
        with sf.SoundFile(str(p)) as f:
            declared, sr = f.frames, f.samplerate
            n = 0
            for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                n += block.shape[0]
    except (sf.LibsndfileError, RuntimeError) as e:
        raise InputError(p, f"unreadable or corrupt audio file ({e})") from e
    return _short(str(p), "audio", declared / sr, n / sr) if declared > 0 and sr else None


def _container_problem(p: Path) -> str | None:
    """mp4/mkv/...: each stream's declared duration against the packets that demux."""
    try:
        c = av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as e:
        raise InputError(p, f"unreadable or corrupt container ({e})") from e
    with c:
        streams = [s for s in (c.streams.video[:1] + c.streams.audio[:1])]
        declared: dict[int, float] = {}
        for s in streams:
            if s.duration and s.time_base:
                declared[s.index] = float(s.duration * s.time_base)
        if not declared:
            return None
        found = {s.index: 0.0 for s in streams}
        start = {s.index: float((s.start_time or 0) * s.time_base) for s in streams}
        first_key: dict[int, float] = {}  # video: where decoding can begin (its first keyframe)
        try:
            for pk in c.demux(streams):
                if not pk.size or pk.pts is None:
                    continue
                t = float(pk.pts * pk.stream.time_base) - start[pk.stream.index]
                if pk.is_keyframe and pk.stream.type == "video" and pk.stream.index not in first_key:
                    first_key[pk.stream.index] = t  # also a discarded pre-roll keyframe (a stream-copied cut)
                if pk.is_discard:
                    continue
                end = t + float((pk.duration or 0) * pk.stream.time_base)
                found[pk.stream.index] = max(found[pk.stream.index], end)
        except av.error.FFmpegError as e:
            raise InputError(p, f"corrupt container ({e})") from e
        for s in streams:  # frames before the first keyframe cannot decode: the video would start late
            lost = first_key.get(s.index, 0.0) if s.type == "video" else 0.0
            if s.index in declared and lost > tolerance_s(declared[s.index]):
                return (f"the video's first keyframe is at {lost:.3f} s: the frames before it cannot be decoded "
                        f"(a cut without its keyframe); it would start late (tolerance "
                        f"{tolerance_s(declared[s.index]):.3f} s)")
        for s in streams:
            if s.index in declared:
                what = "video" if s.type == "video" else "audio"
                problem = _short(str(p), what, declared[s.index], found[s.index])
                if problem:
                    return problem
    return None


def rate_problem(rate: float | None) -> str | None:
    """Why a declared sample rate cannot be a real one, or None."""
    if rate is not None and not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        return (f"implausible sample rate {rate:g} Hz in the header (accepted {MIN_SAMPLE_RATE}.."
                f"{MAX_SAMPLE_RATE} Hz)")
    return None


def _rate_problem(p: Path) -> str | None:
    if p.suffix.lower() in _FORMAT_OF_SUFFIX:
        try:
            return rate_problem(sf.info(str(p)).samplerate)
        except (sf.LibsndfileError, RuntimeError):
            return None  # unreadable: the decoder reports it
    try:
        with av.open(str(p)) as c:
            return rate_problem(c.streams.audio[0].codec_context.sample_rate) if c.streams.audio else None
    except (av.error.FFmpegError, UnicodeDecodeError, OSError):
        return None


def _problem(path: str) -> str:
    p = Path(path)
    suffix = p.suffix.lower()
    rate = _rate_problem(p)
    if rate:
        return rate
    if suffix == ".wav":
        return _wav_problem(p) or ""
    if suffix == ".flac":
        return _flac_problem(p) or ""
    if suffix in (".ogg", ".aiff", ".aif"):
        return ""
    return _container_problem(p) or ""


def check_complete(path: str | os.PathLike) -> None:
    """Raise :class:`InputError` when ``path`` declares more than it holds (module docstring)."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return  # missing and empty files are the readers' to report
    problem = cached_by_stat(p, f"complete/{CHECK_VERSION}", lambda: _problem(str(p)))
    if problem:
        raise InputError(p, problem)


def format_note(path: str | os.PathLike) -> str | None:
    """A warning when a file's content is another format than its name says (an mp3 or
    Ogg file named ``.wav``): it is decoded by its content, and this says so."""
    p = Path(path)
    want = _FORMAT_OF_SUFFIX.get(p.suffix.lower())
    if not want:
        return None
    try:
        fmt = sf.info(str(p)).format
    except (sf.LibsndfileError, RuntimeError):
        return None  # unreadable: the decoder reports it
    if fmt in want:
        return None
    return f"{p}: holds {fmt} data, not {want[0]} as its name says; decoded as {fmt}"


# ------------------------------------------------------------------ protocol length
def protocol_length(pred_s: float, clip_seconds: float | None, ref_s: float | None,
                    step_s: float = 0.0) -> tuple[str, str | None]:
    """The length rule for a prediction of ``pred_s`` seconds (docs/PROTOCOL.md, "Released
    samples"): ``("cut", None)`` when it is longer than the protocol length ``clip_seconds``
    (the embedders cut it), ``("short", reason)`` when it is shorter than required, else
    ``("ok", None)``. Required: ``min(clip_seconds, ref_s)`` (a prediction need not be
    longer than the clip it is compared with), less :func:`tolerance_s` of it. Without
    ``clip_seconds`` there is no protocol length: every prediction is scored whole.
    ``step_s``: one sample or frame; a length within half a step of ``clip_seconds`` is not cut.
    """
    if clip_seconds is None:
        return "ok", None
    need = clip_seconds if ref_s is None or ref_s <= 0 else min(clip_seconds, ref_s)
    if need - pred_s > tolerance_s(need):
        whose = "the protocol length" if need == clip_seconds else "the reference clip's length"
        return "short", (f"too short: {pred_s:.3f} s, {whose} is {need:.3f} s (tolerance {tolerance_s(need):.3f} s); "
                         "excluded, never padded")
    if pred_s > clip_seconds + step_s / 2:
        return "cut", None
    return "ok", None
