"""foleybench curate: keep rules, the written manifest and report, and the corruption judge."""
from __future__ import annotations

import csv
import json

import pytest

from foleybench import curate as cur
from foleybench.api import FoleybenchError
from foleybench.datasets.base import ClipRecord, Manifest

SCORES = {"c1": 0.9, "c2": 0.2, "c3": 0.55, "c4": 0.55, "c5": 0.1}


@pytest.fixture
def manifest(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    recs = [ClipRecord(c, video=str(root / f"{c}.mp4"), audio=str(root / f"{c}.wav"), label="x") for c in
            [*SCORES, "c6"]]
    return Manifest(recs, root)


@pytest.fixture
def fake_scorer(monkeypatch):
    def fake(manifest, ctx=None):
        return {c: s for c, s in SCORES.items()}, {"c6": "no onsets"}, {"scorer": "fake", "unit": "u"}
    monkeypatch.setattr(cur, "get_scorer", lambda name: fake)
    monkeypatch.setitem(cur.SCORERS, "fake", ("x:y", "fake", "top:0.5"))


@pytest.mark.parametrize("rule,kept", [("above:0.55", ["c1", "c3", "c4"]), ("below:0.2", ["c2", "c5"]),
                                       ("top:0.4", ["c1", "c3"]), ("top:0.6", ["c1", "c3", "c4"]),
                                       ("top:0", []), ("top:1", ["c1", "c2", "c3", "c4", "c5"])])
def test_keep_rules(rule, kept):
    got, _ = cur.KeepRule.parse(rule).select(SCORES)
    assert got == kept  # top ties (c3, c4 at 0.55) are broken by clip id


@pytest.mark.parametrize("bad", ["above", "top:1.5", "middle:0.3", "below:x"])
def test_bad_rules_fail(bad):
    with pytest.raises(FoleybenchError):
        cur.KeepRule.parse(bad)


def test_report_manifest_and_ids(manifest, fake_scorer, tmp_path):
    out = tmp_path / "out"
    rep = cur.curate(manifest, "fake", out, "above:0.5")
    assert rep["kept"] == ["c1", "c3", "c4"] and rep["dropped"] == ["c2", "c5"]
    assert rep["excluded"] == {"c6": "no onsets"} and rep["n_clips"] == 6 and rep["threshold"] == 0.5
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["kept"] == rep["kept"] and on_disk["scores"]["c2"] == 0.2
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [r["clip_id"] for r in rows] == ["c1", "c3", "c4"] and float(rows[0]["score"]) == 0.9
    back = Manifest.read(out / "manifest.csv")  # a curated folder is a dataset again
    assert back.ids() == ["c1", "c3", "c4"] and back["c1"].video == manifest["c1"].video
    assert (out / "scores.png").stat().st_size > 0 and "c6 | — | excluded" in (out / "report.md").read_text()
    # default rule of the scorer when --keep is not given
    assert cur.curate(manifest, "fake", tmp_path / "o2")["keep"] == "top:0.5"


def test_unknown_scorer_names_close_matches():
    with pytest.raises(FoleybenchError, match="did you mean 'av_align'"):
        cur.get_scorer("av_alin")
    assert cur.scorer_names() == ["av_align", "avc", "ib_score"]


def test_corruption_is_known_and_scored(manifest):
    from foleybench.baselines.curate_eval import corrupt, precision_recall

    bad, ids, donor = corrupt(manifest, seed=0, fraction=0.34)
    assert len(ids) == 2 and set(donor.values()) == set(ids) and all(donor[c] != c for c in ids)
    for c in manifest.ids():
        want = manifest[donor[c]].audio if c in donor else manifest[c].audio
        assert bad[c].audio == want and bad[c].video == manifest[c].video
    assert corrupt(manifest, seed=0, fraction=0.34)[1] == ids
    assert precision_recall(["a", "b", "x"], ["a", "b"]) == (2 / 3, 1.0)
    assert precision_recall([], ["a"]) == (None, 0.0)


def test_avc_scores_a_real_clip(shared_dir, tmp_path):
    src = shared_dir / "data" / "realclips" / "difffoley_car.mp4"
    if not src.is_file():
        pytest.skip(f"{src} not present")
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / src.name).symlink_to(src)
    from foleybench.runner import open_reference

    rep = cur.curate(open_reference(str(tmp_path / "clips")), "avc", tmp_path / "out", "above:0")
    assert rep["kept"] == ["difffoley_car"] and 0.0 <= rep["scores"]["difffoley_car"] <= 1.0
    assert rep["provenance"]["checkpoint_sha256"] == __import__(
        "foleybench.baselines.correspondence", fromlist=["x"]).CHECKPOINT_SHA


@pytest.mark.parametrize("scorer", ["av_align", "ib_score"])
def test_untrained_scorers_score_each_clip_through_the_metric(scorer, tmp_path):
    """The scorers that reuse metric classes (no faking): one value per clip id, sorted."""
    from foleybench.api import ScoreContext
    from foleybench.datasets.synthfoley import SynthConfig, generate

    m = generate(tmp_path / "s", 3, seed=2, cfg=SynthConfig(duration_s=2.0))
    values, excluded, meta = cur.get_scorer(scorer)(m, ScoreContext(proxy=True))
    assert meta["scorer"] == scorer
    assert sorted(values) == sorted(set(m.ids()) - set(excluded)) and values
    assert all(isinstance(v, float) for v in values.values())
