"""Video/cross-modal embedders (proxy weights, CPU) and the fvd / clipsim / ib_score metrics.

Key/shape lists in tests/data/keys/*.txt were derived by hand from the upstream model
definitions (each file's header names the file and commit), not from our modules.
ImageBind-huge is only ever built on the meta device here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from foleybench import media, weights
from foleybench.api import ClipPair, ScoreContext
from foleybench.metrics import embedders as emb_pkg
from foleybench.metrics.embedders import c3d, clip, i3d, imagebind, imagebind_net
from foleybench.metrics.embedders.video_base import is_torchscript_archive
from foleybench.metrics.functional.frechet import frechet_distance, gaussian_stats

torch.set_num_threads(1)
KEYS = Path(__file__).parent / "data" / "keys"


def _keys(name: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in (KEYS / f"{name}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            k, s = line.split("\t")
            out[k] = tuple(int(v) for v in s.split(",") if v)
    return out


def _shapes(net: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.fixture(autouse=True)
def _no_weights(tmp_path_factory, monkeypatch):
    weights.set_weights_dir(tmp_path_factory.mktemp("weights"))  # never pick up real files
    emb_pkg.clear()
    yield
    weights.set_weights_dir(None)
    emb_pkg.clear()


@pytest.fixture(scope="module")
def clip_proxy():
    return clip.build("proxy", seed=0)


@pytest.mark.parametrize("name,factory", [
    ("i3d", lambda: i3d.InceptionI3d(400)),
    ("c3d", lambda: c3d.C3D(101)),
    ("imagebind_huge_av", lambda: imagebind_net.ImageBindAV(imagebind_net.CONFIGS["huge"])),
])
def test_state_dict_keys_match_upstream(name, factory):
    with torch.device("meta"):
        net = factory()
    assert _shapes(net) == _keys(name)


def test_clip_keys_match_openai_layout(clip_proxy):
    assert _shapes(clip_proxy.net) == _keys("clip_vit_b32")


@pytest.mark.parametrize("mod", [i3d, c3d, imagebind])
def test_proxy_is_deterministic_and_seeded(mod):
    a, b, c = mod.build("proxy", seed=0), mod.build("proxy", seed=0), mod.build("proxy", seed=1)
    assert a.checkpoint_sha256 == b.checkpoint_sha256 != c.checkpoint_sha256
    assert a.weights == "proxy" and a.provenance()["proxy_config"] == "small"
    for (k, v), w in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(v, w), k


def test_clip_proxy_text_and_images(clip_proxy):
    t = clip_proxy.embed_text(["dog barking", "dog barking", "rain"])
    assert t.shape == (3, 512) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert np.allclose(t[0], t[1]) and not np.allclose(t[0], t[2])
    again = clip.build("proxy", seed=0)
    assert again.checkpoint_sha256 == clip_proxy.checkpoint_sha256


def _save(sd: dict, path: Path) -> str:
    torch.save(sd, path)
    return str(path)


def test_i3d_strict_loading_names_the_file(tmp_path):
    good = {k: v.clone() for k, v in i3d.InceptionI3d(400).state_dict().items()}
    old = {k: v for k, v in good.items() if not k.endswith("num_batches_tracked")}  # pre-0.4.1 file
    e = i3d.build("pretrained", checkpoint=_save(old, tmp_path / "rgb_imagenet.pt"))
    # a random file named by the user is scored as custom, with its own sha256
    assert e.weights == "custom" and not e.scripted and e.notes
    assert e.checkpoint_sha256 == weights.sha256_file(tmp_path / "rgb_imagenet.pt")
    missing = dict(good)
    missing.pop("Mixed_4b.b1b.conv3d.weight")
    extra = {**good, "Mixed_9z.conv3d.weight": torch.zeros(1)}
    shape = {**good, "logits.conv3d.bias": torch.zeros(401)}
    for label, sd, msg in [("missing", missing, "missing keys"), ("extra", extra, "unexpected keys"),
                           ("shape", shape, "shape mismatches")]:
        path = _save(sd, tmp_path / f"{label}.pt")
        with pytest.raises(weights.StrictLoadError, match=msg) as info:
            i3d.build("pretrained", checkpoint=path)
        assert path in str(info.value)


def test_missing_pretrained_file_is_one_clear_error():
    with pytest.raises(weights.MissingWeightsError, match="imagebind_huge.pth"):
        imagebind.build("pretrained")


def test_imagebind_checkpoint_split_drops_other_modalities(tmp_path):
    net = imagebind_net.ImageBindAV(imagebind_net.CONFIGS["small"])
    sd = dict(net.state_dict())
    full = {**sd, "modality_trunks.text.blocks.0.norm_1.weight": torch.ones(4),
            "modality_postprocessors.text.1.log_logit_scale": torch.zeros(()),
            "modality_preprocessors.imu.cls_token": torch.zeros(1, 1, 4)}
    kept, dropped = imagebind_net.split_checkpoint(full)
    assert dropped == {"text": 2, "imu": 1} and set(kept) == set(sd)
    weights.load_strict(net, kept, "imagebind_huge.pth")
    stray, _ = imagebind_net.split_checkpoint({**sd, "modality_trunks.vision.extra": torch.zeros(1)})
    with pytest.raises(weights.StrictLoadError, match="imagebind_huge.pth.*unexpected"):
        weights.load_strict(net, stray, "imagebind_huge.pth")


def test_torchscript_detection(tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(tmp_path / "m.pt"))
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "sd.pt")
    assert is_torchscript_archive(tmp_path / "m.pt") and not is_torchscript_archive(tmp_path / "sd.pt")


def test_c3d_chainer_conversion_crops_mean():
    ref = c3d.C3D(101).state_dict()
    arrays = {k.replace(".weight", "/W").replace(".bias", "/b"): v.numpy() for k, v in ref.items() if k != "mean"}
    mean = np.arange(3 * 16 * 128 * 128, dtype=np.float32).reshape(3, 16, 128, 128)
    sd = c3d.state_dict_from_chainer(arrays, mean)
    assert set(sd) == set(ref) and sd["mean"].shape == (3, 16, 112, 112)
    assert float(sd["mean"][0, 0, 0, 0]) == mean[0, 0, 8, 8]


def test_c3d_proxy_logits_and_features():
    e = c3d.build("proxy")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 16, 112, 112)).astype(np.float32)
    logits, feats = e.logits_inputs(list(x)), e.embed_inputs(list(x))
    assert logits[0].shape == (101,) and feats[0].shape == (1, 4096 // 8)
    assert not np.allclose(logits[0], logits[1])


def test_c3d_rows_do_not_depend_on_the_other_clips_in_a_call():
    """C3D runs fixed batches of PAD_BATCH clips (zero-filled), so a clip's logits and
    features are the same bits alone, at any position, next to any clips, in calls of
    any size: the property that lets the cache hand it whole batches (rows_batch_free)
    where a one-clip forward pass is asked for. A plain batch-1 forward differs from a
    batched one in the last bits (oneDNN picks the conv3d kernel by batch shape)."""
    e = c3d.build("proxy")
    assert e.rows_batch_free and e.PAD_BATCH == 8
    rng = np.random.default_rng(1)
    clip_x = rng.uniform(-1, 1, (3, 16, 112, 112)).astype(np.float32)
    alone = e.logits_inputs([clip_x])[0], e.embed_inputs([clip_x])[0]
    for n, pos in ((3, 2), (8, 0), (8, 7), (11, 9), (16, 5)):
        others = list(rng.uniform(-1, 1, (n, 3, 16, 112, 112)).astype(np.float32))
        others[pos] = clip_x
        assert np.array_equal(e.logits_inputs(others)[pos], alone[0]), (n, pos)
        assert np.array_equal(e.embed_inputs(others)[pos], alone[1]), (n, pos)


def _videos(rng: np.random.Generator, n: int, noise: bool) -> list[np.ndarray]:
    """n float clips [3, 16, 224, 224] in [-1, 1]: smooth moving gradients, or uniform noise."""
    out = []
    yy, xx = np.mgrid[0:224, 0:224] / 224.0
    for _ in range(n):
        if noise:
            out.append(rng.uniform(-1, 1, (3, 16, 224, 224)).astype(np.float32))
            continue
        f, c = rng.uniform(1, 3), rng.uniform(-1, 1, 3)
        frames = [np.sin(2 * np.pi * f * (xx + yy + 0.05 * t))[None] * 0.8 + 0.1 * c[:, None, None]
                  for t in range(16)]
        out.append(np.stack(frames, axis=1).astype(np.float32))
    return out


def test_fd_of_i3d_proxy_features_self_vs_noise():
    e = i3d.build("proxy")
    rng = np.random.default_rng(0)
    real = np.concatenate(e.embed_inputs(_videos(rng, 6, False))).astype(np.float64)
    noise = np.concatenate(e.embed_inputs(_videos(rng, 6, True))).astype(np.float64)
    mu, s = gaussian_stats(real, ddof=0)
    mu_n, s_n = gaussian_stats(noise, ddof=0)
    same = frechet_distance(mu, s, mu, s)
    apart = frechet_distance(mu, s, mu_n, s_n)
    assert abs(same) < 1e-6 * max(1.0, float(np.trace(s)))
    assert apart > 100 * max(abs(same), 1e-6) and apart > 0.1 * float(np.trace(s))


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    """Four 4.5 s 64x80 videos at 8 fps with 16 kHz audio, plus one too short for FVD."""
    d = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    for i in range(4):
        t = np.arange(36)[:, None, None, None]
        frames = ((np.sin(0.3 * t + i + np.arange(80)[None, None, :, None] / 9.0) + 1) * 120
                  + rng.integers(0, 10, (36, 64, 80, 3))).astype(np.uint8)
        audio = (0.2 * np.sin(2 * np.pi * (200 + 100 * i) * np.arange(72000) / 16000))[None].astype(np.float32)
        media.write_mp4(d / f"c{i}.mp4", frames, 8, audio, 16000)
    media.write_mp4(d / "short.mp4", np.zeros((8, 64, 80, 3), np.uint8), 8)
    return d


def test_fvd_metric_end_to_end(clips_dir):
    from foleybench.metrics.fvd import FVD

    assert FVD.tasks == ("a2v",)
    m = FVD(ScoreContext(proxy=True))
    pairs = [ClipPair(f"c{i}", "a2v", pred_video=str(clips_dir / f"c{(i + 1) % 4}.mp4"),
                      ref_video=str(clips_dir / f"c{i}.mp4")) for i in range(3)]
    excluded = m.update(pairs + [ClipPair("s", "a2v", pred_video=str(clips_dir / "short.mp4"),
                                          ref_video=str(clips_dir / "c0.mp4"))])
    assert [cid for cid, _ in excluded] == ["s"] and "too short" in excluded[0][1]
    with pytest.warns(UserWarning, match="< 256"):
        v = m.compute()
    assert v.n == 3 and v.value is not None and v.value > 0
    assert v.extras["covariance"].startswith("divided by N") and v.extras["warnings"]
    assert m.provenance()["weights"] == "proxy"


def test_clipsim_metric(clips_dir, clip_proxy, monkeypatch):
    from foleybench.metrics import clipsim

    monkeypatch.setattr(clipsim, "get_embedder", lambda name, ctx, **kw: clip_proxy)
    m = clipsim.CLIPSim(ScoreContext(proxy=True), n_boot=200)
    pairs = [ClipPair(f"c{i}", "v2a", ref_video=str(clips_dir / f"c{i}.mp4"), label=lab)
             for i, lab in enumerate(["dog barking", "rain", ""])]
    excluded = m.update(pairs)
    assert excluded == [("c2", "no label to build the CLIPSIM prompt from")]
    v = m.compute()
    assert v.n == 2 and -1 <= v.value <= 1 and v.ci[0] <= v.value <= v.ci[1]
    assert v.extras["n_frames"] == 16 and v.extras["prompt"] == "{label}"


def test_ib_score_metric(clips_dir):
    from foleybench.metrics.ib_score import IBScore

    m = IBScore(ScoreContext(proxy=True), n_boot=200)
    pairs = [ClipPair(f"c{i}", "v2a", ref_video=str(clips_dir / f"c{i}.mp4"),
                      pred_audio=str(clips_dir / f"c{3 - i}.mp4")) for i in range(4)]
    assert m.update(pairs + [ClipPair("x", "v2a", ref_video=str(clips_dir / "c0.mp4"))])[0][0] == "x"
    v = m.compute()
    assert v.n == 4 and -100 <= v.value <= 100 and "x 100" in v.extras["scale"]
    assert len(v.extras["per_clip"]) == 4 and v.ci is not None
    assert m.embedder.is_proxy and m.provenance()["proxy_config"] == "small"


def test_clip_embeds_identical_frames_once(clip_proxy, monkeypatch):
    """A still (the static baseline's 8 equal frames) goes through the image tower once per
    distinct frame; every frame still gets its embedding, equal to the one-by-one result."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 3, 224, 224)).astype(np.float32)
    still = np.repeat(a[:1], 4, axis=0)
    seen = []
    enc = clip_proxy.net.encode_image
    monkeypatch.setattr(clip_proxy.net, "encode_image", lambda x: (seen.append(len(x)), enc(x))[1])
    got = clip_proxy.embed_inputs([a, still])
    assert sum(seen) == 3  # a's three frames; the still's frame is a's first
    assert got[0].shape == (3, 512) and got[1].shape == (4, 512)
    each = clip_proxy.embed_inputs([a[i:i + 1] for i in range(3)])
    for i in range(3):
        assert np.allclose(got[0][i], each[i][0], atol=1e-5)
    assert np.array_equal(got[1], np.repeat(got[0][:1], 4, axis=0))
