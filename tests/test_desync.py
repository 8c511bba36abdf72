"""DeSync and our Synchformer: key list, preprocessing constants, windows, exclusions.

Always on: our full-size network (built on the meta device) has exactly the names and
shapes of tests/data/synchformer_keys.json (read from upstream, see its note); the small
proxy runs end to end on synthetic clips. Opt-in peer checks: FOLEYBENCH_PEER_SYNCHFORMER
= a checkout of hkchengrex/av-benchmark (its ``av_bench`` package importable, with
omegaconf and a transformers 4.x); they skip with the reason otherwise.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from foleybench import weights as W
from foleybench.api import ClipPair, ScoreContext
from foleybench.media import write_mp4, write_wav
from foleybench.metrics import embedders
from foleybench.metrics.desync import DeSync
from foleybench.metrics.embedders import synchformer as S
from foleybench.metrics.embedders.synchformer_net import CONFIGS, Synchformer, SynchformerConfig

MANIFEST = Path(__file__).parent / "data" / "synchformer_keys.json"


def _meta_shapes(net_factory) -> dict[str, list[int]]:
    with torch.device("meta"):
        net = net_factory()
    return {k: list(v.shape) for k, v in net.state_dict().items()}


# ----------------------------------------------------------------------------- key list
def test_keys_and_shapes_match_manifest() -> None:
    man = json.loads(MANIFEST.read_text())
    expected = {k: s for k, s in man["keys"]}
    assert len(expected) == man["n_tensors"] == 513
    ours = _meta_shapes(Synchformer)
    assert sorted(set(expected) - set(ours)) == [] and sorted(set(ours) - set(expected)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}
    assert sum(math.prod(s) for s in ours.values()) == man["n_elements"]


def test_small_config_same_names() -> None:
    """The proxy config runs the same code path: same tensor names, smaller shapes, fewer blocks."""
    full, small = _meta_shapes(Synchformer), _meta_shapes(lambda: Synchformer(CONFIGS["small"]))
    assert set(small) < set(full)
    assert all(k in full for k in small) and small["transformer.off_head.weight"] == [21, 64]
    assert small["transformer.pos_emb_cfg.pos_emb"] == [1, 198, 64]


# ----------------------------------------------------------------------------- protocol
def test_segment_counts_and_windows() -> None:
    # av-benchmark's counts: 8 s -> 24 segments, 10 s -> 30, 4.8 s -> 14, in both streams
    for dur, n in [(8.0, 24), (10.0, 30), (4.8, 14)]:
        assert S.n_segments(int(25 * dur), 16, 8) == n
        assert S.n_segments(int(16000 * dur), 10240, 5120) == n
    assert S.n_segments(119, 16, 8) == 13 and S.n_segments(10239, 10240, 5120) == 0
    used, win = S.window_segments(30)
    assert [used[i] for i in win[0]] == list(range(14)) and [used[i] for i in win[1]] == list(range(16, 30))
    used, win = S.window_segments(14)  # one window: both are the same segments, computed once
    assert used == list(range(14)) and (win[0] == win[1]).all()
    assert S.WINDOW_S == pytest.approx(4.8)
    assert S.OFFSETS[0] == -2.0 and S.OFFSETS[10] == 0.0 and S.OFFSETS[-1] == 2.0 and len(S.OFFSETS) == 21


def test_log_mel_constants() -> None:
    """Silence: log(1e-6) in the 65 computed frames, the zero pad in the 66th, then
    (x - (-4.2677393)) / (2 x 4.5689974)."""
    x = S.log_mel(torch.zeros(1, 10240))
    assert tuple(x.shape) == (1, 128, 66)
    norm = lambda v: (v + 4.2677393) / (2 * 4.5689974)  # noqa: E731
    assert torch.allclose(x[..., :65], torch.full((1, 128, 65), norm(math.log(1e-6))), atol=1e-5)
    assert torch.allclose(x[..., 65], torch.full((1, 128), norm(0.0)), atol=1e-6)


def _clip(path: Path, seconds: float, fps: float = 25.0, size: tuple[int, int] = (64, 80), seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    frames = rng.integers(0, 255, (n, *size, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal((1, int(seconds * 16000)))).astype(np.float32)
    write_mp4(path, frames, fps, audio=audio, sample_rate=16000)
    return str(path)


def test_video_and_audio_segments(tmp_path: Path) -> None:
    ctx = ScoreContext()
    p = _clip(tmp_path / "a.mp4", 6.0)
    v = S.video_segments(p, ctx)
    # 6 s -> 150 frames -> 17 segments (frames 0-143); windows 0-13 and 3-16 share 11 segments:
    # 17 used segments over 144 frames, each decoded once
    assert v.n_segments == 17 and v.rows.shape == (17, 16) and v.data.shape == (144, 3, 224, 224)
    assert v.data.dtype == np.uint8
    a = S.audio_segments(p, ctx)
    assert a.n_segments == 17 and a.data.shape == (17, 128, 66)
    # last window starts at segment 3: frame 24
    assert v.rows[v.windows[1][0]][0] == 24


def test_offsets_follow_the_grid() -> None:
    """argmax class k -> offset -2.0 + 0.2 k, per window; DeSync's clip value is the mean |offset|."""
    e = S.build(mode="proxy")
    head = e.net.transformer.off_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[3] = 5.0
    v = np.zeros((2, 14, 8, e.dim), np.float32)
    a = np.zeros((2, 14, 6, e.dim), np.float32)
    assert e.offsets(v, a).tolist() == [-1.4, -1.4]


# ----------------------------------------------------------------------------- metric
def test_desync_scores_and_excludes_short(tmp_path: Path) -> None:
    ctx = ScoreContext(proxy=True)
    embedders.clear()
    good = _clip(tmp_path / "good.mp4", 5.0, seed=1)
    short = _clip(tmp_path / "short.mp4", 4.0, seed=2)
    short_wav = tmp_path / "short.wav"
    write_wav(short_wav, np.zeros(16000 * 3, np.float32), 16000)
    m = DeSync(ctx, n_boot=0)
    pairs = [
        ClipPair("c1", "v2a", pred_audio=good, ref_video=good),
        ClipPair("c2", "v2a", pred_audio=str(short_wav), ref_video=good),   # generated audio too short
        ClipPair("c3", "a2v", pred_video=short, ref_audio=good),            # generated video too short
        ClipPair("c4", "v2a", ref_video=good),                               # no generated audio
    ]
    excl = dict(m.update(pairs))
    assert set(excl) == {"c2", "c3", "c4"}
    assert str(short_wav) in excl["c2"] and "4.8 s" in excl["c2"]
    assert short in excl["c3"] and "fewer than one DeSync window" in excl["c3"]
    assert m.n_excluded("too_short") == 2
    res = m.compute()
    assert res.n == 1
    offs = res.extras["offsets_s"]["c1"]
    assert all(o in S.OFFSETS for o in offs)
    assert res.value == pytest.approx(np.mean(np.abs(offs)))
    prov = m.provenance()
    assert prov["weights"] == "proxy" and prov["proxy_config"] == "small"


def test_missing_weights_names_file_and_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(W, "_override", tmp_path)
    with pytest.raises(W.MissingWeightsError) as exc:
        S.build(mode="pretrained")
    assert "synchformer_state_dict.pth" in str(exc.value) and S.RECORD.url in str(exc.value)


def test_wrong_checkpoint_fails_strictly(tmp_path: Path) -> None:
    sd = Synchformer(CONFIGS["small"]).state_dict()
    path = tmp_path / "small.pth"
    torch.save(sd, path)
    with pytest.raises(W.StrictLoadError) as exc:
        S.build(mode="pretrained", checkpoint=str(path))
    assert str(path) in str(exc.value) and "missing keys" in str(exc.value)


def test_proxy_offsets_depend_on_input() -> None:
    """A proxy that predicted one offset for every input could not tell clips apart."""
    e = S.build(mode="proxy")
    rng = np.random.default_rng(0)
    offs = {tuple(e.offsets(rng.standard_normal((2, 14, 8, e.dim)).astype(np.float32),
                            rng.standard_normal((2, 14, 6, e.dim)).astype(np.float32))) for _ in range(16)}
    assert len(offs) > 1


def test_proxy_is_seeded() -> None:
    a, b, c = S.build(mode="proxy", seed=0), S.build(mode="proxy", seed=0), S.build(mode="proxy", seed=1)
    assert a.checkpoint_sha256 == b.checkpoint_sha256 != c.checkpoint_sha256
    assert a.is_proxy and a.weights == "proxy"


def test_real_clip(shared_dir: Path) -> None:
    """A real 10 s clip (21.5 fps, 480x360, AAC 44.1 kHz) against its own audio, proxy weights."""
    clip = str(shared_dir / "data" / "realclips" / "difffoley_gun.mp4")
    embedders.clear()
    m = DeSync(ScoreContext(proxy=True, clip_seconds=5.0), n_boot=0)  # 14 segments: one window
    assert m.update([ClipPair("gun", "v2a", pred_audio=clip, ref_video=clip)]) == []
    res = m.compute()
    assert res.n == 1 and 0.0 <= res.value <= 2.0


# ----------------------------------------------------------------------------- peer
def _peer():
    root = os.environ.get("FOLEYBENCH_PEER_SYNCHFORMER")
    if not root:
        pytest.skip("FOLEYBENCH_PEER_SYNCHFORMER not set (path to a hkchengrex/av-benchmark checkout)")
    if not (Path(root) / "av_bench" / "synchformer" / "synchformer.py").is_file():
        pytest.skip(f"{root} has no av_bench/synchformer/synchformer.py")
    sys.path.insert(0, root)
    try:
        from av_bench.synchformer import synchformer as up
    except ImportError as exc:
        pytest.skip(f"upstream Synchformer does not import here ({exc}); it needs omegaconf and transformers 4.x")
    return up


def _build_upstream(up, device: str):
    orig = torch.linspace  # upstream calls .item() on a linspace (drop-path rates)
    torch.linspace = lambda *a, **k: orig(*a, **{**k, "device": "cpu"})
    try:
        with torch.device(device):
            return up.Synchformer().eval()
    finally:
        torch.linspace = orig


def test_peer_keys_meta() -> None:
    up = _peer()
    theirs = {k: list(v.shape) for k, v in _build_upstream(up, "meta").state_dict().items()}
    assert theirs == _meta_shapes(Synchformer)


def test_peer_random_weights_same_outputs() -> None:
    """Same random weights in both: same features and logits, same offsets. Depth is cut to
    2 blocks per tower on both sides (the code path per block is the same; CPU cost 1/6)."""
    up = _peer()
    ref = _build_upstream(up, "cpu")
    ref.vfeat_extractor.blocks = ref.vfeat_extractor.blocks[:2]
    ref.afeat_extractor.ast.encoder.layer = ref.afeat_extractor.ast.encoder.layer[:2]
    g = torch.Generator().manual_seed(0)
    # upstream's own init plus noise (its 3D patch conv starts at zero; noise makes it see)
    sd = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    ours = Synchformer(SynchformerConfig(video_depth=2, audio_depth=2)).eval()
    W.load_strict(ours, sd, "upstream random state_dict")
    with torch.inference_mode():
        vis = torch.randn(1, 1, 16, 3, 224, 224, generator=g)
        fv_ref, fv = ref.extract_vfeats(vis), ours.extract_vfeats(vis)
        aud = torch.randn(1, 2, 1, 128, 66, generator=g)
        fa_ref, fa = ref.extract_afeats(aud), ours.extract_afeats(aud)
        v = torch.randn(4, 14, 8, 768, generator=g)
        a = torch.randn(4, 14, 6, 768, generator=g)
        lg_ref, lg = ref.compare_v_a(v, a), ours.compare_v_a(v, a)
    assert fv.shape == fv_ref.shape == (1, 1, 8, 768) and fa.shape == fa_ref.shape == (1, 2, 6, 768)
    assert torch.allclose(fv, fv_ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(fa, fa_ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(lg, lg_ref, atol=1e-4, rtol=1e-4)
    grid = up.make_class_grid(-2, 2, 21)
    theirs = [abs(grid[i].item()) for i in lg_ref.argmax(-1).tolist()]
    assert [abs(S.OFFSETS[i]) for i in lg.argmax(-1).tolist()] == pytest.approx(theirs)
