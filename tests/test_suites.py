"""Named metric suites: expansion, protocol, listing, and honest gaps (planned metrics).

The suites' own metrics are covered by their tests; here a cheap stand-in suite (the
weight-free fd_melstat plus a planned stand-in metric) runs end to end through ``score``, so
the test checks the suite machinery, not the evaluators.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from foleybench import suites
from foleybench.api import FoleybenchError
from foleybench.cli import main
from foleybench.registry import METRICS, UnknownNameError
from foleybench.spec import SpecError


@pytest.fixture(scope="module")
def synth_pred(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(reference folder, noise predictions): 3 synthfoley clips of 2 s."""
    root = tmp_path_factory.mktemp("suites")
    assert main(["synth", "--out", str(root / "ref"), "--clips", "3", "--seed", "4", "--duration", "2"]) == 0
    assert main(["generate", "--task", "v2a", "--model", "noise", "--data", str(root / "ref"), "--out",
                 str(root / "pred"), "--device", "cpu"]) == 0
    return root / "ref", root / "pred"


def test_the_three_suites() -> None:
    av = suites.get("@av-benchmark")
    assert av.metrics == ("fd_passt", "fd_panns", "fd_vggish", "kl_panns", "kl_passt", "is_panns", "ib_score",
                          "desync")
    assert (av.task, av.clip_seconds) == ("v2a", 8.0)
    assert suites.get("tempotokens").metrics == ("fvd", "clipsim", "is_c3d", "av_align")
    assert suites.get("tempotokens").task == "a2v"
    assert suites.get("foleygen").metrics == ("fd_vggish", "kl_panns", "ib_score")
    for s in suites.SUITES.values():  # every name is a registered metric of the suite's task, or planned
        for m in s.metrics:
            assert m in METRICS or suites.is_planned(m), (s.name, m)
            if m in METRICS:
                assert s.task in METRICS.entry(m).load().tasks, (s.name, m)
        assert set(s.inputs) == set(s.metrics), s.name  # each metric's input is recorded
    assert not suites.is_planned("desync") and not suites.is_planned("fd_passt")  # both built


def test_expand_and_its_errors() -> None:
    names, suite = suites.expand(["fd_melstat", "@foleygen", "kl_panns"], "v2a")
    assert names == ["fd_melstat", "fd_vggish", "kl_panns", "ib_score"] and suite is suites.SUITES["foleygen"]
    assert suites.expand(["fd_melstat"]) == (["fd_melstat"], None)
    with pytest.raises(UnknownNameError, match="did you mean '@?av-benchmark'|did you mean 'av-benchmark'"):
        suites.expand(["@av-benchmrk"])
    with pytest.raises(FoleybenchError, match="one suite per run"):
        suites.expand(["@foleygen", "@av-benchmark"])
    with pytest.raises(FoleybenchError, match="scores a2v, not v2a"):
        suites.expand(["@tempotokens"], "v2a")
    av = suites.SUITES["av-benchmark"]
    assert suites.clip_seconds(av, None) == 8.0 == suites.clip_seconds(av, 8.0)
    assert suites.clip_seconds(None, 3.0) == 3.0
    with pytest.raises(FoleybenchError, match="--clip-seconds 5: suite @av-benchmark scores 8 s"):
        suites.clip_seconds(av, 5.0)


def test_list_suites(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "suites"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["@av-benchmark", "@foleygen", "@tempotokens"]
    assert "8 s clips" in lines[0] and "desync" in lines[0] and "whole clips" in lines[2]


def test_suite_run_reports_a_planned_metric_and_applies_the_protocol(
        monkeypatch: pytest.MonkeyPatch, synth_pred: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    ref, pred = synth_pred
    mini = suites.Suite("mini", "test", "v2a", ("futuresync", "fd_melstat"), 1.5,
                        {"futuresync": "-", "fd_melstat": "16 kHz"}, "test")
    monkeypatch.setitem(suites.SUITES, "mini", mini)
    monkeypatch.setitem(suites.PLANNED, "futuresync",
                        {"higher_is_better": False, "why": "FutureSync is not implemented in foleybench yet"})
    out = tmp_path / "r.json"
    base = ["score", "--task", "v2a", "--pred", str(pred), "--ref", str(ref), "--out", str(out),
            "--device", "cpu", "--no-cache", "--quiet"]
    assert main(base + ["--metrics", "@mini"]) == 0
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert list(doc["metrics"]) == ["futuresync", "fd_melstat"]  # the suite's order, the gap included
    gap = doc["metrics"]["futuresync"]
    assert gap["value"] is None and gap["available"] is False and gap["n"] == 0
    assert gap["extras"]["reason"].startswith("not available: FutureSync")
    assert doc["metrics"]["fd_melstat"]["value"] is not None and doc["metrics"]["fd_melstat"]["n"] == 3
    assert doc["protocol"]["clip_seconds"] == 1.5 and doc["suite"]["name"] == "mini"
    assert "not available: FutureSync" in text
    # a different explicit length is another protocol: refused before any work
    assert main(base + ["--metrics", "@mini", "--clip-seconds", "2"]) == 2
    assert "suite @mini scores 1.5 s" in capsys.readouterr().err
    # named alone, a planned metric is the same honest gap; a misspelt name is still an error
    assert main(base + ["--metrics", "futuresync"]) == 0
    assert "not available: FutureSync" in capsys.readouterr().out
    assert main(base + ["--metrics", "futuresyncc"]) == 2
    assert "unknown metric 'futuresyncc'" in capsys.readouterr().err


def test_bench_spec_may_name_a_suite(tmp_path: Path) -> None:
    import yaml

    from foleybench.bench import load_spec

    def write(**over: object) -> str:
        data = {"name": "t", "title": "t", "dataset": {"name": "synthfoley", "clips": 4},
                "tasks": {"v2a": {"models": ["oracle"], "metrics": ["@av-benchmark"]}}, **over}
        p = tmp_path / "t.yaml"
        p.write_text(yaml.safe_dump(data))
        return str(p)

    spec = load_spec(write())
    assert spec.tasks["v2a"].metrics == list(suites.SUITES["av-benchmark"].metrics)
    assert spec.clip_seconds == 8.0 and "desync" not in spec.higher_is_better  # built: its class says
    with pytest.raises(SpecError, match="tasks.v2a.metrics: --clip-seconds 5"):
        load_spec(write(clip_seconds=5.0))
    with pytest.raises(SpecError, match="scores a2v, not v2a"):
        load_spec(write(tasks={"v2a": {"models": ["oracle"], "metrics": ["@tempotokens"]}}))
