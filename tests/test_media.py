"""Tests for foleybench.media: round trips, DSP, bad input, and the shared real clips."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as taf

from foleybench import media as m
from foleybench.api import InputError

BACKENDS = ["decord", "pyav"]


def smooth_frames(t: int, h: int, w: int) -> np.ndarray:
    """uint8 [t, h, w, 3]: gentle gradients drifting over time (easy for H.264)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = [np.stack([60 + 120 * xx / w + 2 * i, 60 + 120 * yy / h, np.full_like(xx, 128.0 - 2 * i)], -1)
           for i in range(t)]
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def noise(c: int, n: int, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    """float32 [c, n] white Gaussian noise, clipped to [-1, 1]."""
    return (amp * np.random.default_rng(seed).standard_normal((c, n))).clip(-1, 1).astype(np.float32)


def lowpass_noise(c: int, n: int, sr: int, seed: int = 0) -> np.ndarray:
    """float32 [c, n] noise band-limited to < 3 kHz, which AAC keeps nearly intact (white
    noise is not: AAC drops the top band and swaps noisy bands for synthetic noise)."""
    x = noise(c, n * 6000 // sr + 64, seed)
    return taf.resample(torch.from_numpy(x), 6000, sr).numpy()[:, :n].copy()


def best_lag(x: np.ndarray, y: np.ndarray, max_lag: int = 64) -> int:
    """Lag (samples) at which x best matches y, searched over +-max_lag."""
    core = slice(max_lag + 2048, len(y) - max_lag - 2048)
    scores = [np.dot(x[core.start + lag:core.stop + lag], y[core]) for lag in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fps", [21.5, 25.0, 30000 / 1001])
def test_mp4_round_trip(tmp_path: Path, fps: float) -> None:
    t, h, w, sr = 24, 48, 64, 44100
    frames = smooth_frames(t, h, w)
    n = round(t / fps * sr)
    audio = lowpass_noise(2, n, sr)
    path = m.write_mp4(tmp_path / "clip.mp4", frames, fps, audio, sr)

    info = m.probe(path)
    assert (info.has_video, info.has_audio) == (True, True)
    assert info.fps == pytest.approx(fps, rel=1e-6)
    assert (info.n_frames, info.width, info.height) == (t, w, h)
    assert (info.sample_rate, info.channels) == (sr, 2)
    assert info.duration_s == pytest.approx(t / fps, abs=0.05)

    for backend in BACKENDS:
        clip = m.read_video(path, backend=backend)
        assert clip.frames.shape == (t, h, w, 3) and clip.frames.dtype == np.uint8
        assert clip.fps == pytest.approx(fps, rel=1e-6)
        mae = np.abs(clip.frames.astype(np.int16) - frames).mean()
        assert mae < 3.0, f"{backend}: mean abs pixel error {mae:.2f}"

    got = m.read_audio(path)
    assert got.sample_rate == sr and got.samples.dtype == np.float32
    assert got.samples.shape[0] == 2
    assert abs(got.samples.shape[1] - n) <= 1024  # at most one AAC frame of padding
    assert best_lag(got.samples[0], audio[0]) == 0  # the edit list hides the encoder priming
    assert np.corrcoef(got.samples[0, 4096:n - 4096], audio[0, 4096:n - 4096])[0, 1] > 0.98


def test_mp4_odd_size_is_edge_padded_when_lossy(tmp_path: Path) -> None:
    frames = smooth_frames(6, 31, 45)
    path = m.write_mp4(tmp_path / "odd.mp4", frames, 10, lossless=False)
    info = m.probe(path)
    assert (info.width, info.height, info.has_audio) == (46, 32, False)
    clip = m.read_video(path, backend="pyav")
    assert clip.frames.shape == (6, 32, 46, 3)
    assert np.abs(clip.frames[:, :31, :45].astype(np.int16) - frames).mean() < 3.0
    # the pad replicates the last row/column, it is not a black border
    assert np.abs(clip.frames[:, 31, :45].astype(np.int16) - frames[:, 30]).mean() < 4.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_lossless_mp4_is_exact_and_reproducible(tmp_path: Path, backend: str) -> None:
    """The default writer gives back the very pixels, at any size, and the same bytes twice."""
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (9, 31, 45, 3), dtype=np.uint8)  # noise: worst case for a codec
    a = m.write_mp4(tmp_path / "a.mp4", frames, 21.5)
    b = m.write_mp4(tmp_path / "b.mp4", frames, 21.5)
    assert a.read_bytes() == b.read_bytes()
    clip = m.read_video(a, backend=backend)
    assert clip.fps == pytest.approx(21.5) and np.array_equal(clip.frames, frames)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_video_span(tmp_path: Path, backend: str) -> None:
    fps, t = 20, 40
    levels = 20 + 5 * np.arange(t)  # frame i is flat grey 20 + 5 i
    frames = np.broadcast_to(levels[:, None, None, None], (t, 32, 32, 3)).astype(np.uint8)
    path = m.write_mp4(tmp_path / "ramp.mp4", frames, fps)

    def first_levels(clip: m.VideoClip) -> np.ndarray:
        return clip.frames.reshape(len(clip.frames), -1).mean(axis=1)

    clip = m.read_video(path, start_s=0.5, duration_s=0.5, backend=backend)
    assert len(clip.frames) == 10
    np.testing.assert_allclose(first_levels(clip), levels[10:20], atol=3)
    clip = m.read_video(path, start_s=1.0, max_frames=3, backend=backend)
    np.testing.assert_allclose(first_levels(clip), levels[20:23], atol=3)
    assert len(m.read_video(path, duration_s=10.0, backend=backend).frames) == t  # clipped at the end
    with pytest.raises(InputError, match="ramp.mp4"):
        m.read_video(path, start_s=5.0, backend=backend)


@pytest.mark.parametrize("subtype,tol", [("PCM_16", 1 / 32768), ("FLOAT", 0.0)])
def test_wav_round_trip(tmp_path: Path, subtype: str, tol: float) -> None:
    x = noise(2, 8000, amp=0.4)
    path = m.write_wav(tmp_path / "a.wav", x, 16000, subtype=subtype)
    got = m.read_audio(path)
    assert got.sample_rate == 16000 and got.samples.shape == x.shape
    assert np.max(np.abs(got.samples - x)) <= tol
    assert not list(tmp_path.glob(".a.*"))  # the temporary file was renamed away


def test_write_wav_1d_clips_and_flac(tmp_path: Path) -> None:
    x = np.array([0.0, 0.5, 1.7, -2.0], np.float32)
    got = m.read_audio(m.write_wav(tmp_path / "b.wav", x, 8000)).samples
    assert got.shape == (1, 4)
    np.testing.assert_allclose(got[0], [0.0, 0.5, 1.0, -1.0], atol=1 / 32768)  # clipped, not wrapped
    y = noise(1, 4000)
    got = m.read_audio(m.write_wav(tmp_path / "c.flac", y, 8000)).samples
    assert np.max(np.abs(got - y)) <= 1 / 32768


def test_read_audio_options(tmp_path: Path) -> None:
    x = noise(2, 48000, amp=0.2)
    path = m.write_wav(tmp_path / "s.wav", x, 48000, subtype="FLOAT")
    part = m.read_audio(path, start_s=0.25, duration_s=0.5).samples
    np.testing.assert_array_equal(part, x[:, 12000:36000])
    mono = m.read_audio(path, mono=True, sample_rate=16000)
    assert mono.sample_rate == 16000 and mono.samples.shape == (1, 16000)
    ref = taf.resample(torch.from_numpy(x.mean(0, keepdims=True)), 48000, 16000).numpy()
    np.testing.assert_allclose(mono.samples, ref, atol=1e-6)


# ----------------------------------------------------------------------------- DSP
def test_resample_matches_torchaudio_and_identity() -> None:
    x = noise(2, 44100)
    got = m.resample(x, 44100, 16000)
    ref = taf.resample(torch.from_numpy(x), 44100, 16000).numpy()
    assert got.shape == (2, 16000) and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)
    same = m.resample(x, 16000, 16000)
    np.testing.assert_array_equal(same, x)
    assert same is not x
    assert "lowpass_filter_width=6" in m.RESAMPLER and "rolloff=0.99" in m.RESAMPLER


def test_to_mono_remove_dc_is_silent() -> None:
    x = np.array([[1.0, 3.0], [3.0, 5.0]], np.float32)
    np.testing.assert_array_equal(m.to_mono(x), [[2.0, 4.0]])
    np.testing.assert_allclose(m.remove_dc(x), [[-1.0, 1.0], [-1.0, 1.0]])
    assert m.is_silent(np.zeros((2, 100), np.float32))
    assert not m.is_silent(np.full((1, 10), 1e-3, np.float32))
    assert m.is_silent(np.full((1, 10), 1e-3, np.float32), eps=1e-2)


def test_preprocess_audio_order() -> None:
    sr, target, secs = 48000, 16000, 8.0
    t = np.arange(10 * sr) / sr
    # stereo, a DC offset per channel, and a slow ramp so that the mean of the first 8 s
    # differs from the whole clip's mean: DC must be removed *before* truncation.
    x = np.stack([0.2 * np.sin(2 * np.pi * 300 * t) + 0.3 + 0.05 * t,
                  0.1 * np.sin(2 * np.pi * 500 * t) - 0.1]).astype(np.float32)
    y = m.preprocess_audio(x, sr, target, clip_seconds=secs)
    assert y.shape == (int(secs * target),) and y.dtype == np.float32
    mono = x.mean(0)
    ref = taf.resample(torch.from_numpy(mono - mono.mean()), sr, target).numpy()[: int(secs * target)]
    np.testing.assert_allclose(y, ref, atol=1e-5)
    full = m.preprocess_audio(x, sr, target)
    assert full.shape == (10 * target,) and abs(full.mean()) < 1e-3
    wrong_order = m.remove_dc(ref[None])[0]  # truncate-then-DC gives a different signal
    assert np.abs(wrong_order - y).max() > 0.01


# ----------------------------------------------------------------------------- bad input
def _mp4_without_data(path: Path, with_audio: bool) -> Path:
    """A faststart mp4 cut right after its header: streams declared, no packets."""
    full = path.with_name("full_" + path.name)
    with av.open(str(full), "w", options={"movflags": "faststart"}) as c:
        if with_audio:
            s = c.add_stream("aac", rate=16000, layout="mono")
            for i in range(0, 16000, 1024):
                f = av.AudioFrame.from_ndarray(noise(1, 1024), format="fltp", layout="mono")
                f.sample_rate, f.pts, f.time_base = 16000, i, Fraction(1, 16000)
                c.mux(s.encode(f))
        else:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
            for i in range(10):
                f = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                f.pts = i
                c.mux(s.encode(f))
        c.mux(s.encode())
    data = full.read_bytes()
    path.write_bytes(data[: data.find(b"mdat") + 4])
    return path


def _bad_case(kind: str, d: Path) -> tuple[Path, str]:
    """(path, reader) for one kind of bad file."""
    p = d / f"{kind}.bin"
    if kind == "missing":
        return d / "missing.mp4", "video"
    if kind == "empty":
        p = d / "empty.wav"
        p.write_bytes(b"")
        return p, "audio"
    if kind == "garbage":
        p = d / "garbage.mp4"
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return p, "video"
    if kind in ("truncated", "no_audio_track"):
        p = m.write_mp4(d / f"{kind}.mp4", smooth_frames(10, 32, 32), 10)
        if kind == "truncated":  # the moov atom sits at the end: cut it off
            p.write_bytes(p.read_bytes()[:-200])
        return p, "video" if kind == "truncated" else "audio"
    if kind == "no_video_stream":
        return m.write_wav(d / "novideo.wav", noise(1, 100), 8000), "video"
    if kind == "zero_length_wav":
        p = d / "zero_len.wav"  # a valid header with no samples (write_wav refuses to make one)
        sf.write(str(p), np.zeros((0, 1), np.float32), 8000)
        return p, "audio"
    if kind in ("nan", "inf"):
        x = noise(1, 100)
        x[0, 50] = np.nan if kind == "nan" else np.inf
        p = d / f"{kind}.wav"
        sf.write(str(p), x.T, 8000, subtype="FLOAT")
        return p, "audio"
    if kind == "no_frames":
        return _mp4_without_data(d / "noframes.mp4", with_audio=False), "video"
    if kind == "no_samples":
        return _mp4_without_data(d / "nosamples.m4a", with_audio=True), "audio"
    raise AssertionError(kind)


BAD = ["missing", "empty", "garbage", "truncated", "no_audio_track", "no_video_stream",
       "zero_length_wav", "nan", "inf", "no_frames", "no_samples"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_raises_input_error(tmp_path: Path, kind: str) -> None:
    path, reader = _bad_case(kind, tmp_path)
    backends = ["auto", "pyav", "decord"] if reader == "video" else [None]
    for backend in backends:
        with pytest.raises(InputError) as err:
            if reader == "video":
                m.read_video(path, backend=backend)
            else:
                m.read_audio(path)
        assert err.value.where == str(path) and str(err.value).startswith(f"{path}: ")
        assert isinstance(err.value, ValueError)


def test_probe_and_writers_reject_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="garbage"):
        m.probe(_bad_case("garbage", tmp_path)[0])
    with pytest.raises(InputError, match="file not found"):
        m.probe(tmp_path / "nope.wav")
    with pytest.raises(InputError, match="NaN/inf"):
        m.write_wav(tmp_path / "x.wav", np.array([0.0, np.nan]), 8000)
    assert not (tmp_path / "x.wav").exists()
    with pytest.raises(InputError, match="no frames"):
        m.write_mp4(tmp_path / "x.mp4", np.zeros((0, 8, 8, 3), np.uint8), 10)
    with pytest.raises(InputError, match="uint8"):
        m.check_video(np.zeros((2, 8, 8, 3), np.float32), "f.mp4")
    with pytest.raises(InputError, match="zero-length"):
        m.check_audio(np.zeros((2, 0), np.float32), "f.wav")


# ----------------------------------------------------------------------------- read economy
class _Spy:
    """Wraps a PyAV input container and counts decoded frames per stream type."""

    def __init__(self, c: av.container.InputContainer) -> None:
        self.c, self.decoded = c, {"video": 0, "audio": 0}
        _Spy.last = self

    def __getattr__(self, k: str):
        return getattr(self.c, k)

    def __enter__(self) -> _Spy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.c.close()

    def decode(self, *streams):
        for f in self.c.decode(*streams):
            self.decoded["video" if isinstance(f, av.VideoFrame) else "audio"] += 1
            yield f

    def demux(self, *streams):
        for pk in self.c.demux(*streams):
            orig = pk.decode

            def counted(orig=orig, kind=pk.stream.type):
                out = orig()
                self.decoded[kind] += len(out)
                return out
            yield _PacketProxy(pk, counted)


class _PacketProxy:
    def __init__(self, pk: av.Packet, decode) -> None:
        self._pk, self.decode = pk, decode

    def __getattr__(self, k: str):
        return getattr(self._pk, k)


def test_reads_decode_only_what_is_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = m.write_mp4(tmp_path / "long.mp4", smooth_frames(60, 32, 32), 20, noise(2, 3 * 16000), 16000)
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _Spy(real_open(*a, **k)))
    assert len(m.read_video(path, max_frames=5, backend="pyav").frames) == 5
    assert _Spy.last.decoded["video"] == 5
    audio = m.read_audio(path)
    assert audio.samples.shape == (2, 3 * 16000)
    assert _Spy.last.decoded == {"video": 0, "audio": pytest.approx(3 * 16000 / 1024, abs=2)}


# ----------------------------------------------------------------------------- real clips
# name: (fps, width, height); all are ~10 s with AAC stereo 44.1 kHz
REAL = {
    "0B4dYTMsgHA_000130.mp4": (30.0, 1280, 720),
    "F8Zt3mYlOqU_000094.mp4": (25.0, 1280, 720),
    "difffoley_car.mp4": (21.5, 640, 360),
    "difffoley_drum.mp4": (21.5, 640, 360),
    "difffoley_gun.mp4": (21.5, 480, 360),
}
# stream-copied VGGSound cut: an edit list hides 2.2 s of pre-roll frames that decord counts
DECORD_MISINDEXED = {"F8Zt3mYlOqU_000094.mp4"}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_clip(shared_dir: Path, name: str) -> None:
    path = shared_dir / "data" / "realclips" / name
    fps, w, h = REAL[name]
    info = m.probe(path)
    assert (info.fps, info.width, info.height, info.sample_rate, info.channels) == (fps, w, h, 44100, 2)
    assert info.duration_s == pytest.approx(10.0, abs=0.1)
    assert info.n_frames == pytest.approx(10 * fps, abs=2)

    n = round(2 * fps)
    clips = {b: m.read_video(path, duration_s=2.0, backend=b) for b in ["auto", "pyav"]}
    if name in DECORD_MISINDEXED:
        with pytest.raises(InputError, match="decord mis-indexes"):
            m.read_video(path, duration_s=2.0, backend="decord")
    else:
        clips["decord"] = m.read_video(path, duration_s=2.0, backend="decord")
    for b, clip in clips.items():
        assert clip.frames.shape == (n, h, w, 3), b
        assert clip.fps == fps, b
    for b, clip in clips.items():  # same frames, not just the same count
        assert np.abs(clip.frames[::10].astype(np.int16) - clips["pyav"].frames[::10]).mean() < 1.0, b

    # seeking (0B4d has a keyframe at 8.33 s) lands on the same frame in both backends
    late = {b: m.read_video(path, start_s=9.0, max_frames=2, backend=b).frames for b in clips}
    for b, frames in late.items():
        assert frames.shape == (2, h, w, 3) and np.array_equal(frames, late["pyav"]), b

    audio = m.read_audio(path)
    assert audio.sample_rate == 44100 and audio.samples.shape[0] == 2
    assert abs(audio.samples.shape[1] - 441000) < 2048  # priming hidden, padding trimmed
    assert not m.is_silent(audio.samples)
    part = m.read_audio(path, start_s=3.0, duration_s=1.0, sample_rate=16000, mono=True)
    assert part.samples.shape == (1, 16000)


def test_real_wav(shared_dir: Path) -> None:
    path = shared_dir / "data" / "realclips" / "FwVYUHKoLtQ_000034.wav"
    info = m.probe(path)
    assert (info.has_video, info.has_audio, info.sample_rate, info.channels) == (False, True, 16000, 1)
    audio = m.read_audio(path)
    assert audio.samples.shape == (1, 160029)
    assert audio.samples.dtype == np.float32 and np.abs(audio.samples).max() <= 1.0
    y = m.preprocess_audio(audio.samples, 16000, 16000, clip_seconds=8.0)
    assert y.shape == (128000,)


@pytest.mark.parametrize("rates", [(48000, 24000), (48000, 16000), (44100, 16000), (22050, 32000), (8000, 48000)])
def test_blockwise_resample_is_bit_identical(monkeypatch, rates: tuple[int, int]) -> None:
    """Long inputs are resampled block by block (bounded memory); every output sample must
    equal torchaudio's one-shot result to float32 rounding (same window and kernel; only the
    convolution's accumulation order may differ with the block's size), block edges and
    signal ends included."""
    x = np.random.default_rng(3).standard_normal((1, 50_003)).astype(np.float32)
    whole = taf.resample(torch.from_numpy(x), *rates).numpy()
    monkeypatch.setattr(m, "RESAMPLE_BLOCK", 4096)
    blocks = m.resample(x, *rates)
    assert blocks.shape == whole.shape
    assert np.abs(blocks - whole).max() <= 1e-6 * np.abs(whole).max()


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_read_video_pick_selects_the_same_frames(tmp_path: Path, backend: str) -> None:
    """``pick`` decodes (decord) or keeps (PyAV) only the chosen frames of the span: the
    same frames as selecting from the whole span afterwards."""
    path = m.write_mp4(tmp_path / "p.mp4", smooth_frames(30, 32, 32), 10, noise(1, 3 * 16000), 16000)
    whole = m.read_video(path, start_s=0.5, duration_s=2.0, backend=backend)
    seen = []

    def pick(n: int, fps: float) -> np.ndarray:
        seen.append((n, fps))
        return np.array([0, 7, 19])

    picked = m.read_video(path, start_s=0.5, duration_s=2.0, backend=backend, pick=pick)
    assert seen == [(len(whole.frames), whole.fps)]
    assert np.array_equal(picked.frames, whole.frames[[0, 7, 19]])
