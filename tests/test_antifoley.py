"""The antifoley family (audio-to-video autoencoder): determinism, shapes, locality in
time, the harmonic filterbank, and the training crops. The family contract (ids, order,
batch independence, shipped records) is tests/test_model_conformance.py's."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from foleybench.api import A2VRequest
from foleybench.baselines.antifoley import CONFIGS, ClipFrames, build_net, crops, prepare_audio
from foleybench.baselines.antifoley_net import affected_frames, centre_frequencies, receptive_field_s
from foleybench.registry import MODELS, load_plugins

torch.set_num_threads(1)
load_plugins()
SHIPPED = [n for n in ("antifoley.tiny", "antifoley.waveform_tiny") if n in MODELS]
MODELS_UNDER_TEST = ["antifoley.debug", "antifoley.waveform_debug", *SHIPPED]


def _model(name: str):
    return MODELS.build(name, task="a2v", dataset=None, seed=0, device="cpu")


def _audio(seconds: float, sr: int = 16000, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    clicks = (np.sin(2 * np.pi * 3.0 * t) > 0.97).astype(np.float32)        # a few bursts, so frames differ
    return (0.05 * rng.standard_normal((channels, n)) + 0.5 * clicks * rng.standard_normal((channels, n))
            ).astype(np.float32)


def _req(audio: np.ndarray, seconds: float, fps: float = 16.0, size: tuple[int, int] = (64, 64),
         seed: int = 7, sr: int = 16000) -> A2VRequest:
    return A2VRequest("clip", audio, sr, "clapping", seconds, fps, size, seed)


def test_tiny_tags_differ_only_in_the_front_end():
    a, b = dataclasses.asdict(CONFIGS["tiny"]), dataclasses.asdict(CONFIGS["waveform_tiny"])
    assert a.pop("front") == "harmonic" and b.pop("front") == "waveform" and a == b
    assert not any(t.endswith("paper") for t in CONFIGS)  # no published scale to reproduce


# Known failure, kept visible (strict: it fails the day it passes): antifoley.waveform_tiny
# retrained on the 240 clips of seed 1 (issue 11) collapsed to one near-constant frame that
# does not depend on the audio (silence and clicks give the same uint8 video).
_COLLAPSED = pytest.mark.xfail(strict=True, reason="waveform_tiny ignores the audio since its issue-11 retraining")
SEED_CASES = [pytest.param(n, marks=_COLLAPSED) if n == "antifoley.waveform_tiny" else n for n in MODELS_UNDER_TEST]


@pytest.mark.parametrize("name", SEED_CASES)
def test_seed_invariant(name):
    model = _model(name)
    req = _req(_audio(1.3), 1.3)
    a = model.generate([req])[0].frames
    b = model.generate([dataclasses.replace(req, seed=req.seed + 12345)])[0].frames
    np.testing.assert_array_equal(a, b)
    assert a.std() > 0 and model.params()["seed_invariant"] is True
    # the audio, not the seed, is what changes the video
    c = model.generate([dataclasses.replace(req, audio=_audio(1.3, seed=3))])[0].frames
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
@pytest.mark.parametrize("seconds,fps,size,sr,channels", [(2.37, 16.0, (64, 64), 16000, 1),
                                                          (2.37, 25.0, (48, 40), 22050, 2),
                                                          (10.0, 16.0, (64, 64), 16000, 1),
                                                          (10.0, 29.97, (24, 20), 44100, 2)])
def test_shape_dtype_fps(name, seconds, fps, size, sr, channels):
    model = _model(name)
    out = model.generate([_req(_audio(seconds, sr, channels), seconds, fps, size, sr=sr)])[0]
    assert out.frames.dtype == np.uint8 and out.fps == fps
    assert out.frames.shape == (int(round(seconds * fps)), *size, 3)
    assert out.frames.std() > 0


def test_audio_longer_or_shorter_than_the_duration_is_cut_or_padded():
    req = _req(_audio(1.0), 1.5)
    x = prepare_audio(req, 8000)
    assert x.shape == (12000,) and torch.all(x[8000:] == 0)
    assert prepare_audio(dataclasses.replace(req, duration_s=0.5), 8000).shape == (4000,)
    with pytest.raises(ValueError, match="clip"):
        prepare_audio(dataclasses.replace(req, audio=np.full((1, 10), np.nan, np.float32)), 8000)


@pytest.mark.parametrize("tag", list(CONFIGS))
def test_changing_one_time_window_changes_only_nearby_frames(tag):
    """Bounded receptive field: a change of the audio in [t0, t1) changes frames in
    affected_frames only (patches within receptive_field_s of it, their frames, +-1 frame);
    at the tiny configs and 16 fps that is at most 3 frames beyond the changed frames."""
    cfg = CONFIGS[tag]
    torch.manual_seed(0)
    net = build_net(cfg).eval()
    sr, fps, seconds = cfg.sample_rate, 16.0, 2.37
    n, n_frames = int(round(seconds * sr)), int(round(seconds * fps))
    x = torch.from_numpy(_audio(seconds, sr)[0])
    for t0, t1 in ((1.03, 1.11), (0.0, 0.05), (2.3, 2.37)):
        y = x.clone()
        y[int(t0 * sr):int(t1 * sr)] += 0.5
        with torch.no_grad():
            d = (net(x[None], n_frames, fps) - net(y[None], n_frames, fps))[0].abs().flatten(1).amax(1)
        changed = set(torch.nonzero(d).flatten().tolist())
        bound = set(affected_frames(net, t0, t1, fps, n_frames))
        assert changed <= bound, (t0, t1, sorted(changed), sorted(bound))
        own = set(range(int(t0 * fps), min(n_frames, int(np.ceil(t1 * fps)))))
        assert own <= changed  # the frames of the window itself do follow the audio
        assert len(bound) <= len(own) + 6
        assert receptive_field_s(net) < 1.5 / fps
    assert n == x.shape[0]


def test_harmonic_filterbank_puts_a_tone_at_its_harmonic_cells():
    """A pure tone at f lights, in harmonic row h, the f_c nearest f / h (where f / h is
    inside the f_c range), and nothing far from it."""
    cfg = CONFIGS["tiny"]
    torch.manual_seed(0)
    front = build_net(cfg).front
    fc = centre_frequencies(cfg)
    sr, j = cfg.sample_rate, 14
    f = 2.0 * float(fc[j])                          # the second harmonic of f_c[14]
    t = torch.arange(sr) / sr
    with torch.no_grad():
        e = front.harmonic_energies(0.5 * torch.sin(2 * np.pi * f * t)[None])[0].mean(-1)  # [H, n_fc]
    assert e.shape == (cfg.n_harmonics, cfg.n_fc)
    assert int(e[1].argmax()) == j                  # row h = 2: exactly f_c[14]
    for h in range(1, cfg.n_harmonics + 1):
        target = f / h
        if fc[0] <= target <= fc[-1]:
            assert int(e[h - 1].argmax()) == int((fc - target).abs().argmin()), h
    assert float(e.max()) - float(e[1, :4].max()) > 5.0  # low f_c of row 2: far below the peak (log energy)
    # filters: peak 1 at h * f_c, zero far away; the bandwidth follows the learnable Q
    with torch.no_grad():
        fb = front.filterbank()
    assert fb.shape == (cfg.n_harmonics, cfg.n_fc, cfg.n_fft // 2 + 1) and float(fb.max()) <= 1.0
    with torch.no_grad():
        front.log_q.fill_(np.log(2.0))
        assert float(front.filterbank().sum()) < 0.6 * float(fb.sum())  # higher Q: narrower filters


def test_training_crops_carry_context_and_the_loss_trains_every_part():
    cfg = CONFIGS["debug"]
    spf, s = cfg.spf, cfg.frame_size
    clips = [ClipFrames("a", torch.randn(10 * spf), torch.rand(10, 3, s, s) * 2 - 1),
             ClipFrames("b", torch.randn(2 * spf), torch.rand(2, 3, s, s) * 2 - 1)]  # shorter than a crop
    audio, video = crops(clips, cfg, np.random.default_rng([0, 0]))
    k, m = cfg.crop_frames, cfg.margin_frames
    assert audio.shape == (cfg.batch_size, (k + 2 * m) * spf) and video.shape == (cfg.batch_size, k, 3, s, s)
    again = crops(clips, cfg, np.random.default_rng([0, 0]))
    assert torch.equal(again[0], audio) and torch.equal(again[1], video)
    from foleybench.baselines.antifoley import AntiFoleyTrainer

    for tag in ("debug", "waveform_debug"):
        torch.manual_seed(0)
        net = build_net(CONFIGS[tag])
        AntiFoleyTrainer().loss(net, (audio, video), CONFIGS[tag]).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
        assert all(float(p.grad.abs().sum()) > 0 for n, p in net.named_parameters() if "front" in n)
