"""The shuffled-audio control of tempotokens / antifoley, and tempotokens' stage-1 event
tokens (issue 11: the models must follow the audio, shown against their own control)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from foleybench.api import A2VRequest, FoleybenchError
from foleybench.baselines import antifoley as af
from foleybench.baselines import tempotokens as tt
from foleybench.baselines.reference import derangement
from foleybench.baselines.tempotokens_controls import SHUFFLED_TAG, ShuffledAudio
from foleybench.baselines.tempotokens_tiny import (
    EVENT_REACH,
    Clip,
    TempoTokensNet,
    TempoTokensTrainer,
    event_code_logits,
    event_codes,
    motion_weights,
    recipe_config,
)
from foleybench.datasets.base import ClipRecord, Manifest

torch.set_num_threads(1)
NONE = 2 * EVENT_REACH + 1


def test_event_codes_closed_form_and_edges():
    # offsets to the nearest event, -2..2 -> codes 0..4; farther or no event -> 5
    assert event_codes([5], range(1, 10)) == [NONE, NONE, 0, 1, 2, 3, 4, NONE, NONE]
    assert event_codes([], range(3)) == [NONE] * 3
    # two events: each frame takes the nearer one (frame 6 is 2 after 4 and 2 before 8: |d| ties -> code 4 or 0)
    codes = event_codes([4, 8], range(3, 10))
    assert codes[:3] == [1, 2, 3] and codes[4:] == [1, 2, 3] and codes[3] in (0, 4)
    assert event_codes([0], [0, 2, 3]) == [2, 4, NONE]          # an event on the first frame


def _stage1_setup():
    cfg = tt.CONFIGS["debug"]
    torch.manual_seed(0)
    net = TempoTokensNet(cfg)
    torch.nn.init.normal_(net.denoiser.out.weight, std=0.05)    # zero-init output would hide the context
    rng = np.random.default_rng(0)
    n = 2 * cfg.crop_frames
    data = [Clip(f"c{i}", "hands clapping", torch.rand(n, 3, cfg.size, cfg.size) * 2 - 1,
                 torch.zeros(int(n / cfg.fps * cfg.sample_rate)), (2, 5)) for i in range(3)]
    batch = TempoTokensTrainer().batch(data, cfg, rng)
    return cfg, net, batch


def test_stage1_context_carries_per_frame_event_tokens():
    cfg, net, batch = _stage1_setup()
    tr = TempoTokensTrainer()
    assert batch["events"].shape == (cfg.batch_size, cfg.crop_frames)
    keep = {**batch, "drop": torch.zeros(cfg.batch_size, dtype=torch.bool),
            "event_drop": torch.zeros(cfg.batch_size, dtype=torch.bool)}
    other = {**keep, "events": torch.full_like(batch["events"], NONE)}
    with torch.no_grad():
        a = tr.loss(net, keep, cfg)
        net.trained_steps.zero_()
        b = tr.loss(net, other, cfg)
    assert tr.stage(net) == 1 and not torch.equal(a, b)        # the event codes reach the denoiser
    # dropped event tokens (masked keys) make the codes irrelevant: the text-only context
    dropped = {**keep, "event_drop": torch.ones(cfg.batch_size, dtype=torch.bool)}
    with torch.no_grad():
        net.trained_steps.zero_()
        c = tr.loss(net, dropped, cfg)
        net.trained_steps.zero_()
        d = tr.loss(net, {**dropped, "events": other["events"]}, cfg)
    torch.testing.assert_close(c, d, rtol=0, atol=0)


def test_motion_weights_closed_form():
    # a still clip weighs 1 everywhere; strength 0 too
    x = torch.zeros(2, 5, 3, 4, 4)
    torch.testing.assert_close(motion_weights(x, 2.0), torch.ones(2, 5, 1, 4, 4), rtol=0, atol=0)
    # one pixel switches on at frame 2 (change 1 between frames 1 and 2, in all channels)
    x[0, 2:, :, 1, 3] = 1.0
    w = motion_weights(x, 2.0)
    m = torch.zeros(5)
    m[1], m[2] = 0.5, 0.5                                   # mean of the changes to the previous / next frame
    mean = m.sum() / (5 * 16)
    expect = torch.ones(5)
    expect[1:3] = 1 + 2.0 * 0.5 / (mean + 1e-3)
    torch.testing.assert_close(w[0, :, 0, 1, 3], expect)
    assert torch.all(w[0, :, 0, 0, 0] == 1) and torch.all(w[1] == 1)  # other pixels and the still clip
    assert w.shape == (2, 5, 1, 4, 4) and motion_weights(x[:, :1], 2.0).shape == (2, 1, 1, 4, 4)
    torch.testing.assert_close(motion_weights(x, 0.0), torch.ones(2, 5, 1, 4, 4), rtol=0, atol=0)


def test_stage2_event_alignment_trains_only_the_audio_side_toward_the_event_tokens():
    cfg, net, batch = _stage1_setup()
    cfg = dataclasses.replace(cfg, event_align_weight=0.5, motion_weight=1.0)
    net.eval()  # the global token's dropout off: the two losses below see the same context
    tr = TempoTokensTrainer()
    batch = {**batch, "mode": ("audio", 4, False)}
    other = {**batch, "events": torch.full_like(batch["events"], NONE)}
    losses = []
    for b in (batch, other):
        net.trained_steps.fill_(cfg.stage1_steps)
        net.zero_grad(set_to_none=True)
        loss = tr.loss(net, b, cfg)
        loss.backward()
        losses.append(loss.detach())
        assert all(p.grad is None for p in [*net.denoiser.parameters(), *net.text.parameters()])
        assert all(p.grad is not None for p in net.mapper.fc4.parameters())
    assert not torch.equal(losses[0], losses[1])              # the true event codes set the target
    # the added term is exactly weight x mean (s - event token)^2, with the frozen tokens as target
    net.trained_steps.fill_(cfg.stage1_steps)
    with torch.no_grad():
        full = tr.loss(net, batch, cfg)
        net.trained_steps.fill_(cfg.stage1_steps)
        base = tr.loss(net, batch, dataclasses.replace(cfg, event_align_weight=0.0))
        _, _, s = net.context("audio", batch["labels"], batch["audio"], cfg.crop_frames, cfg.fps)
        target = net.text.event_tokens(batch["events"])[:, :, 0]
    torch.testing.assert_close(full - base, 0.5 * (s - target).pow(2).mean())


def test_stage2_event_code_ce_is_the_closed_form_and_trains_only_the_audio_side():
    cfg, net, batch = _stage1_setup()
    cfg = dataclasses.replace(cfg, event_ce_weight=2.0)
    net.eval()
    tr = TempoTokensTrainer()
    batch = {**batch, "mode": ("audio", 4, False)}
    net.trained_steps.fill_(cfg.stage1_steps)
    net.zero_grad(set_to_none=True)
    tr.loss(net, batch, cfg).backward()
    assert all(p.grad is None for p in [*net.denoiser.parameters(), *net.text.parameters()])
    assert all(p.grad is not None for p in [*net.mapper.fc4.parameters(), *net.audio.c1.parameters()])
    with torch.no_grad():
        net.trained_steps.fill_(cfg.stage1_steps)
        full = tr.loss(net, batch, cfg)
        net.trained_steps.fill_(cfg.stage1_steps)
        base = tr.loss(net, batch, dataclasses.replace(cfg, event_ce_weight=0.0))
        _, _, s = net.context("audio", batch["labels"], batch["audio"], cfg.crop_frames, cfg.fps)
        table = torch.stack([net.text.event_tokens(torch.tensor([[c]]))[0, 0, 0] for c in range(NONE + 1)])
        logits = event_code_logits(net, s)
    # logits: minus the distance of each frame token to each code's frozen event token
    torch.testing.assert_close(logits, -torch.cdist(s, table[None].expand(s.shape[0], -1, -1)), rtol=1e-4,
                               atol=1e-4)
    logp = torch.log_softmax(logits, -1).gather(-1, batch["events"][..., None])
    torch.testing.assert_close(full - base, -2.0 * logp.mean(), rtol=1e-4, atol=1e-5)
    # the frame token at a code's own event token is classified as that code
    hit = event_code_logits(net, table[None]).argmax(-1)[0]
    assert hit.tolist() == list(range(NONE + 1))


def test_event_ce_weight_at_zero_leaves_the_recipe_as_before():
    cfg = tt.CONFIGS["debug"]  # the tiny recipe uses it since session 23
    assert "event_ce_weight" not in recipe_config(cfg)
    assert recipe_config(dataclasses.replace(cfg, event_ce_weight=1.0))["event_ce_weight"] == 1.0
    assert recipe_config(tt.CONFIGS["tiny"])["event_ce_weight"] == 1.0


def _manifest(tmp_path, n: int = 3) -> Manifest:
    import soundfile as sf

    recs = []
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        p = tmp_path / f"c{i}.wav"
        sf.write(p, (0.3 * rng.standard_normal(16000)).astype(np.float32), 16000)
        recs.append(ClipRecord(f"c{i}", audio=str(p), duration_s=1.0, label="hands clapping"))
    return Manifest(recs, tmp_path, name="t")


@pytest.mark.parametrize("family,cfg", [(tt, tt.CONFIGS["debug"]), (af, af.CONFIGS["debug"])])
def test_shuffled_audio_feeds_the_deranged_clips_audio(tmp_path, family, cfg):
    man = _manifest(tmp_path)
    inner = family.build_model(cfg, name=f"{family.__name__}.debug")
    ctrl = ShuffledAudio(inner, "x.shuffledaudio_tiny", man, seed=3)
    import soundfile as sf

    reqs = [A2VRequest(r.clip_id, sf.read(r.audio, dtype="float32")[0][None], 16000, r.label, 0.5, 16.0,
                       (32, 32), 7) for r in man]
    outs = ctrl.generate(reqs)
    assert [o.clip_id for o in outs] == [r.clip_id for r in reqs]
    perm = derangement(man.ids(), 3)
    by_id = {r.clip_id: r for r in reqs}
    for r, o in zip(reqs, outs):
        src = by_id[perm[r.clip_id]]
        assert src.clip_id != r.clip_id
        want = inner.generate([dataclasses.replace(r, audio=src.audio[:, :8000])])[0]
        np.testing.assert_array_equal(o.frames, want.frames)   # exactly the model on the other clip's audio
    own = inner.generate(reqs[:1])[0]
    assert not np.array_equal(own.frames, outs[0].frames)     # and not what its own audio gives


def test_shuffled_audio_without_dataset_is_a_clear_error():
    ctrl = ShuffledAudio(tt.build_model(tt.CONFIGS["debug"], name="tempotokens.debug"), "tempotokens.x", None)
    req = A2VRequest("c0", np.zeros((1, 800), np.float32), 16000, "", 0.05, 16.0, (32, 32), 0)
    with pytest.raises(FoleybenchError, match="needs the dataset"):
        ctrl.generate([req])


def test_shuffled_tags_share_tiny_checkpoint_and_recipe():
    for fam in (tt, af):
        rec, tiny = fam._RECORDS[SHUFFLED_TAG], fam._RECORDS["tiny"]
        assert (rec.file, rec.sha256, rec.recipe_hash) == (tiny.file, tiny.sha256, tiny.recipe_hash)
        assert fam.CONFIGS[SHUFFLED_TAG] == fam.CONFIGS["tiny"]


def test_paired_difference_over_shared_clips():
    from foleybench.baselines.tempotokens_controls import paired_difference

    a = {"x": 0.75, "y": 0.5, "z": 0.25, "only_a": 9.0}          # binary-exact values: differences 0.5, 0.25, 0
    b = {"x": 0.25, "y": 0.25, "z": 0.25}
    r = paired_difference(a, b, n_boot=2000)
    assert r["n"] == 3 and r["mean"] == 0.25
    assert 0.0 <= r["ci"][0] < 0.25 < r["ci"][1] <= 0.5          # resampled means lie in [0, 0.5]
    assert paired_difference(b, b)["ci"] == [0.0, 0.0]
    with pytest.raises(FoleybenchError, match="share no scored clip"):
        paired_difference({"p": 1.0}, {"q": 1.0})
