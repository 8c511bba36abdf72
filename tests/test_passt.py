"""PaSST (``passt``): parity with hear21passt, the av-benchmark and audiocraft input
protocols, strict loading, proxy weights, and the fd/kl/is_passt metrics' options.

Parity: hear21passt's own network (``get_model(arch="passt_s_swa_p16_128_ap476")``, as
``get_basic_model`` builds it for av-benchmark, without downloading) with random weights
is saved as a state dict, i.e. the layout of ``passt-s-f128-p16-s10-ap.476-swa.pt``, and
loaded through our strict ``build(checkpoint=...)``; its ``PasstBasicWrapper(mode="all")``
with the ``AugmentMelSTFT`` of ``get_basic_model`` is the reference (logits, then the
768-d features). The 12-block network runs once (one 10 s clip: a forward pass costs
seconds on CPU); the real recordings and the unpadded audiocraft segments run a 1-block
cut of the same network (front end, patching, positions, tokens and head identical);
``FOLEYBENCH_PASST_REAL_DEPTH=12`` runs the real recordings through all 12 blocks.
Peer (test-only): ``pip install hear21passt==0.0.26`` (needs timm, torchaudio).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from foleybench import media
from foleybench import weights as W
from foleybench.api import FoleybenchError, InputError, ScoreContext
from foleybench.metrics.embedders import passt

torch.set_num_threads(1)
REALCLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "realclips"
# Blocks of the network in the real-recording parity test: 1 by default (seconds); the
# full 12 with FOLEYBENCH_PASST_REAL_DEPTH=12 (about a minute of CPU per clip pair).
REAL_DEPTH = int(os.environ.get("FOLEYBENCH_PASST_REAL_DEPTH", "1"))
HAVE_PEER = importlib.util.find_spec("hear21passt") is not None
needs_peer = pytest.mark.skipif(not HAVE_PEER, reason="hear21passt not installed (pip install hear21passt==0.0.26)")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def _peer(depth: int = 12, seed: int = 0) -> tuple[Any, Any]:
    """(hear21passt PasstBasicWrapper(mode="all"), its PaSST net) with random weights."""
    from hear21passt.models.passt import get_model
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        net = get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False, fstride=10, tstride=10,
                        input_fdim=128, input_tdim=998)
        mel = AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48,
                             timem=192, htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10,
                             fmax_aug_range=2000)  # get_basic_model's front end
    net.blocks = torch.nn.Sequential(*list(net.blocks)[:depth])
    with torch.no_grad():  # off the init (LayerNorms 1/0, zero biases): a mix-up would show
        g = torch.Generator().manual_seed(seed + 1)
        for p in net.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return PasstBasicWrapper(mel=mel, net=net, mode="all").eval(), net


def _peer_out(wrapper: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits [527], features [768]) of one clip through the peer."""
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = wrapper(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None])[0].numpy()
    return out[:527], out[527:]


def _ours(net: Any, tmp: Path, depth: int = 12, **kw: Any) -> passt.PaSST:
    path = tmp / f"passt-peer-{depth}.pt"
    torch.save(net.state_dict(), path)
    return passt.build(mode="pretrained", checkpoint=str(path), factory=lambda: passt.PaSSTNet(depth), **kw)


def test_mel_banks_are_kaldis() -> None:
    import torchaudio

    ref, _ = torchaudio.compliance.kaldi.get_mel_banks(128, 1024, 32000.0, 0.0, 15000.0, vtln_low=100.0,
                                                       vtln_high=-500.0, vtln_warp_factor=1.0)
    got = passt.kaldi_mel_banks()
    assert got.shape == (128, 513) and not got[:, -1].any()
    assert torch.equal(got[:, :512], ref)
    assert passt.F_MAX == 32000 // 2 - 2000 // 2  # fmax=None with fmax_aug_range=2000


@needs_peer
def test_front_end_matches_augment_mel_stft() -> None:
    wrapper, _ = _peer(depth=1)
    x = (0.3 * np.random.default_rng(0).standard_normal(32000 * 3)).astype(np.float32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = wrapper.mel(torch.from_numpy(x)[None]).numpy()
        got = passt.LogMel()(torch.from_numpy(x)[None]).numpy()
    assert got.shape == ref.shape == (1, 128, 1 + (len(x) - 1) // 320)
    assert _rel(got, ref) < 1e-6


@needs_peer
def test_parity_full_network_av_benchmark_protocol(tmp_path: Path) -> None:
    """12 blocks, one 8 s clip zero-padded to 10 s (the VGGSound protocol)."""
    wrapper, net = _peer(depth=12)
    keys = set(net.state_dict())
    assert keys == set(passt.PaSSTNet().state_dict())  # the upstream file's names, all of them
    assert {"head.0.weight", "head.1.bias", "head_dist.weight", "time_new_pos_embed", "dist_token"} <= keys
    ours = _ours(net, tmp_path)
    assert ours.weights == "custom"  # not the upstream file (which publishes no checksum)
    rng = np.random.default_rng(1)
    t = np.arange(32000 * 8) / 32000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    padded = np.pad(x, (0, 320000 - len(x)))
    emb, logits = ours.embed_inputs([padded])[0], ours.logits_inputs([padded])[0]
    ref_logits, ref_emb = _peer_out(wrapper, padded)
    assert emb.shape == (1, 768) and logits.shape == (527,)
    assert _rel(emb[0], ref_emb) < 1e-5 and _rel(logits, ref_logits) < 1e-5


@needs_peer
@pytest.mark.skipif(not REALCLIPS.is_dir(), reason=f"real clips not present ({REALCLIPS})")
def test_parity_on_real_recordings(tmp_path: Path) -> None:
    depth = REAL_DEPTH
    wrapper, net = _peer(depth=depth, seed=3)
    ours = _ours(net, tmp_path, depth=depth)
    ctx = ScoreContext(clip_seconds=8.0)
    clips = sorted(p for p in REALCLIPS.iterdir() if p.suffix in (".mp4", ".wav"))
    assert clips
    xs = [ours.load_input(str(p), ctx) for p in clips]
    ours.memo_size = 2  # the kept second output is evicted here: logits are recomputed, still equal
    embs, logits = ours.embed_inputs(xs), ours.logits_inputs(xs)  # one batch: no clip leaks into another
    assert len(ours._memo) == 2
    for p, x, e, lg in zip(clips, xs, embs, logits):
        assert x.shape == (320000,) and not x[256000:].any(), p.name  # 8 s of audio, then zeros
        ref_logits, ref_emb = _peer_out(wrapper, x)
        assert _rel(e[0], ref_emb) < 1e-5, p.name
        assert _rel(lg, ref_logits) < 1e-5, p.name


@needs_peer
def test_audiocraft_split_segments_unpadded(tmp_path: Path) -> None:
    wrapper, net = _peer(depth=1, seed=4)
    ours = _ours(net, tmp_path, depth=1, split="audiocraft")
    assert ours.frames_level and ours.preprocess_id().endswith("|split10s-drop0.15s")
    x = (0.2 * np.random.default_rng(2).standard_normal(32000 * 23 + 4800)).astype(np.float32)
    segs = ours.segments(x)  # 10 s, 10 s, 3.15 s; nothing dropped
    assert [len(s) for s in segs] == [320000, 320000, 32000 * 3 + 4800]
    assert [len(s) for s in ours.segments(x[: 320000 + 4800])] == [320000]  # 0.15 s tail dropped
    emb, logits = ours.embed_inputs([x])[0], ours.logits_inputs([x])[0]
    assert emb.shape == (3, 768) and logits.shape == (3, 527)
    for i, s in enumerate(segs):  # each segment alone, as audiocraft feeds them
        ref_logits, ref_emb = _peer_out(wrapper, s)
        assert _rel(emb[i], ref_emb) < 1e-5 and _rel(logits[i], ref_logits) < 1e-5
    # the last, shorter segment is not padded: padding it changes its output
    padded = np.pad(segs[2], (0, 320000 - len(segs[2])))
    assert _rel(emb[2], _peer_out(wrapper, padded)[1]) > 1e-3


def test_load_input_av_benchmark_protocol(tmp_path: Path) -> None:
    emb = passt.build(mode="proxy")
    t = np.arange(44100 * 12) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t) + 0.2, 0.3 * np.sin(2 * np.pi * 500 * t) + 0.2])
    wav = media.write_wav(tmp_path / "a.wav", stereo.astype(np.float32), 44100)
    cut = emb.load_input(str(wav), ScoreContext(clip_seconds=8.0))
    assert cut.shape == (320000,) and cut[:256000].any() and not cut[256000:].any()
    assert abs(float(cut[:256000].mean())) < 1e-3  # DC removed before the padding
    whole = emb.load_input(str(wav), ScoreContext())  # no protocol length: cut to 10 s
    assert whole.shape == (320000,) and whole[256000:].any()
    assert emb.preprocess_id() == "32000Hz|torchaudio-sinc|mono|dc|pad10s"
    ac = passt.build(mode="proxy", split="audiocraft")
    assert ac.load_input(str(wav), ScoreContext()).shape == (32000 * 12,)  # kept whole: split later
    short = media.write_wav(tmp_path / "short.wav", np.full((1, 4000), 0.1, np.float32), 32000)
    with pytest.raises(InputError, match="short.wav"):  # 0.125 s: no audiocraft segment
        ac.load_input(str(short), ScoreContext())
    assert emb.load_input(str(short), ScoreContext()).shape == (320000,)  # av-benchmark pads it


def test_missing_weights_and_strict_loading(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(W, "_override", tmp_path)
    with pytest.raises(W.MissingWeightsError) as exc:
        passt.build(mode="pretrained")
    for part in ("passt-s-f128-p16-s10-ap.476-swa.pt", passt.RECORD.url, "foleybench weights fetch passt"):
        assert part in str(exc.value)
    sd = passt.PaSSTNet(depth=1).state_dict()
    del sd["head_dist.bias"]
    path = tmp_path / "broken.pt"
    torch.save({"model": sd}, path)  # the unwrap rule reads a 'model' entry, then strictly
    with pytest.raises(W.StrictLoadError, match=r"broken\.pt.*1 missing keys"):
        passt.build(mode="pretrained", checkpoint=str(path), factory=lambda: passt.PaSSTNet(1))
    with pytest.raises(ValueError, match="split must be one of"):
        passt.build(mode="proxy", split="padded")


def test_proxy_weights_are_seeded() -> None:
    a, b, c = (passt.build(mode="proxy", seed=s) for s in (0, 0, 1))
    assert a.weights == "proxy" and a.is_proxy
    assert a.checkpoint_sha256 == b.checkpoint_sha256 != c.checkpoint_sha256
    assert float(a.net.time_new_pos_embed.detach().std()) > 0.01  # tokens and positions are not left at 0
    assert a.provenance()["split"] == "av-benchmark"


def test_passt_metrics_options_and_audiocraft_kl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from foleybench.metrics import embedders
    from foleybench.metrics.passt_metrics import PasstFD, PasstKL
    from foleybench.options import check_metric
    from foleybench.registry import METRICS

    assert check_metric("fd_passt", "v2a", {"split": "audiocraft"}) is PasstFD
    with pytest.raises(FoleybenchError, match="is_passt.*has no option 'split'"):
        check_metric("is_passt", "v2a", {"split": "audiocraft"})
    assert METRICS.entry("is_passt").kwargs == {"embedder": "passt"}
    monkeypatch.setenv("FOLEYBENCH_WEIGHTS", str(tmp_path))
    embedders.clear()
    ctx = ScoreContext(proxy=True)
    with pytest.raises(FoleybenchError, match=r"fd_passt.split: must be one of"):
        PasstFD(ctx, split="pad")
    fd, kl = PasstFD(ctx), PasstKL(ctx)
    assert fd.embedder is kl.embedder  # one instance: one forward pass per file for FD, KL and IS
    kl_ac = PasstKL(ctx, split="audiocraft")
    assert kl_ac.embedder.split == "audiocraft" and kl_ac.embedder is not kl.embedder
    rng = np.random.default_rng(0)
    g2, r2, r1 = rng.standard_normal((2, 527)), rng.standard_normal((2, 527)), rng.standard_normal((1, 527))
    rows = kl_ac.batch_rows([None, None], [g2, g2], [r2, r1])  # type: ignore[list-item]
    p = np.exp(r2 - r2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(g2 - g2.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    assert rows[0] == pytest.approx(float(np.mean((p * (np.log(p) - np.log(q))).sum(1))), rel=1e-9)
    assert "has 2 10 s segment(s), the reference 1" in rows[1].reason
    embedders.clear()
