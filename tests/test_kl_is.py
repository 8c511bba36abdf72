"""KL divergence and inception score: formulas, direction, and the streaming metrics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from foleybench import media
from foleybench import weights as W
from foleybench.api import ClipPair, ScoreContext
from foleybench.metrics import embedders
from foleybench.metrics.functional.inception import inception_score
from foleybench.metrics.functional.kl import kl_divergence
from foleybench.metrics.inception_score import InceptionScore
from foleybench.metrics.kl import KLMetric

torch.set_num_threads(1)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_kl_matches_direct_formula_and_direction() -> None:
    rng = np.random.default_rng(0)
    ref, gen = 3 * rng.standard_normal((20, 527)), 3 * rng.standard_normal((20, 527))
    p, q = _softmax(ref), _softmax(gen)
    direct = np.array([sum(p[i, k] * (np.log(p[i, k]) - np.log(q[i, k])) for k in range(527))
                       for i in range(20)])
    ours = kl_divergence(ref, gen)
    assert ours.dtype == np.float64 and ours.shape == (20,)
    np.testing.assert_allclose(ours, direct, rtol=1e-12)
    swapped = kl_divergence(gen, ref)
    assert not np.allclose(swapped, ours, rtol=1e-3)  # KL is not symmetric: direction matters
    # KL(p || q) weights by p, the reference: a class the reference never predicts costs little
    np.testing.assert_allclose(kl_divergence(ref, ref), 0.0, atol=1e-12)
    np.testing.assert_allclose(kl_divergence(ref, ref + 7.0), 0.0, atol=1e-12)  # softmax shift-invariant
    with pytest.raises(ValueError):
        kl_divergence(ref, gen[:5])


def _is_direct(logits: np.ndarray, n_splits: int, seed: int) -> tuple[float, float]:
    x = logits[np.random.RandomState(seed).permutation(len(logits))]
    n, scores = len(x), []
    for i in range(n_splits):
        part = _softmax(x[i * n // n_splits:(i + 1) * n // n_splits])
        py = part.mean(axis=0)
        kls = [np.sum(row * (np.log(row) - np.log(py))) for row in part]
        scores.append(np.exp(np.mean(kls)))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_matches_direct_formula() -> None:
    logits = 4 * np.random.default_rng(1).standard_normal((103, 50))
    mean, std = inception_score(logits, n_splits=10, seed=2020)
    ref_mean, ref_std = _is_direct(logits, 10, 2020)
    assert mean == pytest.approx(ref_mean, rel=1e-12) and std == pytest.approx(ref_std, rel=1e-10)
    assert std > 0
    # a different shuffle seed regroups the splits: the std must change
    assert inception_score(logits, n_splits=10, seed=1)[1] != pytest.approx(std, rel=1e-6)
    # extremes: identical predictions -> 1; confident and uniformly spread over K classes -> K
    assert inception_score(np.zeros((20, 7)), n_splits=2)[0] == pytest.approx(1.0)
    onehot = np.tile(40.0 * np.eye(5), (4, 1))
    assert inception_score(onehot, n_splits=1)[0] == pytest.approx(5.0, rel=1e-6)
    with pytest.raises(ValueError):
        inception_score(logits[:5], n_splits=10)


@pytest.fixture()
def clips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ScoreContext, list[ClipPair]]:
    """Four paired 1 s clips (+ one unreadable), proxy PANNs, empty weights dir."""
    monkeypatch.setattr(W, "_override", tmp_path / "weights")
    embedders.clear()
    rng = np.random.default_rng(3)
    pairs = []
    for i in range(4):
        t = np.arange(22050) / 22050
        gen = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.02 * rng.standard_normal(t.size)
        ref = 0.1 * rng.standard_normal(t.size) * (i + 1)
        g = media.write_wav(tmp_path / f"g{i}.wav", gen[None].astype(np.float32), 22050)
        r = media.write_wav(tmp_path / f"r{i}.wav", ref[None].astype(np.float32), 22050)
        pairs.append(ClipPair(clip_id=f"c{i}", task="v2a", pred_audio=str(g), ref_audio=str(r)))
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    pairs.append(ClipPair(clip_id="bad", task="v2a", pred_audio=str(tmp_path / "bad.wav"),
                          ref_audio=pairs[0].ref_audio))
    yield ScoreContext(proxy=True, clip_seconds=1.0, cache_dir=str(tmp_path / "cache")), pairs
    embedders.clear()


def test_kl_and_is_metrics_end_to_end(clips: tuple[ScoreContext, list[ClipPair]]) -> None:
    ctx, pairs = clips
    kl_a, kl_b = KLMetric(ctx, embedder="panns"), KLMetric(ctx, embedder="panns")
    assert kl_a.name == "kl_panns" and not kl_a.higher_is_better
    excluded = kl_a.update(pairs[:2]) + kl_b.update(pairs[2:])
    assert [e[0] for e in excluded] == ["bad"] and "bad.wav" in excluded[0][1]
    res = kl_a.merge(kl_b).compute()
    emb = kl_a.embedder
    gen = emb.logits_inputs([emb.load_input(p.pred_audio, ctx) for p in pairs[:4]])
    ref = emb.logits_inputs([emb.load_input(p.ref_audio, ctx) for p in pairs[:4]])
    expect = kl_divergence(np.stack(ref), np.stack(gen))
    assert res.n == 4 and res.value == pytest.approx(float(expect.mean()), rel=1e-5)
    assert res.extras["direction"] == "KL(ref || gen)"
    assert res.extras["per_clip"]["c2"] == pytest.approx(float(expect[2]), rel=1e-5)
    worst = res.extras["worst"]
    assert [w[0] for w in worst] == [f"c{i}" for i in np.argsort(-expect)]
    assert [w[1] for w in worst] == pytest.approx(sorted(expect, reverse=True), rel=1e-4)
    assert res.ci is not None and res.ci[0] <= res.value <= res.ci[1]
    prov = kl_a.provenance()
    assert prov["weights"] == "proxy" and prov["checkpoint_sha256"] == emb.checkpoint_sha256

    is_a, is_b = InceptionScore(ctx, embedder="panns", n_splits=2), InceptionScore(ctx, embedder="panns", n_splits=2)
    assert is_a.seed == 2020 and is_a.higher_is_better
    is_b.update(pairs[2:])  # shard order must not matter
    is_a.update(pairs[:2])
    out = is_a.merge(is_b).compute()
    ids = sorted(p.clip_id for p in pairs[:4])
    lg = {p.clip_id: g for p, g in zip(pairs[:4], gen)}
    mean, std = inception_score(np.stack([lg[i] for i in ids]), n_splits=2, seed=2020)
    assert out.n == 4 and out.value == pytest.approx(mean, rel=1e-5)
    assert out.extras["std"] == pytest.approx(std, rel=1e-4, abs=1e-9)
    assert out.extras["n_splits"] == 2 and out.extras["seed"] == 2020
    assert InceptionScore(ctx, embedder="panns").compute().value is None  # no items: no score


def test_inception_score_stays_finite_for_confident_classifiers():
    """Saturated softmax (p underflows to 0): IS must be the exact value, never NaN."""
    from foleybench.metrics.functional.inception import inception_score

    n, k = 20, 50
    logits = np.full((n, k), -1e4)
    logits[np.arange(n), np.arange(n) % k] = 1e4  # each item certain of its own class
    mean, std = inception_score(logits, n_splits=10, seed=0)
    assert mean == pytest.approx(2.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    same = np.zeros((n, k))
    same[:, 3] = 1e4  # every item certain of the same class: IS 1
    assert inception_score(same, n_splits=10)[0] == pytest.approx(1.0, rel=1e-12)
