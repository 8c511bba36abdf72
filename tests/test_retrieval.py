"""Retrieval arithmetic on constructed likelihood matrices with known ranks, and the hook."""
from __future__ import annotations

import numpy as np
import pytest

from foleybench.baselines.retrieval import (
    beats_chance,
    centred,
    chance,
    likelihood_matrix,
    per_query,
    summarise,
    target_counts,
)


def _matrix_with_ranks(ranks: list[int], seed: int = 0) -> np.ndarray:
    """L [N, N] whose target in row i has rank ranks[i] (1 = best), no ties."""
    n = len(ranks)
    rng = np.random.default_rng(seed)
    L = np.zeros((n, n))
    for i, r in enumerate(ranks):
        others = [j for j in range(n) if j != i]
        order = list(rng.permutation(others))
        order.insert(r - 1, i)  # position r - 1 in descending order
        L[i, order] = np.arange(n, 0, -1, dtype=float)  # distinct, descending
    return L


def test_known_ranks_give_exact_metrics():
    ranks = [1, 2, 3, 6, 1, 4]
    q = per_query(_matrix_with_ranks(ranks))
    np.testing.assert_array_equal(q["rank"], ranks)
    np.testing.assert_allclose(q["rr"], [1 / r for r in ranks])
    np.testing.assert_array_equal(q["hit@1"], [1, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(q["hit@5"], [1, 1, 1, 0, 1, 1])
    s = summarise(_matrix_with_ranks(ranks), n_boot=200)
    assert s["recall@1"]["value"] == pytest.approx(2 / 6) and s["recall@5"]["value"] == pytest.approx(5 / 6)
    assert s["median_rank"]["value"] == 2.5 and s["mrr"]["value"] == pytest.approx(np.mean([1 / r for r in ranks]))
    lo, hi = s["mrr"]["ci"]
    assert lo <= s["mrr"]["value"] <= hi and lo < hi


def test_ties_are_broken_at_random_in_expectation():
    # row 0: target tied with 2 others, none above -> rank uniform on 1..3
    # row 1: 1 above, target tied with 1 -> rank uniform on 2..3
    L = np.array([[5.0, 5.0, 5.0, 1.0],
                  [9.0, 4.0, 4.0, 0.0],
                  [0.0, 0.0, 3.0, 0.0],   # target alone at the top: rank 1 (the 0s tie among themselves only)
                  [1.0, 1.0, 1.0, 1.0]])  # all tied: rank uniform on 1..4
    g, e = target_counts(L)
    np.testing.assert_array_equal(g, [0, 1, 0, 0])
    np.testing.assert_array_equal(e, [2, 1, 0, 3])
    q = per_query(L, ks=(1, 2))
    np.testing.assert_allclose(q["rank"], [2.0, 2.5, 1.0, 2.5])
    np.testing.assert_allclose(q["hit@1"], [1 / 3, 0.0, 1.0, 1 / 4])
    np.testing.assert_allclose(q["hit@2"], [2 / 3, 1 / 2, 1.0, 2 / 4])
    np.testing.assert_allclose(q["rr"], [(1 + 1 / 2 + 1 / 3) / 3, (1 / 2 + 1 / 3) / 2, 1.0, (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4])


def test_a_constant_matrix_is_exactly_chance():
    n = 10
    s = summarise(np.ones((n, n)), n_boot=100)
    ch = chance(n)
    assert ch == {"recall@1": 0.1, "recall@5": 0.5, "median_rank": 5.5, "mrr": pytest.approx(2.9289682539682538 / 10)}
    for k, v in ch.items():
        assert s[k]["value"] == pytest.approx(v) and s[k]["ci"] == pytest.approx([v, v])
    assert not beats_chance(s, n)


def test_identical_rows_centre_to_all_ties_and_perfect_diagonal_beats_chance():
    rng = np.random.default_rng(1)
    row = rng.standard_normal(8)
    assert np.all(centred(np.tile(row, (8, 1))) == 0)  # a video-blind model: every candidate ties
    perfect = rng.standard_normal((8, 8)) + 100 * np.eye(8)
    s = summarise(perfect, n_boot=100)
    assert s["recall@1"]["value"] == 1.0 and s["median_rank"]["value"] == 1.0 and beats_chance(s, 8)


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError):
        target_counts(np.ones((3, 4)))
    with pytest.raises(ValueError):
        target_counts(np.array([[0.0, np.nan], [1.0, 0.0]]))


class _ToyScorer:
    """log p(audio_j | video_i) = -(a_j - v_i)^2: the matrix is known in closed form."""

    meta = {"model": "toy"}

    def log_likelihood(self, audio, video):
        return -((audio - video) ** 2).sum(-1)

    def zeroed(self, video):
        return video * 0


def test_likelihood_matrix_rows_are_queries_and_zeroed_repeats_one_row():
    import torch

    vals = torch.tensor([0.0, 1.0, 3.0])
    clips = [(torch.tensor([v]), torch.tensor([v])) for v in vals]
    L = likelihood_matrix(_ToyScorer(), clips)
    np.testing.assert_allclose(L, -((vals[None, :] - vals[:, None]) ** 2).numpy())
    Z = likelihood_matrix(_ToyScorer(), clips, zeroed=True)
    np.testing.assert_allclose(Z, np.tile(-(vals ** 2).numpy(), (3, 1)))


def test_autoregressive_families_provide_the_hook():
    from foleybench.baselines.likelihood import families_with_hook, scorer_hook

    for name in ("deepfusion.debug", "wavenet_video.debug", "av_transformer.debug", "seq2seq.debug"):
        assert scorer_hook(name) is not None, name
    assert {"deepfusion.tiny", "wavenet_video.tiny", "av_transformer.tiny"} <= set(families_with_hook())
