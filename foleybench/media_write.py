"""Writers: atomic wav/flac and mp4 (H.264 + AAC) files, re-exported by :mod:`foleybench.media`.

Every file appears under its final name complete or not at all (temp file in the same
folder + ``os.replace``).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import soundfile as sf

from foleybench.media import check_audio, check_video

TEMP_SUFFIX = ".part"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success os.replace it into place.

    The temp name is a dot-file ending in :data:`TEMP_SUFFIX`, never the media suffix:
    a run killed mid-write leaves ``.ID.xxxx.part``, which pairing never takes for a
    prediction. The file gets the mode the umask gives a new file (mkstemp's 0600 would
    keep colleagues from reading a shared set)."""
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=TEMP_SUFFIX, dir=dst.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write [C, N] or [N] float audio atomically. Integer subtypes clip to [-1, 1] first
    (libsndfile would otherwise wrap around). The format follows the suffix (.wav, .flac)."""
    a = np.asarray(samples, dtype=np.float32)
    a = check_audio(a[None] if a.ndim == 1 else a, path)
    if subtype.startswith("PCM"):
        a = np.clip(a, -1.0, 1.0)
    fmt = "FLAC" if Path(path).suffix.lower() == ".flac" else "WAV"
    with _atomic_target(path) as tmp:
        sf.write(str(tmp), a.T, int(sample_rate), subtype=subtype, format=fmt)
    return Path(path)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float | Fraction,
              audio: np.ndarray | None = None, sample_rate: int | None = None, crf: int = 18,
              lossless: bool = True) -> Path:
    """Encode uint8 [T, H, W, 3] RGB as H.264 plus optional AAC audio [C, N] float at
    sample_rate Hz, atomically. fps is kept as an exact fraction (21.5 -> 43/2).

    lossless (default): libx264rgb at qp 0, RGB 4:4:4. Decoding gives back the exact
    frames, on every run: lossy libx264 gave different bitstreams *and different decoded
    pixels* from run to run for identical input (even single-threaded), which made scores
    of harness-written media (synthfoley, baseline outputs) drift. The price: players that
    only take 4:2:0 will not show these files.
    lossless=False: libx264 yuv420p at ``crf``; an odd width or height is padded by one
    replicated edge column/row (yuv420p needs even sizes)."""
    frames = check_video(frames, path)
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if audio is not None:
        if sample_rate is None:
            raise ValueError("sample_rate is required with audio")
        audio = np.asarray(audio, dtype=np.float32)
        audio = np.clip(check_audio(audio[None] if audio.ndim == 1 else audio, path), -1.0, 1.0)
    _, h, w, _ = frames.shape
    if not lossless and (h % 2 or w % 2):
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with _atomic_target(path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as c:
            if lossless:
                vs = c.add_stream("libx264rgb", rate=rate, options={"qp": "0", "threads": "1"})
                pix = "rgb24"
            else:
                vs = c.add_stream("libx264", rate=rate, options={"crf": str(crf)})
                pix = "yuv420p"
            vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], pix
            ast = None
            if audio is not None:
                ast = c.add_stream("aac", rate=int(sample_rate), layout={1: "mono", 2: "stereo"}.get(audio.shape[0], f"{audio.shape[0]}c"))
            for i, f in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
                vf.pts, vf.time_base = i, 1 / rate
                c.mux(vs.encode(vf))
            c.mux(vs.encode())
            if ast is not None:
                step = 1024  # AAC frame size
                for s in range(0, audio.shape[1], step):
                    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, s:s + step]), format="fltp",
                                                    layout=ast.layout)
                    af.sample_rate, af.pts, af.time_base = int(sample_rate), s, Fraction(1, int(sample_rate))
                    c.mux(ast.encode(af))
                c.mux(ast.encode())
    return Path(path)
