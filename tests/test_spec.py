"""Typed benchmark specs: every shipped spec parses; mistakes are errors naming file and key."""
from __future__ import annotations

import pytest

from foleybench.bench import BENCH_DIR, list_benchmarks, load_spec
from foleybench.spec import BenchSpec, SpecError, parse_spec

GOOD = {"name": "t", "title": "t", "dataset": {"name": "synthfoley", "clips": 8, "seed": 1, "split": "test"},
        "tasks": {"v2a": {"models": ["oracle"], "metrics": ["av_align"]}}}


def _with(**kw):
    return {**GOOD, **kw}


def test_every_shipped_spec_parses_and_is_discovered():
    names = list_benchmarks()
    assert names == sorted(p.stem for p in BENCH_DIR.glob("*.yaml")) and "synthfoley" in names
    for n in names:
        spec = load_spec(n)
        assert isinstance(spec, BenchSpec) and spec.name == n and spec.path.endswith(f"{n}.yaml")
    table1 = load_spec("martel-wagner-table1")
    assert table1.kind == "evaluate" and [c.model for c in table1.columns] == table1.all_models()
    assert len(table1.published["table1"]) == len(table1.rows) == 3


@pytest.mark.parametrize("data,where", [
    (_with(datset={"name": "x"}), "unknown key 'datset'"),
    (_with(dataset={"name": "synthfoley", "clip": 8}), "dataset: unknown key 'clip'"),
    (_with(tasks={"v2a": {"models": ["oracle"], "metrics": ["av_align"], "metric_opts": {}}}),
     "tasks.v2a: unknown key 'metric_opts'"),
    (_with(published={"v2a": [{"model": "X", "source": "s", "values": {"fd": 1}, "note": "n"}]}),
     r"published.v2a\[0\]: unknown key 'note'"),
    (_with(dataset={"name": "synthfoley", "clips": "many"}), "dataset.clips: expected int"),
    (_with(proxy="yes"), "proxy: expected bool"),
    (_with(tasks={"x2y": {"models": [], "metrics": []}}), "unknown task 'x2y'"),
    (_with(published={"a2v": []}), "'a2v' is not one of this benchmark's tasks"),
    ({"name": "t", "dataset": {"name": "synthfoley"}, "tasks": {}}, "missing key 'title'"),
    (_with(tasks={}), "needs 'tasks'"),
    (_with(evaluate="m:f"), "needs 'render'"),
])
def test_bad_specs_name_the_file_and_the_key(data, where):
    with pytest.raises(SpecError, match=where) as e:
        parse_spec(data, "benchmarks/t.yaml")
    assert str(e.value).startswith("benchmarks/t.yaml: ")


def test_unknown_names_and_doubled_directions_fail_when_read(tmp_path):
    import yaml

    def write(data):
        p = tmp_path / "t.yaml"
        p.write_text(yaml.safe_dump(data))
        return str(p)

    with pytest.raises(SpecError, match=r"tasks.v2a.models: unknown model 'orcale'; did you mean 'oracle'"):
        load_spec(write(_with(tasks={"v2a": {"models": ["orcale"], "metrics": ["av_align"]}})))
    with pytest.raises(SpecError, match=r"tasks.v2a.metrics: unknown metric 'fd_vgish'"):
        load_spec(write(_with(tasks={"v2a": {"models": ["oracle"], "metrics": ["fd_vgish"]}})))
    with pytest.raises(SpecError, match="higher_is_better.fd_vggish: the metric declares its own direction"):
        load_spec(write(_with(higher_is_better={"fd_vggish": False})))
    with pytest.raises(SpecError, match="tasks.v2a.metrics: metric 'is_c3d' does not apply to v2a"):
        load_spec(write(_with(tasks={"v2a": {"models": ["oracle"], "metrics": ["is_c3d"]}})))
    with pytest.raises(SpecError, match="metric 'fd_melstat' has no option"):
        load_spec(write(_with(tasks={"v2a": {"models": ["oracle"], "metrics": ["fd_melstat"],
                                             "metric_options": {"fd_melstat": {"n_bot": 3}}}})))
    ok = load_spec(write(_with(higher_is_better={"fd_published_only": False})))   # a published-only column
    assert ok.higher_is_better == {"fd_published_only": False}
    with pytest.raises(SpecError, match="higher_is_better.fd_passt: the metric declares its own direction"):
        load_spec(write(_with(higher_is_better={"fd_passt": False})))  # PaSST is a metric now


def test_limit_and_make_bench_keys(tmp_path, monkeypatch):
    """``dataset.limit`` parses as an int; ``make_bench: false`` keeps a spec out of
    ``bench --all`` (``list_benchmarks(default_only=True)``) but not out of the list."""
    import yaml

    from foleybench import bench

    spec = parse_spec(_with(dataset={**GOOD["dataset"], "limit": 3}), "t.yaml")
    assert spec.dataset.limit == 3 and spec.make_bench is True
    with pytest.raises(SpecError, match="dataset.limit: expected int"):
        parse_spec(_with(dataset={**GOOD["dataset"], "limit": "3"}), "t.yaml")
    for name, flag in (("a", True), ("b", False)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**GOOD, "name": name, "make_bench": flag}))
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path)
    assert bench.list_benchmarks() == ["a", "b"] and bench.list_benchmarks(default_only=True) == ["a"]
