"""Long videos with bounded memory (issue 15, item 7): ImageBind's video side samples one
frame per 2 s over the whole clip, so a long video's sampled frames were held whole (271 MB
of 224 p frames for 60 minutes). A video longer than ``imagebind.LONG_VIDEO_S`` is now
planned (which frames) when loaded and decoded a few frames at a time when embedded.

Here the threshold and the pass size are shrunk so a 24 s test video takes the streamed
route; the frames must be exactly the plain reader's and the embedding the in-memory
route's up to float32 rounding of the mean.

AV-Align's audio onsets (V2A: of the generated audio) read the whole file, resampled it and
took its whole spectrogram (librosa); a long file's onsets are now streamed
(``av_align.streamed_audio_onsets``) and must equal librosa's on short files cut into many
small blocks.
"""
from __future__ import annotations

import importlib
import sys

import av
import numpy as np
import pytest

from foleybench import media
from foleybench.api import InputError, ScoreContext
from foleybench.metrics.embedders import imagebind as ib
from foleybench.metrics.functional import video_preprocess as vp


def _video(path, seconds: float = 24.0, fps: float = 2.0) -> str:
    n = int(seconds * fps)
    yy, xx = np.mgrid[0:48, 0:64]
    frames = np.zeros((n, 48, 64, 3), np.uint8)
    for i in range(n):
        frames[i][(xx - 5 - i) ** 2 + (yy - 24) ** 2 < 60] = 255
        frames[i][..., 1] = (i * 9) % 256
    media.write_mp4(path, frames, fps)
    return str(path)


def _pick(n: int, fps: float) -> np.ndarray:
    return vp.sample_at_rate(n, fps, ib.VIDEO_FPS)


@pytest.mark.parametrize("backend", ["decord", "pyav-fallback", "pyav"])
def test_picked_frames_stream_is_the_reader(tmp_path, monkeypatch, backend):
    path = _video(tmp_path / "v.mp4")
    whole = media.read_video(path, pick=_pick, backend="pyav").frames
    if backend == "pyav-fallback":
        monkeypatch.setitem(sys.modules, "decord", None)  # import fails: PyAV, as read_video
    plan = media.plan_picked(path, duration_s=None, pick=_pick, backend="pyav" if backend == "pyav" else "auto")
    assert plan.backend == backend.split("-")[0] and len(plan) == len(whole) == 12
    batches = list(media.iter_picked(plan, batch=5))
    assert [len(b) for b in batches] == [5, 5, 2]
    assert np.array_equal(np.concatenate(batches), whole)
    # a clip length caps the span the pick sees, as read_video's duration_s does
    assert len(media.plan_picked(path, duration_s=10.0, pick=_pick)) == 5

    def repeats(n: int, fps: float) -> np.ndarray:
        return np.array([1, 4, 4, 4, 30])

    plan = media.plan_picked(path, duration_s=None, pick=repeats)
    assert np.array_equal(np.concatenate(list(media.iter_picked(plan, batch=2))),
                          media.read_video(path, pick=repeats, backend="pyav").frames)


def test_plan_picked_names_the_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(InputError, match="bad.mp4"):
        media.plan_picked(str(bad), duration_s=None, pick=_pick)


def test_imagebind_long_video_streams_to_the_in_memory_value(tmp_path, monkeypatch):
    path = _video(tmp_path / "v.mp4")
    ctx = ScoreContext(device="cpu", proxy=True)
    emb = ib.build(mode="proxy", seed=0)
    short = emb.load_input(path, ctx)  # 24 s < LONG_VIDEO_S: the plain route, frames held
    assert isinstance(short, np.ndarray) and short.shape[0] == 12
    ref = emb.embed_inputs([short])[0]
    monkeypatch.setattr(ib, "LONG_VIDEO_S", 5.0)
    monkeypatch.setattr(ib, "STREAM_PAIRS", 4)  # 11 pairs: passes of 4, 4 + carried frame, 3
    long = emb.load_input(path, ctx)
    assert isinstance(long, ib.LongVideo) and len(long.plan) == 12
    streamed = emb.embed_inputs([long, short])  # a batch may mix both routes
    assert streamed[0].shape == ref.shape == (1, emb.dim)
    assert np.array_equal(streamed[1], ref)
    np.testing.assert_allclose(streamed[0], ref, rtol=1e-5, atol=1e-6)
    # the clip length still bounds what is sampled: 10 s is not long, 20 s is
    assert isinstance(emb.load_input(path, ScoreContext(device="cpu", proxy=True, clip_seconds=4.0)), np.ndarray)
    assert len(emb.load_input(path, ScoreContext(device="cpu", proxy=True, clip_seconds=20.0)).plan) == 10


# ------------------------------------------------------------------ AV-Align's audio onsets
def _clicks(seconds: float, rate: int, channels: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 0.01 * rng.standard_normal((int(seconds * rate), channels))
    for t in rng.uniform(0.2, seconds - 0.2, int(seconds * 2)):
        i = int(t * rate)
        x[i:i + rate // 50] += rng.uniform(0.3, 0.8) * np.hanning(rate // 50)[:, None]
    return x.astype(np.float32)


@pytest.mark.parametrize("rate,channels,fmt", [(44100, 2, "wav"), (22050, 1, "wav"), (48000, 2, "m4a"),
                                               (16000, 6, "flac")])
def test_streamed_onsets_are_librosas(tmp_path, monkeypatch, rate, channels, fmt):
    import librosa
    import soundfile as sf

    from foleybench import media_long
    A = importlib.import_module("foleybench.metrics.functional.av_align")

    x = _clicks(8.3, rate, channels)
    path = tmp_path / f"a.{fmt}"
    if fmt == "m4a":
        c = av.open(str(path), "w")
        st = c.add_stream("aac", rate=rate)
        st.layout = "stereo"
        pts = 0
        for i in range(0, len(x) - 1024, 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[i:i + 1024].T), format="fltp", layout="stereo")
            fr.sample_rate, fr.pts = rate, pts
            pts += 1024
            for pk in st.encode(fr):
                c.mux(pk)
        for pk in st.encode():
            c.mux(pk)
        c.close()
    else:
        sf.write(str(path), x, rate)
    samples, sr = A._read_audio(path)
    y = librosa.resample(librosa.to_mono(samples), orig_sr=sr, target_sr=A.AUDIO_SR, res_type="soxr_hq")
    whole_env = librosa.onset.onset_strength(y=y, sr=A.AUDIO_SR)
    whole = A.audio_onsets(samples, sr)
    monkeypatch.setattr(media_long, "_BLOCK", 5000)  # many decoder blocks
    monkeypatch.setattr(A, "ONSET_BLOCK_FRAMES", 37)  # many STFT blocks, odd sizes
    env = A.streamed_onset_envelope(path)
    # the mel product is a float32 BLAS call whose rounding follows its column blocking
    # (the whole-array call's result also changes with the thread count): rounding level
    assert env.dtype == whole_env.dtype and env.shape == whole_env.shape
    np.testing.assert_allclose(env, whole_env, rtol=1e-5, atol=1e-6 * float(whole_env.max()))
    assert len(whole) > 5 and np.array_equal(A.streamed_audio_onsets(path), whole)
    # the metric's reader takes the streamed route above media_long.LEAN_ABOVE_S
    calls = []
    monkeypatch.setattr(A, "streamed_audio_onsets", lambda p: calls.append(p) or whole)
    monkeypatch.setattr(media_long, "LEAN_ABOVE_S", 5.0)
    A._onsets_of(path)
    assert calls == [path]


def test_streamed_onsets_name_an_empty_file(tmp_path):
    import soundfile as sf

    A = importlib.import_module("foleybench.metrics.functional.av_align")

    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros((0, 1), np.float32), 22050)
    with pytest.raises(InputError, match="empty.wav"):
        A.streamed_audio_onsets(path)


def test_pyav_pick_of_a_long_span_holds_only_the_picked_frames(tmp_path, monkeypatch):
    """read_video's PyAV route (decord missing or mis-indexing) with ``pick``: a span longer
    than media.PICK_STREAM_ABOVE_S is counted, then decoded again keeping the picked frames
    (repeats included), never held whole; the frames are those of the plain route."""
    path = _video(tmp_path / "v.mp4")

    def pick(n: int, fps: float) -> np.ndarray:
        return np.array([0, 3, 3, min(n - 1, 9), 7])  # repeated and unordered, as a pick may return

    plain = media.read_video(path, pick=pick, backend="pyav").frames
    held = []
    real = media._read_video_pyav
    monkeypatch.setattr(media, "_read_video_pyav", lambda *a: held.append(a) or real(*a))
    monkeypatch.setattr(media, "PICK_STREAM_ABOVE_S", 5.0)
    streamed = media.read_video(path, pick=pick, backend="pyav").frames
    assert held == [] and np.array_equal(streamed, plain)
    # a clip length under the threshold keeps the plain route
    media.read_video(path, duration_s=4.0, pick=pick, backend="pyav")
    assert len(held) == 1


def test_imagebind_long_video_decode_error_excludes_only_that_clip(tmp_path, monkeypatch):
    """A long video is decoded only while embedded: a decoder error there is that clip's
    InputError (naming the file), and the other clips of the batch are embedded."""
    from foleybench.cache import cached_apply

    good, bad = _video(tmp_path / "good.mp4"), _video(tmp_path / "bad.mp4", seconds=26.0)  # not one content key
    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=str(tmp_path / "cache"))
    emb = ib.build(mode="proxy", seed=0)
    monkeypatch.setattr(ib, "LONG_VIDEO_S", 5.0)
    real = media.iter_picked

    def failing(plan, batch=16):
        if plan.path.endswith("bad.mp4"):
            raise InputError(plan.path, "corrupt video stream (test)")
        return real(plan, batch)

    monkeypatch.setattr(media, "iter_picked", failing)
    out = cached_apply(emb, [bad, good], ctx, "ib_video", load=lambda p: emb.load_video(p, ctx),
                       apply=emb.embed_video)
    assert isinstance(out[0], InputError) and "bad.mp4" in str(out[0]) and "corrupt" in str(out[0])
    assert isinstance(out[1], np.ndarray) and out[1].shape == (1, emb.dim)
    # nothing was cached for the bad clip: a second run reports it again
    again = cached_apply(emb, [bad], ctx, "ib_video", load=lambda p: emb.load_video(p, ctx), apply=emb.embed_video)
    assert isinstance(again[0], InputError)
