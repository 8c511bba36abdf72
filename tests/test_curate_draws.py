"""The curate benchmark's repeated corruption draws: arithmetic on a constructed score
table with known answers, and pair tables that agree with the scorers themselves."""
from __future__ import annotations

import pytest

from foleybench.baselines import curate_eval as ce

IDS = [f"c{i}" for i in range(10)]


def table(bad_score: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Own pairs score 0.9 except c9 (0.4: a clean clip that looks wrong); swapped pairs as given."""
    t = {(c, c): 0.9 for c in IDS}
    t[("c9", "c9")] = 0.4
    t.update(bad_score)
    return t


def test_swaps_are_seeded_cycles_and_the_first_draw_is_corrupt():
    from foleybench.datasets.base import ClipRecord, Manifest

    d = ce.swaps(IDS, seed=3)
    assert len(d) == 2 and set(d.values()) == set(d) and all(d[c] != c for c in d)
    assert ce.swaps(IDS, seed=3) == d and any(ce.swaps(IDS, s) != d for s in range(4, 8))
    m = Manifest([ClipRecord(c, video=f"/x/{c}.mp4", audio=f"/x/{c}.wav") for c in IDS], "/x")
    assert ce.corrupt(m, 3)[2] == d


def test_draws_arithmetic_on_a_constructed_table():
    d1 = {"c0": "c1", "c1": "c0"}
    d2 = {"c2": "c3", "c3": "c2"}
    d3 = {"c4": "c5", "c5": "c4"}
    # draw 1: both swaps score low (caught); draw 2: one caught, one looks right;
    # draw 3: both look right (missed). c9 (0.4) is always a false alarm under above:0.5.
    t = table({("c0", "c1"): 0.1, ("c1", "c0"): 0.2, ("c2", "c3"): 0.3, ("c3", "c2"): 0.8,
               ("c4", "c5"): 0.7, ("c5", "c4"): 0.95})
    res = ce.evaluate_draws(t, {}, IDS, [d1, d2, d3], {"default": "above:0.5", "top": "top:0.8"})
    per = res["default"]["per_draw"]
    assert per == [[2 / 3, 1.0], [1 / 2, 1 / 2], [0.0, 0.0]]
    assert res["default"]["rule"] == "above:0.5"
    rec = res["default"]["recall"]
    assert rec["mean"] == pytest.approx(0.5) and rec["min"] == 0.0 and rec["max"] == 1.0 and rec["n"] == 3
    assert rec["sd"] == pytest.approx(0.5)  # sample sd of (1, 0.5, 0)
    assert rec["min"] <= rec["ci"][0] <= rec["mean"] <= rec["ci"][1] <= rec["max"]
    assert res["default"]["precision"]["mean"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert res["default"]["missed"] == {"c3": 1, "c4": 1, "c5": 1}
    # top:0.8 drops round(0.2 * 10) = 2 lowest: draw 1 {c0, c1}, draw 2 {c2, c9}, draw 3 {c9, c4}
    assert res["top"]["per_draw"] == [[1.0, 1.0], [0.5, 0.5], [0.5, 0.5]]


def test_excluded_pairs_count_as_dropped_and_empty_drops_are_undefined():
    d = {"c0": "c1", "c1": "c0"}
    t = table({("c0", "c1"): 0.9})
    t[("c9", "c9")] = 0.9
    scores, excluded = ce.draw_scores(t, {("c1", "c0"): "no onsets"}, IDS, d)
    assert "c1" not in scores and excluded == {"c1": "no onsets"}
    j = ce.judge(scores, excluded, sorted(d), "above:0.5")
    assert (j["precision"], j["recall"], j["n_dropped"], j["n_excluded"]) == (1.0, 0.5, 0, 1)
    # nothing dropped and nothing excluded: precision undefined, counted, not averaged in
    res = ce.evaluate_draws({**t, ("c1", "c0"): 0.9}, {}, IDS, [d, d], {"default": "above:0.5"})
    p = res["default"]["precision"]
    assert p["mean"] is None and p["n_undefined"] == 2 and res["default"]["recall"]["mean"] == 0.0


@pytest.mark.parametrize("scorer", ["avc", "av_align"])
def test_pair_table_is_the_scorer_on_the_corrupted_manifest(scorer, tmp_path):
    """Scoring every pair once and looking a draw up gives what the scorer gives on the
    corrupted manifest itself (so the draws judge the scorer, not a shortcut)."""
    from foleybench.api import ScoreContext
    from foleybench.curate import get_scorer
    from foleybench.datasets.synthfoley import SynthConfig, generate

    m = generate(tmp_path / "s", 4, seed=2, cfg=SynthConfig(duration_s=2.0))
    ctx = ScoreContext(proxy=True)
    bad, corrupted, donor = ce.corrupt(m, seed=1, fraction=0.5)
    want, want_ex, _ = get_scorer(scorer)(bad, ctx)
    pairs = [(c, c) for c in m.ids()] + [(c, donor[c]) for c in corrupted]
    t, ex, prov = ce.pair_table(scorer, m, pairs, ctx)
    got, got_ex = ce.draw_scores(t, ex, m.ids(), donor)
    assert prov["scorer"] == scorer and got.keys() == want.keys() and got_ex.keys() == want_ex.keys()
    assert all(got[c] == pytest.approx(want[c], abs=1e-6) for c in want)


def test_leaderboard_shows_mean_over_draws_per_scorer_and_rule():
    from types import SimpleNamespace

    from foleybench.baselines.curate_render import flat_values, render_markdown

    d = {"c0": "c1", "c1": "c0"}
    t = table({("c0", "c1"): 0.1, ("c1", "c0"): 0.7})
    rows = []
    for key, rules in (("avc", {"top": "top:0.8", "default": "above:0.5"}), ("av_align", {"top": "top:0.8",
                                                                                            "default": "top:0.8"})):
        draws = ce.evaluate_draws(t, {}, IDS, [d, d], rules)
        one = {label: {**ce.judge(*ce.draw_scores(t, {}, IDS, d), sorted(d), rule)} for label, rule in rules.items()}
        rows.append({"scorer": key, "title": key, "provenance": {}, "scores": {}, "draws": draws, **one})
    result = {"rows": rows, "corrupted": ["c0", "c1"], "n": 10, "same_class_swaps": 0, "n_draws": 2,
              "draw_seeds": [0, 1], "same_class_swaps_all": 0, "n_swaps_all": 4, "real": {}}
    md = render_markdown(result, SimpleNamespace(seed=0, units="P/R"), None)
    assert "## Over 2 corruption draws (seeds 0–1" in md
    # avc above:0.5 drops c0 (0.1) and the clean c9 (0.4), keeps c1 (0.7): P = R = 1/2 in both draws
    assert "| avc | `above:0.5` (default) | 0.500 ± 0.000" in md
    assert "Corrupted clips avc kept under `above:0.5` over the draws: c1 (2x)." in md
    assert md.count("| av_align | `top:0.8`") == 2  # once per table: its default rule is not repeated
    flat = flat_values(result, None)
    assert flat["default_mean_over_draws"]["avc"] == {"precision": 0.5, "recall": 0.5}
