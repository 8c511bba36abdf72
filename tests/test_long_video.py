"""Long videos with bounded memory (issue 15, item 7): ImageBind's video side samples one
frame per 2 s over the whole clip, so a long video's sampled frames were held whole (271 MB
of 224 p frames for 60 minutes). A video longer than ``imagebind.LONG_VIDEO_S`` is now
planned (which frames) when loaded and decoded a few frames at a time when embedded.

Here the threshold and the pass size are shrunk so a 24 s test video takes the streamed
route; the frames must be exactly the plain reader's and the embedding the in-memory
route's up to float32 rounding of the mean.
"""
from __future__ import annotations

import sys

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


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_picked_frames_stream_is_the_reader(tmp_path, monkeypatch, backend):
    path = _video(tmp_path / "v.mp4")
    whole = media.read_video(path, pick=_pick, backend="pyav").frames
    if backend == "pyav":
        monkeypatch.setitem(sys.modules, "decord", None)  # import fails: PyAV, as read_video
    plan = media.plan_picked(path, duration_s=None, pick=_pick)
    assert plan.backend == backend and len(plan) == len(whole) == 12
    batches = list(media.iter_picked(plan, batch=5))
    assert [len(b) for b in batches] == [5, 5, 2]
    assert np.array_equal(np.concatenate(batches), whole)
    # a clip length caps the span the pick sees, as read_video's duration_s does
    assert len(media.plan_picked(path, duration_s=10.0, pick=_pick)) == 5


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
