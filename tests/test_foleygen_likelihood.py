"""FoleyGen's likelihood-retrieval hook (issue 12, part 3): token log-likelihood given the video.

On the debug configs (random init, proxy codec): seconds on a CPU, no checkpoint needed.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from foleybench.baselines.codebook_pattern import DelayPattern
from foleybench.baselines.likelihood import scorer_hook
from foleybench.baselines.retrieval import centred, chance, likelihood_matrix, summarise


@pytest.fixture(scope="module", params=["foleygen_c.debug", "foleygen_p.debug"])
def scorer(request):
    torch.set_num_threads(1)
    return scorer_hook(request.param)(request.param)


def _inputs(scorer, B=3, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    lm = scorer.model.net.lm.cfg
    cfg = scorer.cfg
    n_fr = int(np.ceil(T / lm.frame_rate * cfg.visual_fps))
    codes = torch.randint(0, lm.card, (B, lm.n_q, T), generator=g)
    frames = torch.rand(B, n_fr, 3, cfg.frame_size, cfg.frame_size, generator=g) * 2 - 1
    return codes, frames


def _plain(scorer, codes, frames):
    """Per clip, one plain forward of the LM; the sum of log-softmax over valid cells,
    cell by cell (q, s) with 0 <= s - q < T (the delay pattern written out)."""
    lm = scorer.model.net.lm
    pat = DelayPattern(lm.cfg.n_q, lm.cfg.card)
    out = []
    for c, f in zip(codes, frames):
        seq = pat.build(c[None])
        with torch.no_grad():
            vis = scorer.model.net.features(f[None])
            logits = lm(pat.lm_input(seq), vis, torch.tensor([f.shape[0]]), scorer.cfg.attention)[0]
        logp = torch.log_softmax(logits.double(), -1)
        K, T = c.shape
        out.append(sum(float(logp[q, s, c[q, s - q]]) for q in range(K) for s in range(q, q + T)))
    return torch.tensor(out, dtype=torch.float64)


def test_hook_equals_the_sum_of_valid_cell_log_softmax(scorer):
    codes, frames = _inputs(scorer)
    got = scorer.log_likelihood(codes, frames)
    assert got.shape == (3,) and got.dtype == torch.float64
    torch.testing.assert_close(got, _plain(scorer, codes, frames), rtol=1e-5, atol=1e-4)
    # nats per clip: every one of the K * T cells costs something
    assert (got < 0).all()


def test_one_video_expanded_over_candidates_equals_the_video_repeated(scorer):
    codes, frames = _inputs(scorer, B=4, seed=1)
    v = frames[0]
    expanded = scorer.log_likelihood(codes, v[None].expand(4, *v.shape))
    repeated = scorer.log_likelihood(codes, v[None].repeat(4, 1, 1, 1, 1).contiguous())
    torch.testing.assert_close(expanded, repeated, rtol=1e-6, atol=1e-5)


def test_the_video_changes_the_likelihood_and_zeroed_video_gives_chance_rows(scorer):
    codes, frames = _inputs(scorer, B=5, seed=2)
    clips = list(zip(codes, frames))
    L = likelihood_matrix(scorer, clips)
    assert (L != L[:1]).any()  # the (random-init) LM reads the video: rows differ
    Z = likelihood_matrix(scorer, clips, zeroed=True)
    # every query with zeroed frames scores each candidate alike, whatever its own video
    one = scorer.log_likelihood(codes, scorer.zeroed(frames)).numpy()
    np.testing.assert_allclose(Z, np.tile(one, (5, 1)))
    s = summarise(centred(Z))
    ch = chance(5)
    assert s["mrr"]["value"] == pytest.approx(ch["mrr"]) and s["recall@1"]["value"] == pytest.approx(ch["recall@1"])
    assert s["mrr"]["ci"] == pytest.approx([ch["mrr"], ch["mrr"]])


def test_prepare_encodes_each_clip_once_into_tokens_and_frames(scorer, tmp_path):
    from foleybench.datasets.synthfoley import SynthFoley

    m = SynthFoley(tmp_path, n_clips=2, seed=3).manifest()
    clips = scorer.prepare(m, 0.5)
    lm, cfg = scorer.model.net.lm.cfg, scorer.cfg
    assert len(clips) == 2
    for codes, frames in clips:
        assert codes.dtype == torch.int64 and codes.shape == (lm.n_q, int(np.ceil(0.5 * lm.frame_rate)))
        assert int(codes.max()) < lm.card and int(codes.min()) >= 0
        assert frames.shape == (int(np.ceil(0.5 * cfg.visual_fps)), 3, cfg.frame_size, cfg.frame_size)
    L = likelihood_matrix(scorer, clips)
    assert L.shape == (2, 2) and np.isfinite(L).all()


def test_foleygen_tiny_models_take_part_in_retrieval_once_per_checkpoint():
    from foleybench.baselines.likelihood import families_with_hook

    names = families_with_hook()
    assert {"foleygen_c.tiny", "foleygen_p.tiny"} <= set(names)
    # the generation-only tags share the tiny checkpoint: not scored twice
    assert not any(n.startswith("foleygen_") and n.split(".")[1] not in ("tiny",) for n in names)
