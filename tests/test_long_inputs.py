"""Long inputs with bounded memory (issue 15, item 7): the streamed paths compute exactly
what the whole-file paths compute.

The memory figures themselves are measured by ``benchmarks/perf_memory.py`` (minutes, not a
test); here the streamed code runs on short files with its thresholds and block sizes
shrunk, so every branch (several resampler blocks, an early stop at the protocol length,
AAC's held-back tail) is exercised against the plain reader, bit for bit.
"""
from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from foleybench import media, media_long
from foleybench.api import InputError


def _aac(path, seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    c = av.open(str(path), "w")
    st = c.add_stream("aac", rate=rate)
    st.layout = "stereo" if channels == 2 else "mono"
    pts = 0
    for _ in range(int(seconds * rate / 1024)):
        x = (0.1 * rng.standard_normal((channels, 1024)) + 0.02).astype(np.float32)
        fr = av.AudioFrame.from_ndarray(x, format="fltp", layout=st.layout.name)
        fr.sample_rate, fr.pts = rate, pts
        pts += 1024
        for p in st.encode(fr):
            c.mux(p)
    for p in st.encode():
        c.mux(p)
    c.close()
    return str(path)


def _wav(path, seconds: float, rate: int = 22050, channels: int = 2, seed: int = 1) -> str:
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.standard_normal((int(seconds * rate), channels)) + 0.05).astype(np.float32)
    sf.write(str(path), x, rate, subtype="FLOAT")
    return str(path)


@pytest.fixture()
def small_blocks(monkeypatch):
    """Every file counts as long; resampler blocks of 32768 input samples, soundfile blocks
    of 1000 samples, AAC held back at most 0.05 s."""
    monkeypatch.setattr(media_long, "LEAN_ABOVE_S", 0.0)
    monkeypatch.setattr(media, "RESAMPLE_BLOCK", 1 << 15)
    monkeypatch.setattr(media_long, "_BLOCK", 1000)
    monkeypatch.setattr(media_long, "HOLD_MAX_S", 0.05)


@pytest.mark.parametrize("kind", ["wav", "aac"])
def test_blocks_concatenate_to_the_reader(tmp_path, small_blocks, kind):
    path = _wav(tmp_path / "a.wav", 3.0) if kind == "wav" else _aac(tmp_path / "a.m4a", 3.0)
    whole = media.read_audio(path).samples
    blocks = list(media_long.iter_audio_blocks(path))
    assert len(blocks) > 3  # really streamed
    assert np.array_equal(np.concatenate(blocks, axis=1), whole)
    scan = media_long.scan_audio(path)
    assert scan.n_samples == whole.shape[1] and scan.channels == whole.shape[0]
    assert scan.peak == float(np.abs(whole).max())
    assert scan.mean == media.to_mono(whole).mean(dtype=np.float64).astype(np.float32)


@pytest.mark.parametrize("kind", ["wav", "aac"])
@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("secs", [None, 2.5])
def test_streamed_preprocessing_is_the_plain_path_bit_for_bit(tmp_path, small_blocks, kind, rate, secs):
    path = _wav(tmp_path / "a.wav", 3.0) if kind == "wav" else _aac(tmp_path / "a.m4a", 3.0)
    clip = media.read_audio(path)
    # the plain path, with the same block schedule for the whole-array resampler
    plain = media.preprocess_audio(clip.samples, clip.sample_rate, rate, secs)
    lean = media_long.load_preprocessed(path, rate, secs)
    assert lean.dtype == np.float32 and lean.shape == plain.shape
    assert np.array_equal(lean, plain)


def test_same_rate_streams_without_resampling(tmp_path, small_blocks):
    path = _wav(tmp_path / "a.wav", 2.0, rate=16000)
    clip = media.read_audio(path)
    for secs in (None, 0.5):
        assert np.array_equal(media_long.load_preprocessed(path, 16000, secs),
                              media.preprocess_audio(clip.samples, 16000, 16000, secs))


def test_stream_errors_name_the_file(tmp_path, small_blocks):
    bad = tmp_path / "nan.wav"
    x = np.zeros((5000, 1), np.float32)
    x[4500] = np.nan  # in the 5th soundfile block: found while streaming
    sf.write(str(bad), x, 16000, subtype="FLOAT")
    with pytest.raises(InputError, match="nan.wav.*NaN"):
        media_long.load_preprocessed(str(bad), 16000, None)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(InputError, match="empty.wav"):
        media_long.scan_audio(str(empty))
    video_only = tmp_path / "v.mp4"
    media.write_mp4(video_only, np.zeros((4, 16, 16, 3), np.uint8), 4.0)
    with pytest.raises(InputError, match="no audio track"):
        media_long.load_preprocessed(str(video_only), 16000, None)


def test_pairing_reads_the_length_and_silence_by_streaming(tmp_path, small_blocks):
    from foleybench.api import ClipPair
    from foleybench.pairing import _check_pred

    loud = _wav(tmp_path / "loud.wav", 1.5)
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), np.zeros((24000, 2), np.float32), 16000)
    w, secs, step = _check_pred(ClipPair(clip_id="a", task="v2a", pred_audio=loud), True)
    assert w is None and secs == pytest.approx(int(1.5 * 22050) / 22050) and step == 1 / 22050
    w, secs, _ = _check_pred(ClipPair(clip_id="b", task="v2a", pred_audio=str(quiet)), True)
    assert w is not None and "silent" in w and secs == 1.5


def test_imagebind_long_video_is_embedded_in_chunks(monkeypatch):
    from foleybench.metrics.embedders import imagebind as ib

    emb = ib.build(mode="proxy", seed=0)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (t, 48, 64, 3), dtype=np.uint8) for t in (5, 5, 2)]
    inputs = [ib.video_frames(f).numpy() for f in frames]
    assert inputs[0].dtype == np.uint8 and inputs[0].shape == (5, 3, 224, 298)
    whole = emb.embed_inputs(inputs)
    # old layout: all clips of a video as one float array, embedded in one pass
    ref = [emb._forward(emb.net.embed_vision, ib.video_clips(f)[None]).numpy() for f in frames]
    for a, b in zip(whole, ref):
        assert a.shape == (1, emb.dim) and np.allclose(a, b, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(ib, "GROUP_ROWS", 0)
    monkeypatch.setattr(ib, "SUBCLIP_CHUNK", 5)  # 12 clips of the 5-frame videos: 3 chunks
    chunked = emb.embed_inputs(inputs)
    for a, b in zip(chunked, ref):
        assert np.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_imagebind_subclips_are_the_old_clip_layout():
    from foleybench.metrics.embedders import imagebind as ib
    from foleybench.metrics.functional import video_preprocess as vp

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (4, 100, 150, 3), dtype=np.uint8)
    x = vp.resize(vp.frames_to_tensor(frames), vp.short_side_size(100, 150, 224), "bicubic_aa_uint8")
    x = vp.normalize(x, vp.CLIP_MEAN, vp.CLIP_STD)
    old = torch.stack([c[i:i + 2].transpose(0, 1) for c in vp.three_crops(x, 224) for i in range(3)])
    new = ib.video_clips(frames)
    assert torch.equal(new, old)
    assert torch.equal(ib.subclips(ib.video_frames(frames), 4, 7), old[4:7])


def _video(path, n: int = 21) -> str:
    yy, xx = np.mgrid[0:48, 0:64]
    frames = np.zeros((n, 48, 64, 3), np.uint8)
    for i in range(n):
        frames[i][(xx - 10 - 2 * i) ** 2 + (yy - 24) ** 2 < 60] = 255
    media.write_mp4(path, frames, 10.0)
    return str(path)


def test_iter_video_is_read_video_in_batches(tmp_path):
    from pathlib import Path

    path = _video(tmp_path / "v.mp4")
    whole = media.read_video(path)
    fps, batches = media.iter_video(path, batch=4)
    got = list(batches)
    assert fps == whole.fps and max(len(b) for b in got) <= 4
    assert np.array_equal(np.concatenate(got), whole.frames)
    fps2, batches2 = media._iter_video_pyav(Path(path), 5)  # the fallback decoder
    assert fps2 == whole.fps
    assert np.array_equal(np.concatenate(list(batches2)), media._read_video_pyav(Path(path), 0.0, None, None).frames)
    with pytest.raises(InputError, match="no video stream"):
        media.iter_video(_wav(tmp_path / "a.wav", 0.5))


def test_av_align_streams_frames_with_few_chunks_in_flight(tmp_path, monkeypatch):
    import importlib

    AV = importlib.import_module("foleybench.metrics.functional.av_align")

    video = _video(tmp_path / "v.mp4", 31)
    audio = _wav(tmp_path / "a.wav", 3.1)
    serial = AV.av_align_many([(video, audio)], workers=1)[0]
    monkeypatch.setattr(AV, "MAX_CHUNKS_IN_FLIGHT", 1)
    monkeypatch.setattr(AV, "CHUNK_PAIRS", 3)
    streamed = AV.av_align_many([(video, audio), (video, audio)], workers=2)
    for r in streamed:
        assert (r.score, r.n_video_peaks, r.n_audio_peaks) == (serial.score, serial.n_video_peaks, serial.n_audio_peaks)
        assert np.array_equal(r.video_peaks, serial.video_peaks)


# ----------------------------------------------------------------------------- streamed embedder input
def test_long_audio_blocks_and_windows_are_the_array(tmp_path, small_blocks):
    path = _wav(tmp_path / "a.wav", 4.0)
    long = media_long.load_preprocessed(path, 16000, None, lazy=True)
    assert type(long).__name__ == "LongAudio"
    whole = media_long.load_preprocessed(path, 16000, None)
    assert len(long) == long.shape[0] == len(whole)
    assert np.array_equal(np.concatenate(list(long.blocks())), whole)
    assert np.array_equal(np.asarray(long), whole)
    r = long.reader()
    rng = np.random.default_rng(0)
    lo = 0
    for _ in range(40):  # forward-moving, overlapping windows, some past the end
        lo = min(len(whole), lo + int(rng.integers(0, 3000)))
        hi = lo + int(rng.integers(1, 9000))
        assert np.array_equal(r.get(lo, hi), whole[lo:hi])
    with pytest.raises(ValueError, match="before the reader's position"):
        r.get(lo - 10, lo)


def test_reflect_window_is_numpy_reflect_padding():
    from foleybench.metrics.embedders.audio_base import reflect_window

    x = np.arange(50, dtype=np.float32)
    padded = np.pad(x, (7, 7), mode="reflect")
    for lo, hi in [(-7, 20), (-3, 57), (10, 57), (0, 50), (5, 30), (-7, 57)]:
        got = reflect_window(lambda a, b: x[a:b], lo, hi, len(x))
        assert np.array_equal(got, padded[lo + 7:hi + 7]), (lo, hi)


@pytest.mark.parametrize("name", ["melstat", "vggish", "panns", "encodec"])
def test_streamed_embedders_equal_the_whole_array(tmp_path, small_blocks, monkeypatch, name):
    """A long file read block by block gives the embedding of the whole array, with every
    chunked branch taken (chunk sizes shrunk so a few seconds span several): bit for bit,
    except melstat, whose runs' STFTs round like the whole-signal STFT to 1 float32 ulp
    (the FFT batches frames differently)."""
    from foleybench.api import ScoreContext
    from foleybench.metrics.embedders import get_embedder
    from foleybench.metrics.embedders.melstat import MelStat
    from foleybench.metrics.embedders.panns import Cnn14
    from foleybench.metrics.embedders.vggish_embedder import VGGish

    torch.set_num_threads(1)
    monkeypatch.setattr(MelStat, "RUN_FRAMES", 3)
    monkeypatch.setattr(VGGish, "chunk_examples", 1)
    monkeypatch.setattr(Cnn14, "CHUNK_FRAMES", 64)
    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None, batch_size=1)
    emb = get_embedder(name, ctx)
    if name == "encodec":
        monkeypatch.setattr(emb, "chunk_samples", 24000 // 2)
        monkeypatch.setattr(emb, "LATENT_CHUNK", 50)
    path = _wav(tmp_path / "a.wav", 6.3 if name != "panns" else 4.3, rate=22050)
    x = emb.load_input(path, ctx)
    assert type(x).__name__ == "LongAudio"
    whole = x.materialise()
    got = emb.embed_inputs([x])[0]
    want = emb.embed_inputs([whole])[0]
    assert got.shape == want.shape and got.shape[0] >= (1 if name == "panns" else 4)
    if name == "melstat":
        assert np.abs(got - want).max() <= 2 * np.spacing(np.abs(want).max())
    else:
        assert np.array_equal(got, want)
    if name == "panns":
        assert np.array_equal(emb.logits_inputs([x])[0], emb.logits_inputs([whole])[0])


def test_many_rows_are_not_stacked_for_the_fd_statistics(monkeypatch):
    """Beyond STACK_MAX entries the FD statistics come from float64 blocks (a long input's
    frames): the same mean and covariance to float64 rounding, and the value memo's key
    (hashed block by block) is the digest of the stacked rows."""
    import hashlib

    from foleybench.metrics import frechet_state as fs

    rng = np.random.default_rng(0)
    blocks = [(rng.standard_normal((n, 16)) * 3 + 100).astype(np.float32) for n in (5, 700, 1, 40)]
    mu0, s0 = fs.centred_stats(np.concatenate(blocks).astype(np.float64))
    monkeypatch.setattr(fs, "STACK_MAX", 100)
    monkeypatch.setattr(fs, "BLOCK_ROWS", 64)
    mu1, s1 = fs.centred_stats_blocks(blocks, 16)
    assert np.allclose(mu1, mu0, rtol=1e-13, atol=0) and np.allclose(s1, s0, rtol=1e-11, atol=1e-12)
    h0 = hashlib.sha256(np.concatenate(blocks).astype(np.float64).tobytes()).hexdigest()
    h1 = hashlib.sha256()
    for x in fs.row_blocks(blocks, 16):
        assert len(x) <= 64
        h1.update(np.ascontiguousarray(x).tobytes())
    assert h1.hexdigest() == h0


@pytest.mark.parametrize("name", ["clap", "passt"])
def test_start_only_embedders_stop_decoding_at_what_they_read(tmp_path, small_blocks, name):
    """CLAP (first 10 s) and PaSST's av-benchmark input (10 s) never decode past 10 s of a
    long file, and load exactly what the whole file cut afterwards gives."""
    from foleybench import media
    from foleybench.api import ScoreContext
    from foleybench.metrics.embedders import get_embedder

    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None, batch_size=1)
    emb = get_embedder(name, ctx)
    assert emb.max_input_seconds == 10.0
    path = _wav(tmp_path / "a.wav", 12.5, rate=22050)
    got = emb.load_input(path, ctx)
    whole = media.preprocess_audio(media.read_audio(path).samples, 22050, int(emb.rate), None)
    want = whole[:int(10 * emb.rate)]
    assert np.array_equal(np.asarray(got)[:len(want)], want)
    assert len(np.asarray(got)) == len(want)


def test_imagebind_and_desync_audio_read_only_their_windows(tmp_path, monkeypatch):
    """ImageBind's three 2 s clips and DeSync's first/last windows come from a long file's
    stream (forward windows) exactly as from the whole array."""
    from foleybench.api import ScoreContext
    from foleybench.metrics.embedders import imagebind, synchformer

    path = _wav(tmp_path / "a.wav", 9.0, rate=22050)
    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None, batch_size=1)
    plain_ib = imagebind.ImageBind.load_audio(None, path, ctx)
    plain_sf = synchformer.audio_segments(path, ctx)
    monkeypatch.setattr(media_long, "LEAN_ABOVE_S", 0.0)
    monkeypatch.setattr(media_long, "_BLOCK", 1000)
    assert type(media_long.load_preprocessed(path, 16000, None, lazy=True)).__name__ == "LongAudio"
    assert np.array_equal(imagebind.ImageBind.load_audio(None, path, ctx), plain_ib)
    got = synchformer.audio_segments(path, ctx)
    assert np.array_equal(got.data, plain_sf.data) and np.array_equal(got.windows, plain_sf.windows)


def test_passt_audiocraft_split_streams_a_long_file_segment_by_segment(tmp_path, small_blocks, monkeypatch):
    """audiocraft's PaSST input reads the whole signal: a long file stays a LongAudio, its
    10 s segments are read from the stream a few at a time (one here), and the rows and
    logits are those of the whole array split the same way (the short last segment kept,
    one of 0.15 s or less dropped)."""
    from foleybench.api import ScoreContext
    from foleybench.metrics.embedders import get_embedder
    from foleybench.metrics.embedders.passt import PaSST

    torch.set_num_threads(1)
    monkeypatch.setattr(PaSST, "LONG_SEGMENTS", 1)
    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None, batch_size=1)
    emb = get_embedder("passt", ctx, split="audiocraft")
    for secs, n_rows in ((21.0, 3), (20.1, 2)):
        x = emb.load_input(_wav(tmp_path / f"a{secs}.wav", secs, rate=22050), ctx)
        assert type(x).__name__ == "LongAudio"
        whole = x.materialise()
        got = emb.embed_inputs([x])[0]
        emb._memo.clear()  # the whole-array path computes afresh, not from the memo
        want = emb.embed_inputs([whole])[0]
        assert got.shape == want.shape == (n_rows, 768) and np.array_equal(got, want)
        assert np.array_equal(emb.logits_inputs([x])[0], emb.logits_inputs([whole])[0])
