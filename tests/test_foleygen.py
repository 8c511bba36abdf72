"""FoleyGen's pure parts: delay pattern, visual masks, LM causality, guidance, sampling, KV cache.

Tiny shapes (d_model 16, 2 layers, 16-token codebooks) so the whole file runs in seconds
on one core. Codec properties are in tests/test_codec.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from foleybench.baselines.codebook_pattern import DelayPattern
from foleybench.baselines.foleygen_lm import MECHANISMS, FoleyGenLM, LMConfig, frame_self_mask, visual_mask
from foleybench.baselines.foleygen_sample import (
    GumbelStream,
    cfg_logits,
    filter_logits,
    generate_codes,
    sample_tokens,
    sample_tokens_reference,
)

torch.set_num_threads(1)
CARD, K = 16, 3


def _lm(variant: str, seed: int = 0, frame_rate: float = 50.0, visual_fps: float = 16.0) -> FoleyGenLM:
    torch.manual_seed(seed)
    return FoleyGenLM(LMConfig(variant, K, CARD, 8, frame_rate, visual_fps, d_model=16, n_heads=2,
                               n_layers=2)).eval()


def _gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


# ------------------------------------------------------------------ delay pattern
@pytest.mark.parametrize("k,t", [(1, 1), (1, 7), (2, 1), (4, 1), (4, 5), (3, 17), (8, 3), (32, 2)])
def test_delay_pattern_layout_and_round_trip(k, t):
    pat = DelayPattern(k, special=100)
    codes = torch.randint(0, 100, (2, k, t), generator=torch.Generator().manual_seed(k * 31 + t))
    seq = pat.build(codes)
    assert seq.shape == (2, k, t + k - 1)
    for q in range(k):
        for s in range(t + k - 1):
            want = codes[:, q, s - q] if 0 <= s - q < t else torch.full((2,), 100)
            assert torch.equal(seq[:, q, s], want), (q, s)
    assert torch.equal(pat.valid(t), seq[0] != 100)
    assert int(pat.valid(t).sum()) == k * t
    assert torch.equal(pat.revert(seq), codes)
    inp = pat.lm_input(seq)  # column s of the input is column s-1 of the sequence
    assert (inp[..., 0] == 100).all() and torch.equal(inp[..., 1:], seq[..., :-1])


def test_delay_pattern_rejects_wrong_codebook_count():
    with pytest.raises(ValueError):
        DelayPattern(4, 10).build(torch.zeros(1, 3, 5, dtype=torch.long))


# ------------------------------------------------------------------ masks
def test_mask_definitions_on_a_hand_worked_grid():
    # 4 steps/s (0.25 s per step), 2 frames/s (0.5 s per frame), 3 real frames of 4
    steps, nf = torch.arange(8), torch.tensor([3])
    full = visual_mask(steps, nf, 4, 4.0, 2.0, "full")[0]
    causal = visual_mask(steps, nf, 4, 4.0, 2.0, "causal")[0]
    frame = visual_mask(steps, nf, 4, 4.0, 2.0, "frame")[0]
    assert full[:, :3].all() and not full[:, 3].any()  # padding frame 3 is never seen
    assert frame[:6].int().argmax(1).tolist() == [0, 0, 1, 1, 2, 2] and (frame[:6].sum(1) == 1).all()
    assert causal[:6].sum(1).tolist() == [1, 1, 2, 2, 3, 3]  # frames up to the current one
    # past the clip's frames (steps 6, 7 = 1.5-2 s): the last real frame, never padding
    assert frame[6:].int().argmax(1).tolist() == [2, 2] and (frame[6:].sum(1) == 1).all()


@pytest.mark.parametrize("fr,vfps", [(50.0, 16.0), (75.0, 8.0), (50.0, 1.0), (4.0, 8.0)])
def test_masks_nested_and_never_empty(fr, vfps):
    steps, nf = torch.arange(60), torch.tensor([5, 1, 9])
    m = {name: visual_mask(steps, nf, 9, fr, vfps, name) for name in MECHANISMS}
    for name in MECHANISMS:
        assert m[name].any(-1).all(), name  # every query row has a key: no NaN
    assert (m["frame"] <= m["causal"]).all() and (m["causal"] <= m["full"]).all()
    # causal: a prefix of frames that only grows with time
    c = m["causal"].int()
    assert (c.diff(dim=-1) <= 0).all()
    assert (c.sum(-1).diff(dim=1) >= 0).all()
    for name in MECHANISMS:  # padding rows of the P prefix see themselves at least
        assert frame_self_mask(nf, 9, name).any(-1).all()


# ------------------------------------------------------------------ causality and masked frames
@pytest.mark.parametrize("variant", ["c", "p"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_changing_later_tokens_leaves_earlier_logits_unchanged(variant, mechanism):
    lm, g = _lm(variant), torch.Generator().manual_seed(1)
    inp = torch.randint(0, CARD + 1, (2, K, 20), generator=g)
    vis, nf = torch.randn(2, 7, 8, generator=g), torch.tensor([7, 4])
    with torch.no_grad():
        a = lm(inp, vis, nf, mechanism)
        later = inp.clone()
        later[..., 12:] = torch.randint(0, CARD, later[..., 12:].shape, generator=g)
        b = lm(later, vis, nf, mechanism)
    torch.testing.assert_close(a[:, :, :12], b[:, :, :12], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, :, 12:], b[:, :, 12:])  # the change did reach the later steps


@pytest.mark.parametrize("variant", ["c", "p"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_masked_out_frames_cannot_change_the_output(variant, mechanism):
    # steps at 8/s, frames at 4/s: step s overlaps frame s // 2
    lm, g = _lm(variant, frame_rate=8.0, visual_fps=4.0), torch.Generator().manual_seed(2)
    inp = torch.randint(0, CARD + 1, (1, K, 16), generator=g)
    vis, nf = torch.randn(1, 8, 8, generator=g), torch.tensor([6])  # frames 6, 7 are padding
    steps = torch.arange(16)
    seen = visual_mask(steps, nf, 8, 8.0, 4.0, mechanism)[0].cummax(0).values  # frames any step <= s saw
    with torch.no_grad():
        base = lm(inp, vis, nf, mechanism)
        for s in (0, 3, 8, 15):
            other = vis.clone()
            hidden = ~seen[s]
            other[0, hidden] = torch.randn(int(hidden.sum()), 8, generator=g) * 10
            out = lm(inp, other, nf, mechanism)
            torch.testing.assert_close(out[:, :, :s + 1], base[:, :, :s + 1], rtol=0, atol=1e-6)
        if mechanism != "full":  # a frame the step sees does change it
            other = vis.clone()
            other[0, 0] += 5
            assert not torch.allclose(lm(inp, other, nf, mechanism)[:, :, 0], base[:, :, 0])


# ------------------------------------------------------------------ guidance and sampling
def test_cfg_coefficient_one_is_conditional_zero_is_unconditional():
    lm, g = _lm("c"), torch.Generator().manual_seed(3)
    inp = torch.randint(0, CARD + 1, (2, K, 6), generator=g)
    vis, nf = torch.randn(2, 5, 8, generator=g), torch.tensor([5, 5])
    with torch.no_grad():
        cond, uncond = lm(inp, vis, nf), lm(inp, torch.zeros_like(vis), nf)
    assert not torch.allclose(cond, uncond)
    assert torch.equal(cfg_logits(cond, uncond, 1.0), cond)
    assert torch.equal(cfg_logits(cond, uncond, 0.0), uncond)
    torch.testing.assert_close(cfg_logits(cond, uncond, 3.0), uncond + 3 * (cond - uncond))


@pytest.mark.parametrize("variant", ["c", "p"])
def test_guided_generation_at_zero_equals_the_null_condition(variant):
    lm, g = _lm(variant), torch.Generator().manual_seed(4)
    vis, nf = torch.randn(2, 5, 8, generator=g), torch.tensor([5, 3])
    a = generate_codes(lm, vis, nf, 9, _gens(2), cfg_coef=0.0, temperature=0)
    b = generate_codes(lm, torch.zeros_like(vis), nf, 9, _gens(2), cfg_coef=1.0, temperature=0)
    c = generate_codes(lm, vis, nf, 9, _gens(2), cfg_coef=1.0, temperature=0)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_k_one_is_argmax_and_top_p_keeps_the_smallest_set():
    logits = torch.randn(4, K, CARD, generator=torch.Generator().manual_seed(5))
    for t in (0.5, 1.0, 3.0):
        assert torch.equal(sample_tokens(logits, _gens(4), temperature=t, top_k=1), logits.argmax(-1))
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = torch.isfinite(filter_logits(p, top_p=0.75))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(p, top_p=0.4)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(p, top_k=3)).sum() == 3


def test_the_fast_sampler_draws_the_reference_samplers_tokens():
    """sample_tokens (top-k cut on float32 from the shorter end, Gumbel noise in place) gives
    exactly the plain float64 filter-then-Gumbel-max tokens: any k (both ends of the order,
    k = 1, k = V - 1, off), temperatures, rounded logits full of ties at the cut, top-p too."""
    V = 64
    for trial in range(40):
        g = torch.Generator().manual_seed(100 + trial)
        logits = torch.randn(3, K, V, generator=g) * (0.2 + trial % 4)
        if trial % 3 == 0:
            logits = logits.round()  # many equal values, ties across the top-k cut
        temp = (1.0, 0.7, 2.5)[trial % 3]
        for top_k, top_p in [(1, 0.0), (5, 0.0), (32, 0.0), (33, 0.0), (60, 0.0), (V - 1, 0.0), (0, 0.0),
                             (0, 0.8), (10, 0.5)]:
            fast = sample_tokens(logits, _gens(3, trial), temp, top_k, top_p)
            ref = sample_tokens_reference(logits, _gens(3, trial), temp, top_k, top_p)
            assert torch.equal(fast, ref), (trial, top_k, top_p)


def test_the_gumbel_stream_draws_each_clips_numbers_step_by_step():
    """Chunked draws (7 steps at a time, across chunk edges) give every step exactly the noise of
    a per-step torch.rand(K, V) from the clip's own generator, transformed as the reference."""
    Kq, V, steps = 3, 11, 20
    stream = GumbelStream(_gens(2, 40), Kq, V, chunk=7)
    plain = _gens(2, 40)
    for _ in range(steps):
        want = torch.stack([-torch.log(-torch.log(torch.rand(Kq, V, generator=g, dtype=torch.float64)
                                                  .clamp(1e-12, 1 - 1e-12))) for g in plain])
        assert torch.equal(stream.next(), want)


@pytest.mark.parametrize("variant", ["c", "p"])
def test_sampled_tokens_are_never_the_special_token(variant):
    lm = _lm(variant, seed=7)
    with torch.no_grad():  # make the special token's embedding dominate: it still cannot be an output
        for e in lm.emb:
            e.weight[CARD] *= 50
    vis, nf = torch.randn(3, 6, 8), torch.tensor([6, 2, 4])
    for temp, top_k, top_p in [(1.0, 0, 0.0), (5.0, 0, 0.0), (1.0, 4, 0.9)]:
        codes = generate_codes(lm, vis, nf, [12, 5, 9], _gens(3, 11), temperature=temp, top_k=top_k, top_p=top_p)
        assert codes.dtype == torch.int64 and codes.shape == (3, K, 12)
        assert (codes[0] < CARD).all() and (codes[0] >= 0).all()
        assert (codes[1, :, :5] < CARD).all() and (codes[2, :, :9] < CARD).all()


# ------------------------------------------------------------------ KV cache
@pytest.mark.parametrize("variant", ["c", "p"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kv_cache_gives_the_tokens_of_full_recomputation(variant, mechanism):
    lm, g = _lm(variant, seed=8), torch.Generator().manual_seed(9)
    vis, nf = torch.randn(2, 7, 8, generator=g), torch.tensor([7, 3])
    for temp in (0.0, 1.0):  # greedy, and sampled with the same noise
        a = generate_codes(lm, vis, nf, 15, _gens(2), mechanism=mechanism, temperature=temp, use_cache=True)
        b = generate_codes(lm, vis, nf, 15, _gens(2), mechanism=mechanism, temperature=temp, use_cache=False)
        assert torch.equal(a, b)


@pytest.mark.parametrize("variant,fold", [("c", True), ("c", False), ("p", False)])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_one_column_steps_give_the_logits_of_the_full_forward(variant, fold, mechanism, monkeypatch):
    """lm.step (preallocated buffers, masks built once, fused weights; C's cross-attention
    folded into the visual memory at small widths, plain above) = lm.forward on the prefix."""
    import foleybench.baselines.foleygen_lm as lm_mod

    monkeypatch.setattr(lm_mod, "FOLD_CROSS_MAX_D", 10**6 if fold else 0)
    lm, g = _lm(variant, seed=12), torch.Generator().manual_seed(12)
    vis, nf = torch.randn(2, 7, 8, generator=g), torch.tensor([7, 3])
    inp = torch.randint(0, lm.cfg.card + 1, (2, lm.cfg.n_q, 13), generator=g)
    with torch.no_grad():
        full = lm(inp, vis, nf, mechanism)
    cache = lm.start(vis, nf, mechanism, 13)
    steps = torch.cat([lm.step(inp[:, :, s:s + 1], cache) for s in range(13)], 2)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)
    assert cache.pos == 13 and cache.k_buf[0].shape[2] == cache.n_prefix + 13
    assert bool(cache.cross) == (variant == "c" and fold)


def test_gumbel_stream_take_gives_the_numbers_of_next():
    """take(n): the next steps up to the chunk's end, the numbers of as many next() calls."""
    Kq, V = 2, 5
    a, b = GumbelStream(_gens(2, 3), Kq, V, chunk=7), GumbelStream(_gens(2, 3), Kq, V, chunk=7)
    got, sizes = [], []
    for want_n in (3, 10, 1, 7, 5, 100):
        t = a.take(want_n)
        sizes.append(t.shape[1])
        got += [t[:, j] for j in range(t.shape[1])]
    assert sizes == [3, 4, 1, 6, 5, 2]  # never past a chunk edge (7, 14, 21...)
    for x in got:
        assert torch.equal(x, b.next())


def _eager_kernels(monkeypatch):
    import foleybench.baselines.foleygen_kernels as kmod

    monkeypatch.setattr(kmod, "_KERNELS", [])
    monkeypatch.setenv("FOLEYBENCH_NO_TORCHSCRIPT", "1")
    k = kmod.kernels()
    assert not k.scripted and "FOLEYBENCH_NO_TORCHSCRIPT" in k.why
    return k


def test_generation_is_compiled_by_torchscript_on_the_pinned_stack():
    from foleybench.baselines.foleygen_kernels import kernels

    k = kernels()
    assert k.scripted, f"FoleyGen's generation kernels run eagerly here: {k.why}"


def test_compiled_steps_call_the_operations_the_source_names():
    """After its profiling runs TorchScript's optimiser would rewrite addmm as mm + add,
    which rounds differently on some values (it flipped a token in foleygen-table1): the
    kernels run unoptimised, so a late generation still calls addmm and never mm."""
    from torch.profiler import ProfilerActivity, profile

    lm, g = _lm("c", seed=3), torch.Generator().manual_seed(3)
    vis, nf = torch.randn(2, 7, 8, generator=g), torch.tensor([7, 3])
    for _ in range(4):  # past the profiling runs
        generate_codes(lm, vis, nf, 12, _gens(2))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        generate_codes(lm, vis, nf, 12, _gens(2))
    names = {e.key for e in prof.key_averages()}
    assert "aten::addmm" in names and "aten::mm" not in names


@pytest.mark.parametrize("variant,fold", [("c", True), ("c", False), ("p", False)])
def test_scripted_and_eager_generation_agree_bit_for_bit(variant, fold, monkeypatch):
    """TorchScript runs the same kernels as the eager functions: equal logits, equal tokens
    (every mechanism, guided and not, top-k, top-p, greedy, clips of different lengths)."""
    import foleybench.baselines.foleygen_lm as lm_mod
    from foleybench.baselines.foleygen_kernels import kernels

    monkeypatch.setattr(lm_mod, "FOLD_CROSS_MAX_D", 10**6 if fold else 0)
    lm, g = _lm(variant, seed=21), torch.Generator().manual_seed(21)
    vis, nf = torch.randn(3, 7, 8, generator=g), torch.tensor([7, 3, 5])
    inp = torch.randint(0, lm.cfg.card + 1, (3, lm.cfg.n_q, 13), generator=g)
    settings = [(m, coef, temp, tk, tp) for m in MECHANISMS for coef, temp, tk, tp in
                ((3.0, 1.0, 10, 0.0), (1.0, 0.7, 0, 0.8), (0.0, 0.0, 0, 0.0), (2.0, 1.3, 0, 0.0))]

    def run():
        steps = {}
        for m in MECHANISMS:
            cache = lm.start(vis, nf, m, 13)
            steps[m] = torch.stack([lm.step_logits(inp[:, :, s], cache) for s in range(13)])
        codes = [generate_codes(lm, vis, nf, [13, 6, 9], _gens(3, 5), mechanism=m, cfg_coef=coef, temperature=temp,
                                top_k=tk, top_p=tp) for m, coef, temp, tk, tp in settings]
        return steps, codes

    assert kernels().scripted
    scripted = run()
    _eager_kernels(monkeypatch)
    eager = run()
    for m in MECHANISMS:
        assert torch.equal(scripted[0][m], eager[0][m]), m
    for st, a, b in zip(settings, scripted[1], eager[1]):
        assert torch.equal(a, b), st


def test_a_clip_generates_the_same_tokens_alone_and_in_a_batch():
    lm, g = _lm("p", seed=10), torch.Generator().manual_seed(10)
    vis, nf = torch.randn(2, 7, 8, generator=g), torch.tensor([7, 3])
    both = generate_codes(lm, vis, nf, [14, 6], _gens(2))
    alone = generate_codes(lm, vis[1:, :3], nf[1:], 6, _gens(1, 1))
    assert torch.equal(both[1, :, :6], alone[0])


def test_training_loss_is_finite_and_crops_are_aligned():
    from foleybench.baselines.foleygen_configs import get_config
    from foleybench.baselines.foleygen_train import ClipTokens, FoleyGenNet, aligned_period, crops, lm_loss

    assert aligned_period(50.0, 16.0) == (8, 25) and aligned_period(75.0, 8.0) == (8, 75)
    cfg = get_config("p", "debug")
    torch.manual_seed(0)
    net = FoleyGenNet(cfg)
    clips = [ClipTokens("a", torch.randint(0, 256, (4, 120)), torch.rand(20, 3, 16, 16) * 2 - 1),
             ClipTokens("b", torch.randint(0, 256, (4, 30)), torch.rand(5, 3, 16, 16) * 2 - 1)]
    b = crops(clips, cfg, np.random.default_rng(0))
    assert b["codes"].shape == (2, 4, 50) and b["visual"].shape[:2] == (2, 8)
    loss = lm_loss(net, b)
    assert torch.isfinite(loss) and 4.0 < float(loss) < 7.0  # about ln 256 = 5.5 at init


def test_generation_only_tags_share_the_tiny_recipe_and_record_their_settings():
    from foleybench import family
    from foleybench.baselines.foleygen_configs import config_tags, generation_params

    for v in ("c", "p"):
        fam, _ = family.split_name(f"foleygen_{v}.tiny")
        tiny = fam.recipe_hash(fam.configs["tiny"])
        gen_tags = [t for t in config_tags() if t.endswith("_tiny")]
        assert {fam.recipe_hash(fam.configs[t]) for t in gen_tags} == {tiny}
        settings = {t: generation_params(fam.configs[t]) for t in ["tiny", *gen_tags]}
        assert len({tuple(s.items()) for s in settings.values()}) == len(settings)  # each tag differs
        assert settings["causal_tiny"]["attention"] == "causal" and settings["cfg0_tiny"]["cfg_coef"] == 0.0
        # a training field does change the recipe
        assert fam.recipe_hash(fam.configs["tiny"], steps=7) != tiny


@pytest.mark.parametrize("name,dim", [("tiny_cnn", 24), ("clip", 512), ("imagebind", None)])
def test_visual_encoders_share_one_interface(name, dim):
    from foleybench.baselines.foleygen_visual import build_visual

    enc = build_visual(name, dim=24, mode="proxy").eval()
    frames = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        y = enc(frames)
    assert y.shape == (2, 3, enc.dim) and torch.isfinite(y).all() and (dim is None or enc.dim == dim)
    assert enc.trainable == (name == "tiny_cnn")
    with torch.no_grad():  # per-frame features: frame 1 of clip 0 does not depend on clip 1
        assert torch.allclose(enc(frames[:1])[0], y[0], atol=1e-5)


def test_debug_configs_train_through_the_generic_driver(tmp_path):
    from foleybench import train as T
    from foleybench.datasets.synthfoley import SynthConfig, generate

    generate(tmp_path / "d", 4, seed=0, cfg=SynthConfig(duration_s=1.0, classes=("clapping", "car_passing")))
    for v in ("c", "p"):
        r = T.train(f"foleygen_{v}.debug", tmp_path / "d", tmp_path / f"{v}.pt", steps=12, seed=0, progress=False)
        losses = T.fams.split_name(f"foleygen_{v}.debug")[0].load_checkpoint(r["checkpoint"])["losses"]
        assert len(losses) == 12 and losses[0] > 4.5  # about ln 256 at initialisation
        assert np.mean(losses[-3:]) < losses[0] - 0.2
