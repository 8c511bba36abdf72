"""Martel & Wagner networks: shapes, causality, cached == naive generation, interface."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from foleybench import family
from foleybench.api import V2ARequest, VideoToAudio
from foleybench.baselines import martel_wagner as mw
from foleybench.baselines.mulaw import mulaw_decode, mulaw_encode, quantize
from foleybench.baselines.video_context import (
    A2VProjection,
    V2AProjection,
    context_windows,
    pad_context,
    prepare_frames,
)
from foleybench.registry import MODELS, load_plugins
from foleybench.weights import seeded_init

torch.set_num_threads(1)


def _net(family: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return mw.build_net(mw.get_config(family, "debug", **kw)).double().eval()


def _inputs(cfg, B=2, Fr=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = quantize(torch.rand(B, cfg.channels, Fr * cfg.spf, generator=g, dtype=torch.float64) * 1.6 - 0.8)
    video = torch.rand(B, Fr, 3, cfg.frame_size, cfg.frame_size, generator=g, dtype=torch.float64) * 2 - 1
    return audio, video


def test_mulaw_roundtrip():
    q = torch.arange(256)
    assert torch.equal(mulaw_encode(mulaw_decode(q)), q)
    x = torch.linspace(-1, 1, 10001)
    err = (mulaw_decode(mulaw_encode(x)) - x).abs()
    # mu-law steps grow with amplitude: fine near zero, coarse near full scale
    assert err[x.abs() < 0.01].max() < 3e-4 and err.max() < 0.03


def test_projections_and_context_windows():
    v = torch.randn(3, 8, 4, 2, 2)
    assert V2AProjection(8, (4, 2, 2), 5, 50)(v).shape == (3, 5, 50)
    assert A2VProjection(5, 50, 8, (4, 2, 2))(torch.randn(3, 5, 50)).shape == (3, 8, 4, 2, 2)
    video = torch.arange(1, 6.0).view(1, 5, 1, 1, 1).expand(1, 5, 3, 2, 2)
    ctx = context_windows(pad_context(video, 3), 3)  # [1, 5, 3, 3, 2, 2]
    assert ctx.shape == (1, 5, 3, 3, 2, 2)
    assert ctx[0, 0, 0, :, 0, 0].tolist() == [0, 0, 1] and ctx[0, 4, 0, :, 0, 0].tolist() == [3, 4, 5]
    frames = np.stack([np.full((64, 64, 3), i, np.uint8) for i in range(32)])  # 32 frames at 32 fps
    x = prepare_frames(frames, 32.0, 16.0, 16)
    assert x.shape == (16, 3, 16, 16)
    assert torch.allclose((x[:, 0, 0, 0] + 1) * 127.5, torch.arange(0, 32, 2.0))


@pytest.mark.parametrize("family", mw.FAMILIES)
def test_sequence_logits_shape_and_causality(family):
    net = _net(family)
    cfg = net.cfg
    audio, video = _inputs(cfg)
    out = net.sequence_logits(audio, pad_context(video, cfg.n_frames))
    assert out.shape == (2, 1, audio.shape[-1], 256)
    # changing audio from sample s0 on must leave outputs 0..s0 unchanged (out[s] sees audio[< s])
    s0 = 2 * cfg.spf + 7
    a2 = audio.clone()
    a2[..., s0:] = -a2[..., s0:]
    out2 = net.sequence_logits(a2, pad_context(video, cfg.n_frames))
    assert torch.allclose(out[:, :, :s0 + 1], out2[:, :, :s0 + 1], atol=1e-10)
    assert not torch.allclose(out[:, :, s0 + 1:], out2[:, :, s0 + 1:])
    # changing frame 3 must leave the outputs of frames 0..2 unchanged, and change frame 3's
    v2 = video.clone()
    v2[:, 3] = -v2[:, 3]
    out3 = net.sequence_logits(audio, pad_context(v2, cfg.n_frames))
    cut = 3 * cfg.spf
    assert torch.allclose(out[:, :, :cut], out3[:, :, :cut], atol=1e-10)
    assert not torch.allclose(out[:, :, cut:cut + cfg.spf], out3[:, :, cut:cut + cfg.spf])


@pytest.mark.parametrize("family", ["wavenet_video", "av_transformer"])
def test_cached_step_matches_teacher_forcing(family):
    """The incremental step computes the training function, not a look-alike."""
    net = _net(family)
    cfg = net.cfg
    audio, video = _inputs(cfg, Fr=4)
    ref = net.sequence_logits(audio, pad_context(video, cfg.n_frames))  # [B, C, N, K]
    ctx = context_windows(pad_context(video, cfg.n_frames), cfg.n_frames)
    st, x_prev = net.init_state(2), torch.zeros(2, 1, dtype=torch.float64)
    hx = torch.zeros_like(audio)
    hc = torch.zeros(2, net.frame_embedding(ctx[:, 0]).shape[1], audio.shape[-1], dtype=torch.float64)
    with torch.no_grad():
        for s in range(audio.shape[-1]):
            if s % cfg.spf == 0:
                emb = net.frame_embedding(ctx[:, s // cfg.spf])
            y = net.step(st, x_prev, emb[:, :, s % cfg.spf])
            assert torch.allclose(y, ref[:, :, s], atol=1e-9), f"cached, sample {s}"
            hx[..., s], hc[..., s] = x_prev, emb[:, :, s % cfg.spf]
            y = net.naive_step(hx[..., :s + 1], hc[..., :s + 1])
            assert torch.allclose(y, ref[:, :, s], atol=1e-9), f"naive, sample {s}"
            x_prev = audio[:, :, s]
    assert st.t == audio.shape[-1] > net.receptive_field  # the ring buffers wrapped


@pytest.mark.parametrize("family", mw.FAMILIES)
def test_cached_equals_naive_generation(family):
    net = _net(family)
    cfg = net.cfg
    _, video = _inputs(cfg, Fr=4)
    n = 3 * cfg.spf + 11  # not a whole number of frames
    gens = lambda: [torch.Generator().manual_seed(s) for s in (3, 4)]  # noqa: E731
    a = mw.generate_audio(net, video, n, gens(), cached=True)
    b = mw.generate_audio(net, video, n, gens(), cached=False)
    assert a.shape == (2, 1, n)
    assert torch.equal(a, b)
    assert len(torch.unique(a[0])) > 20 and not torch.equal(a[0], a[1])  # real draws, per-clip seeds


def test_registry_and_v2a_interface():
    load_plugins()
    for fam in mw.FAMILIES:
        for tag in ("debug", "tiny", "paper"):
            assert f"{fam}.{tag}" in MODELS
    assert "av_transformer.strided_debug" in MODELS
    assert "av_transformer.strided_tiny" not in MODELS  # no shipped checkpoint: no "trained" name
    model = MODELS.build("av_transformer.debug", device="cpu", dataset=None)
    assert isinstance(model, VideoToAudio) and model.params()["weights"] == "random-init"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (20, 64, 64, 3), dtype=np.uint8)
    req = lambda cid, dur, seed: V2ARequest(cid, frames, 16.0, "clapping", dur, 16000, seed)  # noqa: E731
    reqs = [req("a", 0.3, 1), req("b", 0.2, 2)]
    outs = model.generate(reqs)
    assert [o.clip_id for o in outs] == ["a", "b"]
    assert outs[0].samples.shape == (1, 4800) and outs[1].samples.shape == (1, 3200)
    assert outs[0].samples.dtype == np.float32 and np.abs(outs[0].samples).max() <= 1
    assert outs[0].sample_rate == 16000 and outs[0].samples.std() > 1e-3
    alone = model.generate([req("a", 0.3, 1)])[0].samples
    np.testing.assert_array_equal(alone, outs[0].samples)  # independent of batch neighbours
    other = model.generate([req("a", 0.3, 5)])[0].samples
    assert not np.array_equal(other, alone)


@pytest.mark.parametrize("output", ["mse", "mae"])
def test_stereo_and_regression_outputs(output):
    cfg = mw.get_config("wavenet_video", "debug", channels=2, output=output)
    net = seeded_init(mw.build_net(cfg), 0).double().eval()
    audio, video = _inputs(cfg, Fr=3)
    out = net.sequence_logits(audio, pad_context(video, cfg.n_frames))
    assert out.shape == (2, 2, audio.shape[-1], 1)
    loss = mw.loss_fn(out, audio, cfg)
    assert loss.ndim == 0 and torch.isfinite(loss)
    a = mw.generate_audio(net, video, 2 * cfg.spf, [torch.Generator(), torch.Generator()], cached=True)
    b = mw.generate_audio(net, video, 2 * cfg.spf, [torch.Generator(), torch.Generator()], cached=False)
    assert a.shape == (2, 2, 2 * cfg.spf) and torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("family", mw.FAMILIES)
def test_shipped_tiny_checkpoint(family):
    from foleybench.family import build_model, split_name

    path = mw.default_checkpoint(f"{family}.tiny")
    if not path.is_file():
        pytest.skip(f"{path} not shipped yet")
    assert path.stat().st_size < 5 * 2**20
    model = build_model(f"{family}.tiny")
    assert model.params()["weights"] == "trained" and model.meta["checkpoint"] == str(path)
    fam, _ = split_name(f"{family}.tiny")
    assert model.meta["recipe_hash"] == fam.recipe_hash(mw.get_config(family, "tiny"), None, 0)


# ----------------------------------------------------- strided audio front end (variant 1)
def _strided(stride=4, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = mw.get_config("av_transformer", "strided_debug", audio_stride=stride, **kw)
    return mw.build_net(cfg).double().eval()


def test_strided_config_leaves_shipped_configs_alone():
    from foleybench.baselines.av_transformer import StridedAVTransformer
    from foleybench.baselines.mw_configs import AVTransformerConfig, recipe_config
    from foleybench.family import split_name
    from foleybench.train import stale_checkpoints

    fam, _ = split_name("av_transformer.tiny")
    tiny = mw.get_config("av_transformer", "tiny")
    raw = mw.get_config("av_transformer", "tiny", audio_frontend="raw", audio_stride=4)
    assert type(tiny) is type(raw) is AVTransformerConfig and raw == tiny
    assert recipe_config(raw) == recipe_config(tiny) and "audio_frontend" not in recipe_config(tiny)
    strided = mw.get_config("av_transformer", "strided_tiny")
    assert strided.audio_frontend == "strided" and recipe_config(strided)["audio_frontend"] == "strided"
    assert fam.recipe_hash(strided) != fam.recipe_hash(tiny)
    assert isinstance(mw.build_net(mw.get_config("av_transformer", "strided_debug")), StridedAVTransformer)
    with pytest.raises(ValueError):
        mw.get_config("av_transformer", "debug", audio_frontend="conv")
    with pytest.raises(KeyError):
        mw.get_config("wavenet_video", "strided_debug")
    with pytest.raises(TypeError):  # each network's config has only its own fields
        mw.get_config("wavenet_video", "debug", d_model=8)
    path = mw.default_checkpoint("av_transformer.tiny")
    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    assert mw.load_checkpoint(path)["config"] == recipe_config(tiny)
    assert mw.MWModel(raw, "av_transformer.tiny", path).meta["weights"] == "trained"
    with pytest.raises(ValueError, match="another config"):
        mw.MWModel(strided, "av_transformer.tiny", path)
    data = "runs/data/synthfoley-48-s0"
    if __import__("os").path.isdir(data):
        assert stale_checkpoints(data) == {}


@pytest.mark.parametrize("stride", [4, 5])
def test_strided_causality_per_sample(stride):
    """Output t sees audio < t only: perturbing sample t0 must leave outputs 0..t0 as they
    were and change output t0 + 1, for every t0 across two chunks (r = 0 .. s-1)."""
    net = _strided(stride)
    cfg = net.cfg
    audio, video = _inputs(cfg, Fr=4)
    vp = pad_context(video, cfg.n_frames)
    out = net.sequence_logits(audio, vp)
    assert out.shape == (2, 1, audio.shape[-1], 256)
    base = 2 * cfg.spf + 3 * stride  # chunks 26, 27 (s = 4) straddle no frame; 37 (s = 4) does
    for t0 in [*range(base, base + 2 * stride), 148, 149, 150]:
        a2 = audio.clone()
        a2[..., t0] = -a2[..., t0] - 0.1
        o2 = net.sequence_logits(a2, vp)
        assert torch.allclose(out[:, :, :t0 + 1], o2[:, :, :t0 + 1], atol=1e-10), t0
        assert not torch.allclose(out[:, :, t0 + 1], o2[:, :, t0 + 1]), t0
    v2 = video.clone()
    v2[:, 3] = -v2[:, 3]
    o3 = net.sequence_logits(audio, pad_context(v2, cfg.n_frames))
    cut = 3 * cfg.spf  # with s = 4 chunk 37 (samples 148..151) straddles frames 2 and 3
    assert torch.allclose(out[:, :, :cut], o3[:, :, :cut], atol=1e-10)
    assert not torch.allclose(out[:, :, cut], o3[:, :, cut])


def test_strided_step_and_naive_match_teacher_forcing():
    """Stereo, 2 layers, an 8-token window: the ring wraps and naive_step truncates."""
    net = _strided(4, channels=2, window=8, n_layers=2)
    cfg = net.cfg
    audio, video = _inputs(cfg, Fr=4)
    vp = pad_context(video, cfg.n_frames)
    ref = net.sequence_logits(audio, vp)
    assert torch.allclose(net.sequence_logits(audio, vp, chunk=7), ref, atol=1e-12)  # chunked tokens
    assert torch.allclose(net.sequence_logits(audio, vp, first_frame=1), ref[:, :, cfg.spf:], atol=1e-12)
    ctx = context_windows(vp, cfg.n_frames)
    st, x_prev = net.init_state(2), torch.zeros(2, 2, dtype=torch.float64)
    hx, hc = torch.zeros_like(audio), torch.zeros(2, cfg.d_model, audio.shape[-1], dtype=torch.float64)
    with torch.no_grad():
        for s in range(audio.shape[-1]):
            emb = net.frame_embedding(ctx[:, s // cfg.spf])[:, :, s % cfg.spf]
            assert torch.allclose(net.step(st, x_prev, emb), ref[:, :, s], atol=1e-9), f"cached, sample {s}"
            hx[..., s], hc[..., s] = x_prev, emb
            assert torch.allclose(net.naive_step(hx[..., :s + 1], hc[..., :s + 1]), ref[:, :, s],
                                  atol=1e-9), f"naive, sample {s}"
            x_prev = audio[:, :, s]
    assert audio.shape[-1] // 4 > net.rf_tokens > net.window  # wrapped and truncated


@pytest.mark.parametrize("output,channels", [("mulaw", 1), ("mse", 2)])
def test_strided_cached_equals_naive_generation(output, channels):
    net = _strided(4, output=output, channels=channels, window=8)
    cfg = net.cfg
    _, video = _inputs(cfg, Fr=4)
    n = 3 * cfg.spf + 11  # not a whole number of frames or chunks
    gens = lambda: [torch.Generator().manual_seed(s) for s in (3, 4)]  # noqa: E731
    a = mw.generate_audio(net, video, n, gens(), cached=True)
    b = mw.generate_audio(net, video, n, gens(), cached=False)
    assert a.shape == (2, channels, n)
    assert torch.equal(a, b) if output == "mulaw" else torch.allclose(a, b, atol=1e-10)
    assert len(torch.unique(a[0])) > 20 and not torch.equal(a[0], a[1])


def test_strided_trains_through_the_loss_path():
    """train.py's path (warm frames, loss_fn on the rest): gradients reach every part, and
    a few steps on one batch lower the loss."""
    torch.manual_seed(0)
    cfg = mw.get_config("av_transformer", "strided_debug")
    net = mw.build_net(cfg)
    audio, video = _inputs(cfg, B=2, Fr=cfg.crop_frames)
    audio, vp = audio.float(), pad_context(video.float(), cfg.n_frames)
    warm = cfg.warm_frames * cfg.spf
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    losses = []
    for _ in range(8):
        loss = mw.loss_fn(net.sequence_logits(audio, vp, first_frame=cfg.warm_frames), audio[..., warm:], cfg)
        opt.zero_grad()
        loss.backward()
        if not losses:
            for name in ("inp.weight", "part.weight", "rpos", "pos", "blocks.0.qkv.weight", "ff1.weight"):
                assert net.get_parameter(name).grad.abs().sum() > 0, name
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_runner_batches_by_the_models_own_generation_batch(tmp_path, monkeypatch):
    """Sample-by-sample families ask for 32-clip generation batches; an explicit batch size wins."""
    from foleybench import runner
    from foleybench.datasets.synthfoley import SynthConfig, SynthFoley

    man = SynthFoley(tmp_path / "d", n_clips=6, seed=0, cfg=SynthConfig(duration_s=0.5)).manifest()
    seen: list[int] = []
    real = runner._generate_batch
    monkeypatch.setattr(runner, "_generate_batch", lambda m, reqs, *a: (seen.append(len(reqs)), real(m, reqs, *a))[1])
    assert family.build_model("wavenet_video.debug", "v2a").generation_batch == 32
    runner.generate("v2a", "wavenet_video.debug", man, tmp_path / "a")
    assert seen == [6]
    seen.clear()
    runner.generate("v2a", "wavenet_video.debug", man, tmp_path / "b", batch_size=4)
    assert seen == [4, 2]
    seen.clear()
    runner.generate("v2a", "deepfusion.debug", man, tmp_path / "c")
    assert seen == [4, 2]
