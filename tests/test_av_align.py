"""AV-Align: matching rules, peaks, synthetic clips, real clips, the streaming metric."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest

from foleybench.api import ClipPair, InputError, ScoreContext
from foleybench.media import write_mp4, write_wav
from foleybench.metrics.av_align import AVAlign
from foleybench.metrics.functional import av_align
from foleybench.metrics.functional.av_align import (
    PROTOCOL,
    audio_onsets,
    av_align_score,
    flow_curve,
    match_peaks,
    video_peaks,
)

AVMOD = importlib.import_module("foleybench.metrics.functional.av_align")  # the module (the package exports the function)
REALCLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "realclips"
FPS = 25.0
N_FRAMES = 100
JUMPS = [12, 30, 47, 66, 85]  # frames at which the square jumps: flow peaks at JUMPS[i] / FPS
SR = 22050


# ----------------------------------------------------------------------------- matching
def test_match_open_window_edges() -> None:
    fps = 10.0  # window 0.1 s, open on both sides
    assert match_peaks([1.0999], [1.0], fps) == 1
    assert match_peaks([0.9001], [1.0], fps) == 1
    assert match_peaks([1.1], [1.0], fps) == 0  # a == v + 1/fps is outside
    assert match_peaks([0.9], [1.0], fps) == 0  # a == v - 1/fps is outside


def test_match_one_to_one_and_first_unused() -> None:
    fps = 10.0
    # Two audio peaks near one video peak: only one match (the 2024 copy counted two).
    assert match_peaks([1.0, 1.01], [1.0], fps) == 1
    # First unused rule: audio 1.07 takes video 1.0 (first in list order, though 1.1 is
    # nearer); audio 1.12 then takes 1.1; audio 1.13 finds both used.
    assert match_peaks([1.07, 1.12, 1.13], [1.0, 1.1], fps) == 2
    assert match_peaks([1.07, 1.13], [1.0, 1.1], fps) == 2
    assert match_peaks([1.07, 1.05], [1.0, 1.1], fps) == 2  # 1.05 falls to 1.1 (1.0 < 1.05)
    # Greedy order matters: audio 0.95 takes video 1.0 first, so audio 1.08 cannot
    # take 1.0 and falls to 1.15 (1.15 - 0.1 < 1.08): still 2 matches.
    assert match_peaks([0.95, 1.08], [1.0, 1.15], fps) == 2
    # ... whereas here video 1.0 is taken by 1.09, and 0.91 has nothing left in range.
    assert match_peaks([1.09, 0.91], [1.0, 1.15], fps) == 1


def test_score_formula_and_empty_cases() -> None:
    assert av_align_score([1.0, 2.0, 3.0], [1.0, 2.5], 10.0) == pytest.approx(1 / 4)
    assert av_align_score([], [1.0], 10.0) == 0.0
    assert av_align_score([1.0], [], 10.0) == 0.0
    assert av_align_score([], [], 10.0) is None


def test_video_peaks_strict_maxima_and_threshold() -> None:
    curve = np.array([0.5, 0.5, 0.2, 0.3, 0.3, 0.1, 0.05, 0.09, 0.0, 0.1, 0.0, 2.0])
    # index 1 ties index 0 (the duplicated first value never peaks); the 0.3 plateau is
    # not strict; 0.09 is below threshold; 0.1 at index 9 counts (>= 0.1); last index never.
    np.testing.assert_allclose(video_peaks(curve, 2.0), [9 / 2.0])


# ----------------------------------------------------------------------------- synthetic
def _square_video() -> np.ndarray:
    positions = [(20, 20), (20, 100), (80, 100), (80, 20), (50, 60), (20, 20)]
    frames = np.zeros((N_FRAMES, 128, 160, 3), np.uint8)
    k = 0
    for t in range(N_FRAMES):
        while k < len(JUMPS) and t >= JUMPS[k]:
            k += 1
        y, x = positions[k]
        frames[t, y:y + 24, x:x + 24] = 255
    return frames


def _clicks(times_s: list[float]) -> np.ndarray:
    rng = np.random.default_rng(0)
    a = np.zeros(int(N_FRAMES / FPS * SR), np.float32)
    burst = int(0.03 * SR)
    for t in times_s:
        i = int(round(t * SR))
        a[i:i + burst] += 0.5 * rng.standard_normal(burst).astype(np.float32) * np.exp(-np.arange(burst) / 200)
    return a


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("avalign")
    times = [j / FPS for j in JUMPS]
    paths = {
        "video": write_mp4(d / "square.mp4", _square_video(), FPS),
        "static": write_mp4(d / "static.mp4", np.full((30, 64, 64, 3), 90, np.uint8), FPS),
        "aligned": write_wav(d / "aligned.wav", _clicks(times), SR),
        "shifted": write_wav(d / "shifted.wav", _clicks([t + 0.25 for t in times]), SR),
        "silent": write_wav(d / "silent.wav", np.zeros(SR, np.float32), SR),
        "broken": d / "broken.mp4",
    }
    paths["broken"].write_bytes(b"not a video")
    return paths


def test_synthetic_aligned_beats_shifted(synthetic: dict[str, Path]) -> None:
    good = av_align(synthetic["video"], synthetic["aligned"])
    np.testing.assert_allclose(good.video_peaks, np.array(JUMPS) / FPS)
    assert good.fps == FPS
    assert good.n_audio_peaks == len(JUMPS)
    assert good.score == 1.0 and good.n_matches == len(JUMPS)
    bad = av_align(synthetic["video"], synthetic["shifted"])
    assert bad.score is not None and bad.score < 0.5


def test_flow_curve_duplicates_first_value(synthetic: dict[str, Path]) -> None:
    import cv2

    from foleybench.media import read_video

    clip = read_video(synthetic["video"])
    curve = flow_curve(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.frames)
    assert curve.shape == (N_FRAMES,)
    assert curve[0] == curve[1]
    assert curve[JUMPS[0]] > 0.1 > curve[JUMPS[0] - 2]
    with pytest.raises(ValueError, match="at least 2"):
        flow_curve(np.zeros((1, 8, 8), np.uint8))


def test_audio_onsets_resample_like_librosa_load() -> None:
    # 44.1 kHz stereo in: onsets come out at the same times as the 22.05 kHz mono clicks.
    mono = _clicks([0.5, 1.5, 2.5])
    at_22k = audio_onsets(mono, SR)
    import librosa

    stereo_44k = np.stack([librosa.resample(mono, orig_sr=SR, target_sr=44100, res_type="soxr_hq")] * 2)
    at_44k = audio_onsets(stereo_44k, 44100)
    assert len(at_22k) == 3
    np.testing.assert_allclose(at_44k, at_22k, atol=512 / SR + 1e-9)


def test_no_peaks_gives_none_with_reason(synthetic: dict[str, Path]) -> None:
    res = av_align(synthetic["static"], synthetic["silent"])
    assert res.score is None and res.n_audio_peaks == 0 and res.n_video_peaks == 0
    assert "no audio onsets" in res.reason


# ----------------------------------------------------------------------------- metric
def test_streaming_metric(synthetic: dict[str, Path]) -> None:
    s = {k: str(v) for k, v in synthetic.items()}
    m1 = AVAlign(ScoreContext())
    ex1 = m1.update([
        ClipPair("good", "v2a", pred_audio=s["aligned"], ref_video=s["video"]),
        ClipPair("quiet", "v2a", pred_audio=s["silent"], ref_video=s["static"]),
    ])
    assert [cid for cid, _ in ex1] == ["quiet"]
    m2 = AVAlign()
    ex2 = m2.update([
        # a2v: the generated video with the reference audio
        ClipPair("late", "a2v", pred_video=s["video"], ref_audio=s["shifted"]),
        ClipPair("bad", "v2a", pred_audio=s["aligned"], ref_video=s["broken"]),
    ])
    assert ex2[0][0] == "bad" and "broken.mp4" in ex2[0][1]
    value = m1.merge(m2).compute()
    per_clip = value.extras["per_clip"]
    assert set(per_clip) == {"good", "late"} and per_clip["good"] == 1.0
    assert value.n == 2
    assert value.value == pytest.approx((1.0 + per_clip["late"]) / 2)
    assert value.ci[0] <= value.value <= value.ci[1]
    assert value.extras["n_no_peaks"] == 1
    assert [e[0] for e in value.extras["excluded"]] == ["bad", "quiet"]  # sorted by clip id
    assert value.extras["protocol"] == PROTOCOL
    empty = AVAlign().compute()
    assert empty.value is None and empty.n == 0


# ----------------------------------------------------------------------------- real clips
# Scores of the TempoTokens reference logic (cv2.VideoCapture frames, librosa onsets) on
# these clips, run outside the repo: matches / (|A| + |V| - matches).
REFERENCE = {"difffoley_gun.mp4": (23, 79, 15), "difffoley_drum.mp4": (29, 61, 20)}


@pytest.mark.skipif(not REALCLIPS.is_dir(), reason=f"shared real clips not found at {REALCLIPS}")
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_real_clip_matches_reference(name: str) -> None:
    path = REALCLIPS / name
    res = av_align(path, path)  # audio from the mp4's AAC track
    n_a, n_v, m = REFERENCE[name]
    assert (res.n_audio_peaks, res.n_video_peaks, res.n_matches) == (n_a, n_v, m)
    assert 0.0 <= res.score <= 1.0
    assert res.score == pytest.approx(m / (n_a + n_v - m), abs=0)


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_parallel_flow_is_bit_identical_to_serial(synthetic: dict[str, Path], workers: int) -> None:
    import cv2

    from foleybench.media import read_video

    clip = read_video(synthetic["video"])
    serial = flow_curve(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.frames)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.frames])
    assert np.array_equal(flow_curve(gray, workers), serial)
    assert np.array_equal(flow_curve(clip.frames, workers, rgb=True), serial)
    assert np.array_equal(flow_curve(clip.frames, 1, rgb=True), serial)
    bad = gray.copy().astype(np.float32)
    with pytest.raises(ValueError, match="uint8"):
        flow_curve(bad, workers)


def test_parallel_av_align_and_batch_equal_serial(synthetic: dict[str, Path]) -> None:
    for audio in ("aligned", "shifted"):
        one = av_align(synthetic["video"], synthetic[audio], workers=1)
        par = av_align(synthetic["video"], synthetic[audio], workers=4)
        assert (par.score, par.n_audio_peaks, par.n_video_peaks, par.n_matches) == \
            (one.score, one.n_audio_peaks, one.n_video_peaks, one.n_matches)
        assert np.array_equal(par.audio_peaks, one.audio_peaks)
        assert np.array_equal(par.video_peaks, one.video_peaks)
    with pytest.raises(InputError):
        av_align(synthetic["broken"], synthetic["aligned"], workers=4)
    pairs = [ClipPair(clip_id=f"c{i}", task="v2a", pred_audio=str(synthetic[a]), ref_audio=str(synthetic[a]),
                      pred_video=str(synthetic["video"]), ref_video=str(synthetic["video"]))
             for i, a in enumerate(["aligned", "shifted", "silent", "aligned"])]
    serial = AVAlign(workers=1).score_batch(pairs)
    parallel = AVAlign(workers=3).score_batch(pairs)
    assert [repr(x) for x in parallel] == [repr(x) for x in serial]
    assert isinstance(serial[0], float) and serial[0] == 1.0


# ----------------------------------------------------------------------------- batch scheduler
def _record_pid_chunk(gray: np.ndarray) -> list[float]:
    """Stand-in for the pool task: notes which worker ran it, then computes it as usual."""
    with open(_PID_LOG, "a") as f:
        f.write(f"{os.getpid()}\n")
    return _ORIG_CHUNK(gray)


_PID_LOG = ""
_ORIG_CHUNK = AVMOD._flow_chunk


def _fields(r: object) -> tuple:
    if isinstance(r, InputError):
        return ("error", str(r))
    return (r.score, r.reason, r.n_audio_peaks, r.n_video_peaks, r.n_matches, r.fps,
            r.audio_peaks.tolist(), r.video_peaks.tolist())


@pytest.fixture(scope="module")
def batch_clips(synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("avbatch")
    frames = _square_video()
    two = write_mp4(d / "two.mp4", frames[10:12], FPS)  # one frame pair
    one = write_mp4(d / "one.mp4", frames[:1], FPS)  # no pair: an error naming the file
    short = write_mp4(d / "short.mp4", frames[5:40], FPS)  # a different length
    bad_audio = d / "bad.wav"
    bad_audio.write_bytes(b"RIFF junk")
    s = synthetic
    return [(s["video"], s["aligned"]), (short, s["shifted"]), (s["broken"], s["aligned"]), (two, s["aligned"]),
            (s["static"], s["silent"]), (one, s["aligned"]), (s["video"], bad_audio), (s["video"], s["shifted"])]


@pytest.mark.parametrize("chunk,in_flight,workers", [(8, 2, 2), (3, 1, 3), (50, 3, 2)])
def test_batch_scheduler_bit_identical_to_serial(batch_clips: list[tuple[Path, Path]], chunk: int,
                                                 in_flight: int, workers: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from foleybench.metrics.functional.av_align import av_align_many

    serial = av_align_many(batch_clips, workers=1)
    monkeypatch.setattr(AVMOD, "CHUNK_PAIRS", chunk)
    monkeypatch.setattr(AVMOD, "MAX_CLIPS_IN_FLIGHT", in_flight)
    batch = av_align_many(batch_clips, workers=workers)
    assert [_fields(r) for r in batch] == [_fields(r) for r in serial]
    # the bad inputs are reported in their slots, naming the file and the problem
    assert isinstance(serial[2], InputError) and "broken.mp4" in str(serial[2])
    assert isinstance(serial[5], InputError) and "one.mp4" in str(serial[5]) and "2 frames" in str(serial[5])
    assert isinstance(serial[6], InputError) and "bad.wav" in str(serial[6])
    assert serial[4].score is None and serial[0].score == 1.0 and serial[3].n_video_peaks == 0


def test_lone_clip_and_batch_chunks_reach_every_worker(synthetic: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A lone clip's pairs are split over the workers; so is a batch's work (not one clip per
    worker). Each chunk is slow enough (a short sleep) that both workers get some."""
    global _PID_LOG
    from foleybench.metrics.functional.av_align import av_align_many

    _PID_LOG = str(tmp_path / "pids.txt")
    monkeypatch.setattr(AVMOD, "_flow_chunk", _slow_chunk)
    monkeypatch.setattr(AVMOD, "CHUNK_PAIRS", 10)
    one = av_align_many([(synthetic["video"], synthetic["aligned"])], workers=2)
    pids = Path(_PID_LOG).read_text().split()
    assert len(pids) == 10  # 99 pairs in chunks of 10
    assert len(set(pids)) == 2
    assert _fields(one[0]) == _fields(av_align(synthetic["video"], synthetic["aligned"], workers=1))


def _slow_chunk(gray: np.ndarray) -> list[float]:
    import time

    time.sleep(0.05)
    return _record_pid_chunk(gray)


def test_metric_batch_uses_scheduler(synthetic: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = AVMOD.av_align_many

    def spy(jobs: list, workers: int | None = None) -> list:
        calls.append((len(jobs), workers))
        return real(jobs, workers)

    import foleybench.metrics.av_align as metric_mod

    monkeypatch.setattr(metric_mod, "av_align_many", spy)
    s = {k: str(v) for k, v in synthetic.items()}
    pairs = [ClipPair("a", "v2a", pred_audio=s["aligned"], ref_video=s["video"]),
             ClipPair("b", "v2a", pred_audio=s["shifted"], ref_video=s["video"]),
             ClipPair("c", "v2a", pred_audio=s["aligned"])]
    out = AVAlign(workers=2).score_batch(pairs)
    assert calls == [(2, 2)]  # one call for the whole batch, the clip without video left out
    assert out[0] == 1.0 and isinstance(out[1], float) and "no video" in out[2].reason
