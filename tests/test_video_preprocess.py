"""Video preprocessing functions against small hand-computed examples."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from foleybench.metrics.embedders import imagebind as ib
from foleybench.metrics.functional import video_preprocess as vp

torch.set_num_threads(1)


def test_sample_consecutive_and_short_video():
    assert vp.sample_consecutive(20, 16, 25.0).tolist() == list(range(16))
    assert vp.sample_consecutive(40, 4, 10.0, start_s=1.0).tolist() == [10, 11, 12, 13]
    with pytest.raises(ValueError, match="has 15"):
        vp.sample_consecutive(15, 16, 25.0)


def test_sample_uniform():
    assert vp.sample_uniform(10, 4).tolist() == [0, 3, 6, 9]
    assert vp.sample_uniform(5, 8).tolist() == [0, 1, 2, 3, 4]  # no duplicates
    assert vp.sample_uniform(9, 3).tolist() == [0, 4, 8]


def test_sample_at_rate_ffmpeg_fps_filter():
    # 25 fps, 0.5 Hz, 8 s: slot k keeps the last frame with t < (k + 0.5) * 2 s -> 24, 74, ...
    assert vp.sample_at_rate(200, 25.0, 0.5).tolist() == [24, 74, 124, 174]
    # 1 fps: slot 0 covers t < 1 s -> frame 0; slot 1 t < 3 s -> frame 2
    assert vp.sample_at_rate(8, 1.0, 0.5).tolist() == [0, 2, 4, 6]
    # duration shorter than the file: int(0.5 * 5) = 2 frames
    assert vp.sample_at_rate(200, 25.0, 0.5, duration_s=5.0).tolist() == [24, 74]
    assert vp.sample_at_rate(30, 25.0, 0.5).tolist() == []  # 1.2 s: no full slot


def test_short_side_size_truncates_like_torchvision():
    assert vp.short_side_size(100, 200, 224) == (224, 448)
    assert vp.short_side_size(300, 200, 224) == (336, 224)
    assert vp.short_side_size(360, 640, 224) == (224, 398)  # 398.2 truncated


def test_resize_bilinear_conventions():
    x = torch.tensor([[0.0, 1.0]]).view(1, 1, 1, 2).expand(1, 1, 2, 2).contiguous()
    half_pixel = vp.resize(x, (2, 4), "bilinear")[0, 0, 0]
    corners = vp.resize(x, (2, 4), "bilinear_ac")[0, 0, 0]
    assert torch.allclose(half_pixel, torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert torch.allclose(corners, torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    u8 = torch.full((2, 3, 10, 20), 77, dtype=torch.uint8)
    out = vp.resize(u8, (5, 7), "bicubic_aa_uint8")
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 5, 7) and int(out.min()) == int(out.max()) == 77
    with pytest.raises(ValueError, match="unknown resize"):
        vp.resize(x, (2, 2), "nearest")


def test_center_crop_offsets():
    x = torch.arange(35).view(5, 7)
    c = vp.center_crop(x, 3)  # top = round(1.0) = 1, left = round(2.0) = 2
    assert c.tolist() == [[9, 10, 11], [16, 17, 18], [23, 24, 25]]
    assert vp.center_crop(torch.arange(16).view(4, 4), 3)[0, 0].item() == 0  # round(0.5) = 0 (half to even)
    with pytest.raises(ValueError):
        vp.center_crop(x, 6)


def test_three_crops_follow_long_side():
    wide = torch.arange(32).view(4, 8)
    assert [int(c[0, 0]) for c in vp.three_crops(wide, 4)] == [0, 2, 4]  # x = 0, ceil(2), 4
    tall = torch.arange(28).view(7, 4)
    assert [int(c[0, 0]) for c in vp.three_crops(tall, 4)] == [0, 8, 12]  # y = 0, ceil(1.5) = 2, 3


def test_scale_and_normalize():
    x = torch.tensor([0.0, 51.0, 255.0])
    assert torch.allclose(vp.scale_to_unit(x), torch.tensor([-1.0, -0.6, 1.0]))
    img = torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)
    got = vp.normalize(img, vp.CLIP_MEAN, vp.CLIP_STD).flatten()
    want = (1 - torch.tensor(vp.CLIP_MEAN)) / torch.tensor(vp.CLIP_STD)
    assert torch.allclose(got, want)


def test_imagebind_audio_clip_bounds():
    assert ib.audio_clip_bounds(8 * 16000) == [(0, 32000), (48000, 80000), (96000, 128000)]
    assert ib.audio_clip_bounds(24000) == [(0, 32000)] * 3  # shorter than 2 s: one span, padded later
    assert ib.audio_clip_bounds(5 * 16000) == [(0, 32000), (24000, 56000), (48000, 80000)]


def test_imagebind_fbank_pads_with_normalised_zero():
    w = torch.randn(16000)  # 1 s -> 98 fbank frames, padded to 204 with 0 before normalising
    fb = ib.fbank_clip(w)
    assert fb.shape == (1, 128, 204)
    assert torch.allclose(fb[0, :, 150:], torch.full((128, 54), 4.268 / 9.138))
    assert not torch.allclose(fb[0, :, :90], torch.full((128, 90), 4.268 / 9.138))


def test_imagebind_video_clips_pairs_and_crops():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 100, 150, 3), dtype=np.uint8)
    clips = ib.video_clips(frames)
    assert clips.shape == (9, 3, 2, 224, 224)  # 3 crops x 3 consecutive pairs
    one = ib.video_clips(frames[:1])
    assert one.shape == (3, 3, 2, 224, 224) and torch.equal(one[:, :, 0], one[:, :, 1])
