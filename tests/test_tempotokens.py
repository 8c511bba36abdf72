"""Properties of the ``tempotokens`` family (debug networks: seconds on CPU).

The family contract (ids, order, shape, seeded determinism, batch independence, shipped
records) is checked for every family by tests/test_model_conformance.py; here: what the
issue asks of TempoTokens in particular (issue 11, "How it is judged")."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from foleybench.api import A2VRequest
from foleybench.baselines import tempotokens as tt
from foleybench.baselines.tempotokens_mapper import WINDOWS, frame_assignment
from foleybench.baselines.tempotokens_tiny import (
    EVENT_REACH,
    Clip,
    TempoTokensNet,
    TempoTokensTrainer,
    recipe_config,
)

torch.set_num_threads(1)
DEBUG = tt.CONFIGS["debug"]


def _audio(seed: int, seconds: float, sr: int = 16000, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal((channels, int(seconds * sr)))).astype(np.float32)


def _req(seed: int = 5, seconds: float = 0.5, fps: float = 16.0, size=(32, 32), audio_seed: int = 1,
         sr: int = 16000, channels: int = 1) -> A2VRequest:
    return A2VRequest("clip", _audio(audio_seed, seconds, sr, channels), sr, "hands clapping", seconds, fps,
                      size, seed)


@pytest.fixture(scope="module")
def model():
    return tt.build_model(DEBUG, name="tempotokens.debug")


def _model(**overrides) -> tt.TempoTokensModel:
    return tt.build_model(dataclasses.replace(DEBUG, **overrides), name="tempotokens.debug")


def test_same_seed_bit_identical_other_seed_differs(model):
    a = model.generate([_req(seed=5)])[0].frames
    b = model.generate([_req(seed=5)])[0].frames
    c = model.generate([_req(seed=6)])[0].frames
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("seconds,fps,size,sr,channels", [(2.37, 25.0, (48, 64), 22050, 2),
                                                           (10.0, 16.0, (64, 64), 16000, 1),
                                                           (2.37, 7.5, (30, 40), 44100, 1)])
def test_shape_dtype_fps_for_odd_durations(seconds, fps, size, sr, channels):
    m = _model(sample_steps=2)  # the frame count and resizing do not depend on the solver's steps
    r = _req(seconds=seconds, fps=fps, size=size, sr=sr, channels=channels)
    out = m.generate([r])[0]
    assert out.frames.dtype == np.uint8 and out.fps == fps
    assert out.frames.shape == (int(round(seconds * fps)), *size, 3)
    assert out.frames.std() > 0


def test_output_frames_follow_model_frames_by_time():
    x = torch.linspace(-1, 1, 5)[:, None, None, None].expand(5, 3, 4, 4)  # model frame k has value k
    out = tt.to_request_frames(x, 16.0, 40.0, 0.3, (4, 4))               # 12 frames at 40 fps
    want = [min(int(j * 16 / 40 + 1e-6), 4) for j in range(12)]        # the model frame shown at j / 40 s
    got = [int(np.argmin(np.abs(np.round((np.linspace(-1, 1, 5) + 1) * 127.5) - f[0, 0, 0]))) for f in out]
    assert got == want


def test_guidance_off_ignores_the_audio():
    off = _model(guidance=0.0)
    a = off.generate([_req(audio_seed=1)])[0].frames
    b = off.generate([dataclasses.replace(_req(audio_seed=2), audio=np.zeros((1, 8000), np.float32))])[0].frames
    np.testing.assert_array_equal(a, b)
    on = _model()  # guided: the same two requests differ (so the check above can fail)
    assert not np.array_equal(on.generate([_req(audio_seed=1)])[0].frames,
                              on.generate([_req(audio_seed=2)])[0].frames)


def test_text_only_ignores_the_audio_and_follows_the_label():
    m = _model(context="text")
    a = m.generate([_req(audio_seed=1)])[0].frames
    np.testing.assert_array_equal(a, m.generate([_req(audio_seed=2)])[0].frames)
    other = dataclasses.replace(_req(audio_seed=1), label="a metronome ticking")
    assert not np.array_equal(a, m.generate([other])[0].frames)


def _batch(cfg, stage_net):
    rng = np.random.default_rng(0)
    n = 2 * cfg.crop_frames
    data = [Clip(f"c{i}", "hands clapping", torch.rand(n, 3, cfg.size, cfg.size) * 2 - 1,
                 torch.from_numpy(_audio(i, n / cfg.fps)[0])) for i in range(3)]
    return TempoTokensTrainer().batch(data, cfg, rng)


@pytest.mark.parametrize("event_context", ["frame", "six"])
@pytest.mark.parametrize("stage", [1, 2])
def test_stage_two_trains_only_audio_encoder_and_mapper(stage, event_context):
    cfg = dataclasses.replace(DEBUG, event_context=event_context, event_align_weight=0.5)
    torch.manual_seed(0)
    net = TempoTokensNet(cfg)
    net.trained_steps.fill_(0 if stage == 1 else cfg.stage1_steps)
    tr = TempoTokensTrainer()
    assert tr.stage(net) == stage
    batch = _batch(cfg, net)
    for mode in [("audio", 4, False), ("text_audio", 4, False), ("audio", 2, False), ("audio", 4, True)]:
        net.zero_grad(set_to_none=True)
        tr.loss(net, {**batch, "mode": mode}, cfg).backward()
        frozen = [p.grad for p in [*net.denoiser.parameters(), *net.text.parameters()]]
        trained = [p.grad for p in [*net.audio.parameters(), *net.mapper.parameters()]]
        if stage == 2:
            assert all(g is None for g in frozen)
            assert any(g is not None and g.abs().sum() > 0 for g in trained)
            assert all(g is not None for g in net.audio.parameters() for g in [g.grad])
        else:  # stage 1: the label text conditions the denoiser; the audio side is unused
            assert all(g is None for g in trained)
            assert all(g is not None for g in net.denoiser.parameters() for g in [g.grad])
        if stage == 1:
            break
    assert int(net.trained_steps) == (1 if stage == 1 else cfg.stage1_steps + 4)


def test_six_token_event_context_is_the_mapper_shape_over_event_tokens():
    """event_context "six": [e_f, w1, w2, w4, w8, g] with w_k[i] the mean of e over
    [max(i-k, 0), min(i+k, T)) (closed form, edges included) and g the mean over frames;
    "frame" stays the one token e_f."""
    torch.manual_seed(0)
    net = TempoTokensNet(dataclasses.replace(DEBUG, event_context="six"))
    codes = torch.tensor([[5, 5, 0, 1, 2, 3, 4, 5, 5, 5, 5], [5, 0, 1, 2, 3, 4, 5, 5, 5, 0, 1]])
    with torch.no_grad():
        ctx = net.event_context(codes)
        e = net.text.event_tokens(codes)[:, :, 0]
    n = codes.shape[1]
    assert ctx.shape == (2, n, 2 + len(WINDOWS), DEBUG.ctx_dim)
    assert torch.equal(ctx[:, :, 0], e)
    for j, k in enumerate(WINDOWS):
        for i in range(n):
            want = e[:, max(i - k, 0):min(i + k, n)].mean(1)
            torch.testing.assert_close(ctx[:, i, 1 + j], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ctx[:, :, -1], e.mean(1, keepdim=True).expand(-1, n, -1))
    frame = TempoTokensNet(DEBUG)
    frame.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.equal(frame.event_context(codes), e[:, :, None])
    assert codes.max() == 2 * EVENT_REACH + 1


def test_event_window_dropout_leaves_the_frame_token_alone():
    """Stage 1, event_context "six": a clip whose window/global event tokens are dropped
    is trained exactly as with the one-token "frame" context (masked keys add nothing)."""
    six = dataclasses.replace(DEBUG, event_context="six", event_window_dropout=0.5, event_dropout=0.0,
                              cond_dropout=0.0)
    torch.manual_seed(0)
    net = TempoTokensNet(six)
    torch.nn.init.normal_(net.denoiser.out.weight, std=0.1)  # zero-initialised: would ignore any context
    frame = TempoTokensNet(dataclasses.replace(six, event_context="frame", event_window_dropout=0.0))
    frame.load_state_dict(net.state_dict())
    batch = _batch(six, net)
    batch["events"] = torch.randint(0, 2 * EVENT_REACH + 2, batch["events"].shape)
    tr = TempoTokensTrainer()
    with torch.no_grad():
        dropped = tr.loss(net, {**batch, "window_drop": torch.ones(len(batch["labels"]), dtype=torch.bool)}, six)
        kept = tr.loss(net, {**batch, "window_drop": torch.zeros(len(batch["labels"]), dtype=torch.bool)}, six)
        one = tr.loss(frame, batch, frame.cfg)
    torch.testing.assert_close(dropped, one, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(kept, one)


def test_event_context_is_a_recipe_field_only_when_six():
    assert "event_context" not in recipe_config(DEBUG)  # the shipped recipes keep their hashes
    six = dataclasses.replace(DEBUG, event_context="six")
    assert recipe_config(six)["event_context"] == "six"
    with pytest.raises(ValueError, match="event_context"):
        dataclasses.replace(DEBUG, event_context="seven")
    with pytest.raises(ValueError, match="event_window_dropout"):
        dataclasses.replace(DEBUG, event_window_dropout=0.5)  # needs "six"
    assert "event_window_dropout" not in recipe_config(six)
    assert recipe_config(dataclasses.replace(six, event_window_dropout=0.5))["event_window_dropout"] == 0.5


def test_changing_one_window_of_audio_changes_nearby_tokens_only():
    cfg = DEBUG
    torch.manual_seed(0)
    net = TempoTokensNet(cfg).eval()
    fps, seconds, f = 16.0, 3.0, 20                           # change the audio shown in frame 20
    n = int(seconds * fps)
    audio = torch.from_numpy(_audio(3, seconds))
    lo, hi = int(f / fps * cfg.sample_rate), int((f + 1) / fps * cfg.sample_rate)
    changed = audio.clone()
    changed[0, lo:hi] = torch.from_numpy(_audio(4, (hi - lo) / cfg.sample_rate))[0]
    with torch.no_grad():
        ctx_a, _, s_a = net.audio_context(audio, n, fps)
        ctx_b, _, s_b = net.audio_context(changed, n, fps)
    # frames whose patches see [lo, hi): bounded by the encoder's receptive field
    n_patches = net.audio(audio)[0].shape[1]
    hit = [p for p in range(n_patches) if net.audio.patch_span(p)[0] < hi and net.audio.patch_span(p)[1] > lo]
    frames = set(frame_assignment(net.audio.patch_times(n_patches)[hit], n, fps).tolist())
    assert f in frames and frames <= {f - 1, f, f + 1}
    diff_s = {i for i in range(n) if not torch.equal(s_a[0, i], s_b[0, i])}
    assert f in diff_s and diff_s <= frames                     # s: only the frames of that window
    for j, k in enumerate((1, 2, 4, 8)):                         # w_k[i] = mean(s[i-k : i+k])
        near = {i for i in range(n) if any(i - k <= q < i + k for q in frames)}
        diff_w = {i for i in range(n) if not torch.equal(ctx_a[0, i, 1 + j], ctx_b[0, i, 1 + j])}
        assert diff_w and diff_w <= near, (k, sorted(diff_w), sorted(near))
        assert {i for i in range(n) if abs(i - f) > k + 1}.isdisjoint(diff_w)


@pytest.mark.parametrize("reach", [(), (2,), (2, 4)])
def test_audio_patches_depend_exactly_on_their_stated_span(reach):
    """patch_span is the receptive field, also widened by ``audio_reach``: changing one
    sample changes the patches whose span holds it, and only those."""
    cfg = dataclasses.replace(DEBUG, audio_reach=reach)
    torch.manual_seed(0)
    enc = TempoTokensNet(cfg).audio.eval()
    for layer in enc.ctx:                  # non-zero weights, so every reached patch really changes
        torch.nn.init.normal_(layer.weight, std=0.3)
    audio = torch.from_numpy(_audio(3, 1.0))
    j = 8037                         # one sample in the middle (not a window's first: Hann weight 0)
    changed = audio.clone()
    changed[0, j] += 1.0
    with torch.no_grad():
        a, _ = enc(audio)
        b, _ = enc(changed)
    moved = {p for p in range(a.shape[1]) if not torch.equal(a[0, p], b[0, p])}
    spans = {p for p in range(a.shape[1]) if enc.patch_span(p)[0] <= j < enc.patch_span(p)[1]}
    assert moved == spans
    assert len(spans) >= 4 + 2 * sum(reach)                   # wider by 2 d patches a dilation
    assert recipe_config(cfg).get("audio_reach", []) == list(reach)


def test_tiny_tags_share_one_recipe():
    tiny = [t for t in tt.CONFIGS if t.endswith("tiny")]
    assert {"tiny", "text_only_tiny", "audio_only_tiny", "text_audio_tiny", "global_tiny", "w1_tiny", "w2_tiny",
            "w3_tiny", "w4_tiny"} <= set(tiny)
    assert all(recipe_config(tt.CONFIGS[t]) == recipe_config(tt.CONFIGS["tiny"]) for t in tiny)
    assert tt.CONFIGS["tiny"].context == "audio" and tt.CONFIGS["tiny"].n_windows == 4
    fam = tt.CONFIGS
    assert fam["global_tiny"].global_only and fam["text_only_tiny"].context == "text"


def test_bad_audio_is_a_clear_error(model):
    r = dataclasses.replace(_req(), audio=np.zeros((1, 0), np.float32))
    with pytest.raises(Exception, match="clip: audio must be"):
        model.generate([r])
