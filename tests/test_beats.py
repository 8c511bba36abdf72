"""Our BEATs network: upstream checkpoint format loaded strictly, upstream key names, the
weight-normalised position convolution, patch times for any clip length, clear errors."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from foleybench import weights as W
from foleybench.baselines.beats import (
    BEATS_ITER3_PLUS_AS2M_CPT2,
    BEATs,
    BEATsConfig,
    _WeightNormConv1d,
    load_beats,
    load_registered,
    save_checkpoint,
)

SMALL = dict(input_patch_size=16, embed_dim=24, encoder_layers=3, encoder_embed_dim=32, encoder_ffn_embed_dim=48,
             encoder_attention_heads=4, conv_pos=8, conv_pos_groups=4, relative_position_embedding=True,
             num_buckets=16, max_distance=40, gru_rel_pos=True, deep_norm=True, dropout=0.0)

# microsoft/unilm BEATs_iter3+ (AS2M) as we read its cfg (assumed; the file itself was not
# available here): only the key-name test uses it, a real load reads the file's own cfg.
PAPER_CFG = dict(input_patch_size=16, embed_dim=512, conv_bias=False, encoder_layers=12, encoder_embed_dim=768,
                 encoder_ffn_embed_dim=3072, encoder_attention_heads=12, activation_fn="gelu", layer_norm_first=False,
                 deep_norm=True, relative_position_embedding=True, num_buckets=320, max_distance=800,
                 gru_rel_pos=True, layer_wise_gradient_decay_ratio=0.6, encoder_layerdrop=0.05)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small modules: extra threads only contend on a shared machine
    yield
    torch.set_num_threads(threads)


def small_model(seed: int = 0, **over) -> BEATs:
    torch.manual_seed(seed)
    return BEATs(BEATsConfig(**{**SMALL, **over})).eval()


def test_full_size_key_names_are_upstreams() -> None:
    with torch.device("meta"):
        for finetuned in (False, True):
            keys = set(BEATs(BEATsConfig(**PAPER_CFG, finetuned_model=finetuned)).state_dict())
            top = {"patch_embedding.weight", "layer_norm.weight", "layer_norm.bias", "post_extract_proj.weight",
                   "post_extract_proj.bias", "encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v",
                   "encoder.pos_conv.0.bias", "encoder.layer_norm.weight", "encoder.layer_norm.bias"}
            per_layer = {"self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
                         "self_attn.v_proj.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
                         "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                         "self_attn.relative_attention_bias.weight", "self_attn.grep_linear.weight",
                         "self_attn.grep_linear.bias", "self_attn.grep_a", "self_attn_layer_norm.weight",
                         "self_attn_layer_norm.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                         "final_layer_norm.weight", "final_layer_norm.bias"}
            want = top | {f"encoder.layers.{i}.{k}" for i in range(12) for k in per_layer}
            if finetuned:
                want |= {"predictor.weight", "predictor.bias"}
            assert keys == want
        m = BEATs(BEATsConfig(**PAPER_CFG))
        sd = m.state_dict()
        assert tuple(sd["patch_embedding.weight"].shape) == (512, 1, 16, 16)
        assert tuple(sd["encoder.pos_conv.0.weight_v"].shape) == (768, 48, 128)
        assert tuple(sd["encoder.pos_conv.0.weight_g"].shape) == (1, 1, 128)
        assert tuple(sd["encoder.layers.1.self_attn.relative_attention_bias.weight"].shape) == (320, 12)
        assert tuple(sd["encoder.layers.0.self_attn.grep_a"].shape) == (1, 12, 1, 1)
        # one bucket table shared by every layer, as upstream
        layers = m.encoder.layers
        assert layers[0].self_attn.relative_attention_bias is layers[1].self_attn.relative_attention_bias


def test_weight_norm_conv_is_torchs_weight_norm_over_the_kernel_axis() -> None:
    torch.manual_seed(0)
    ref = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(8, 8, 6, padding=3, groups=2), dim=2)
    ours = _WeightNormConv1d(8, 6, 2)
    with torch.no_grad():
        ref.parametrizations.weight.original0.mul_(1.7)  # g not equal to ||v||
        ours.weight_g.copy_(ref.parametrizations.weight.original0)
        ours.weight_v.copy_(ref.parametrizations.weight.original1)
        ours.bias.copy_(ref.bias)
    x = torch.randn(2, 8, 20)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_gated_relative_attention_against_a_loop_over_heads() -> None:
    """Upstream's attention written out head by head: softmax(q k^T / sqrt(hd) + gate * bias),
    gate = a (b * grep_a - 1) + 2 with (a, b) = sigmoid of the 2 x 4 grouped sums of
    grep_linear(q) (q unscaled), bias from T5-style buckets (exact below num_buckets / 4)."""
    model = small_model()
    attn, enc = model.encoder.layers[1].self_attn, model.encoder
    t, d, h = 7, 32, 4
    hd = d // h
    x = torch.randn(1, t, d)
    got = attn(x, enc.position_bias(t, x.device))[0]
    table = attn.relative_attention_bias.weight                      # [buckets, H]
    outs = []
    for head in range(h):
        sl = slice(head * hd, (head + 1) * hd)
        q, k, v = attn.q_proj(x)[0, :, sl], attn.k_proj(x)[0, :, sl], attn.v_proj(x)[0, :, sl]
        bias = torch.empty(t, t)
        for i in range(t):
            for j in range(t):
                rel = j - i
                half, exact = 8, 4
                n = abs(rel)
                b = n if n < exact else min(half - 1, exact + int(math.log(n / exact) / math.log(40 / exact)
                                                                   * (half - exact)))
                bias[i, j] = table[b + (half if rel > 0 else 0), head]
        g = torch.sigmoid(attn.grep_linear(q).view(t, 2, 4).sum(-1))  # [T, 2]
        gate = g[:, :1] * (g[:, 1:] * attn.grep_a[0, head, 0, 0] - 1.0) + 2.0
        w = torch.softmax(q @ k.T / math.sqrt(hd) + gate * bias, dim=-1)
        outs.append(w @ v)
    want = attn.out_proj(torch.cat(outs, dim=-1))
    assert torch.allclose(got, want, atol=1e-5)


def test_round_trip_in_upstream_format_is_strict_and_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = small_model()
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path))
    save_checkpoint(model, tmp_path / BEATS_ITER3_PLUS_AS2M_CPT2.filename)
    ckpt = torch.load(tmp_path / BEATS_ITER3_PLUS_AS2M_CPT2.filename, weights_only=True)
    assert set(ckpt) == {"cfg", "model"} and ckpt["cfg"]["encoder_layers"] == 3
    loaded, digest = load_registered()
    assert digest == W.sha256_file(tmp_path / BEATS_ITER3_PLUS_AS2M_CPT2.filename)
    wave = torch.randn(2, 16000) * 0.1
    a, b = model.layer_features(wave), loaded.layer_features(wave)
    assert torch.equal(a.layers, b.layers)
    p = len(a.times)
    assert a.layers.shape == (2, p, 3 * 32) and a.last.shape == (2, p, 32)
    assert torch.equal(a.layers[..., -32:], a.last)  # post-norm: the last layer's output is the encoder's
    # the layers differ from each other (the concatenation is not one layer repeated)
    assert not torch.allclose(a.layers[..., :32], a.layers[..., 32:64])
    # a changed checkpoint changes the features (the load is not ignored)
    other = small_model(seed=1)
    assert not torch.allclose(other.layer_features(wave).layers, a.layers)


def test_unknown_cfg_keys_are_ignored_as_upstream(tmp_path: Path) -> None:
    model = small_model()
    path = tmp_path / "b.pt"
    torch.save({"cfg": {**dataclasses.asdict(model.cfg), "some_training_flag": 3}, "model": model.state_dict()},
               path)
    assert torch.equal(load_beats(path).layer_features(torch.zeros(4000)).layers,
                       model.layer_features(torch.zeros(4000)).layers)


@pytest.mark.parametrize("damage", ["no_cfg", "missing_key", "extra_key", "shape", "bad_cfg", "text"])
def test_broken_checkpoints_are_refused_naming_the_file(tmp_path: Path, damage: str) -> None:
    model = small_model()
    sd, cfg = dict(model.state_dict()), dataclasses.asdict(model.cfg)
    path = tmp_path / f"{damage}.pt"
    if damage == "no_cfg":
        torch.save({"state_dict": sd}, path)
        match = "not a BEATs checkpoint"
    elif damage == "missing_key":
        del sd["encoder.layers.1.self_attn.grep_a"]
        torch.save({"cfg": cfg, "model": sd}, path)
        match = "missing keys"
    elif damage == "extra_key":
        sd["encoder.layers.9.fc1.weight"] = torch.zeros(1)
        torch.save({"cfg": cfg, "model": sd}, path)
        match = "unexpected keys"
    elif damage == "shape":
        torch.save({"cfg": {**cfg, "encoder_ffn_embed_dim": 64}, "model": sd}, path)
        match = "shape mismatches"
    elif damage == "bad_cfg":
        torch.save({"cfg": {**cfg, "activation_fn": "glu"}, "model": sd}, path)
        match = "activation_fn"
    else:
        path.write_text("<html>Sign in to OneDrive</html>")
        match = "text"
    with pytest.raises(W.FoleybenchError, match=match) as exc:
        load_beats(path)
    assert str(path) in str(exc.value)


def test_missing_file_names_file_and_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path))
    with pytest.raises(W.MissingWeightsError) as exc:
        load_registered()
    msg = str(exc.value)
    assert BEATS_ITER3_PLUS_AS2M_CPT2.filename in msg and "valle.blob.core.windows.net" in msg
    with pytest.raises(W.MissingWeightsError, match="BEATs_iter3_plus_AS2M.pt"):
        load_registered("beats_iter3_plus_as2m")


@pytest.mark.parametrize("seconds", [0.01, 0.1, 0.5, 2.0, 2.37, 10.0])
def test_patch_times_are_monotone_and_cover_the_clip(seconds: float) -> None:
    model = small_model()
    n = int(round(seconds * 16000))
    feats = model.layer_features(torch.randn(1, n) * 0.1)
    t = feats.times
    assert feats.layers.shape[1] == len(t) >= 8
    assert bool((t[1:] >= t[:-1]).all()) and bool((t[::8][1:] > t[::8][:-1]).all())
    half = (15 * 0.01 + 0.025) / 2  # half the audio span of a patch
    first_start, last_end = float(t[0]) - half, float(t[-1]) + half
    assert first_start == pytest.approx(0.0, abs=1e-9)
    if seconds >= 0.175:  # long enough for one patch: patches end inside the clip, short of it by < 1 patch step
        assert feats.padded_s == 0.0
        assert last_end <= seconds + 1e-9 and seconds - last_end < 0.16 + 0.01 + 1e-9
    else:
        assert feats.padded_s == pytest.approx(0.175 - n / 16000)


def test_patch_order_is_time_major() -> None:
    # audio only in the second half: the first half's patches (by time) see the same fbank
    # as silence, so layer-0 patch embeddings before the change are equal between the two
    model = small_model(relative_position_embedding=False, conv_pos=2, conv_pos_groups=1)
    a = torch.zeros(1, 32000)
    b = a.clone()
    b[:, 16000:] = torch.randn(16000) * 0.3
    fa = model.patch_embedding(model.fbank(a)[:, None]).flatten(2).transpose(1, 2)
    fb = model.patch_embedding(model.fbank(b)[:, None]).flatten(2).transpose(1, 2)
    times = model.layer_features(a).times
    same = (fa - fb).abs().amax(dim=-1) == 0
    early, late = times < 0.9, times > 1.2
    assert bool(same[0, early].all()) and not bool(same[0, late].any())


def test_bad_audio_is_refused() -> None:
    model = small_model()
    with pytest.raises(ValueError, match="N > 0"):
        model.layer_features(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="NaN"):
        model.layer_features(torch.full((1, 4000), float("nan")))
