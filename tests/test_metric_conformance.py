"""Conformance of every registered metric: batching and merge order change nothing.

Parametrised over the METRICS registry (and each task a metric's class serves), so a new
metric is covered by adding its registry line. On a small synthfoley set with the
``noise`` baseline's predictions (one of them overwritten with garbage, so every
variant has an exclusion to agree on), each metric must give the same value, n,
interval, extras, provenance and exclusions, compared exactly as JSON text, when the
clips come in one batch, in three batches of a reversed order, and in two interleaved
shards merged either way round. Proxy evaluators write to one embedding cache, so the
networks run once per file and every variant sees the same embeddings: what is tested
is the metric's state, not the embedder.
"""
from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from foleybench import runner
from foleybench.api import ClipPair, FoleybenchError, Metric, ScoreContext
from foleybench.datasets.synthfoley import SynthConfig, generate
from foleybench.metrics import embedders
from foleybench.registry import METRICS, load_plugins

load_plugins()
N_CLIPS = 4
BROKEN = 1  # manifest index of the clip whose prediction is garbage
# Options a tiny set needs, applied to every metric whose constructor takes them: the
# published 10 inception-score splits need at least 10 clips.
SMALL_SET_OPTIONS: dict[str, Any] = {"n_splits": 2}
CASES = [(name, task) for name in METRICS.names() for task in getattr(METRICS.entry(name).load(), "tasks", ())]


def _scored_set(tmp_path_factory: pytest.TempPathFactory, duration_s: float) -> Iterator[dict[str, Any]]:
    """{"ctx": proxy ScoreContext with a cache, task: [ClipPair] in manifest order}."""
    root = tmp_path_factory.mktemp("conformance")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FOLEYBENCH_WEIGHTS", str(root / "no-weights"))  # proxies, even where weights exist
        embedders.clear()
        manifest = generate(root / "data", N_CLIPS, seed=5, cfg=SynthConfig(duration_s=duration_s))
        out: dict[str, Any] = {"ctx": ScoreContext(proxy=True, cache_dir=str(root / "cache"))}
        for task in ("v2a", "a2v"):
            pred = root / f"pred-{task}"
            runner.generate(task, "noise", manifest, pred, seed=0)
            ext = runner.PRED_EXT[task][0]
            (pred / f"{manifest.records[BROKEN].clip_id}{ext}").write_bytes(b"not a media file")
            pairs, _ = runner.pair_clips(task, pred, manifest)
            assert [p.clip_id for p in pairs] == manifest.ids() != sorted(manifest.ids())  # order matters here
            out[task] = pairs
        yield out
        embedders.clear()


@pytest.fixture(scope="module")
def scored_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # 2 s clips: ImageBind takes frames at 0.5 fps; FVD and C3D need 16 frames (16 fps).
    yield from _scored_set(tmp_path_factory, 2.0)


@pytest.fixture(scope="module")
def scored_set_long(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # 5 s clips, for metrics whose class declares a longer ``min_clip_s`` (DeSync: 4.8 s windows).
    yield from _scored_set(tmp_path_factory, 5.0)


def _build(name: str, ctx: ScoreContext) -> Metric:
    entry = METRICS.entry(name)
    cls = entry.load()
    params = inspect.signature(cls.__init__).parameters
    opts = {k: v for k, v in SMALL_SET_OPTIONS.items() if k in params}
    return cls(ctx=ctx, **{**entry.kwargs, **opts})


def _outcome(metric: Metric, excluded: Sequence[tuple[str, str]]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FVD warns below 256 videos, every time
        value = metric.compute()
    doc = {"value": value.to_dict(), "excluded": sorted(map(list, excluded)), "provenance": metric.provenance()}
    return json.dumps(doc, default=repr)


def _batches(name: str, ctx: ScoreContext, batches: Sequence[Sequence[ClipPair]]) -> tuple[Metric, list]:
    m = _build(name, ctx)
    excluded: list = []
    for b in batches:
        excluded += m.update(list(b))
    return m, excluded


@pytest.mark.parametrize(("name", "task"), CASES, ids=[f"{n}-{t}" for n, t in CASES])
def test_same_result_however_batched_or_merged(request: pytest.FixtureRequest, name: str, task: str) -> None:
    long = getattr(METRICS.entry(name).load(), "min_clip_s", 0.0) > 2.0
    scored_set = request.getfixturevalue("scored_set_long" if long else "scored_set")
    ctx, pairs = scored_set["ctx"], scored_set[task]
    one, ex_one = _batches(name, ctx, [pairs])
    reference = _outcome(one, ex_one)
    value = json.loads(reference)["value"]
    # Not vacuous: the metric scored most clips and excluded the broken prediction or none.
    assert value["value"] is not None and value["n"] >= N_CLIPS - 1, reference
    assert {cid for cid, _ in ex_one} <= {pairs[BROKEN].clip_id}
    # Declared once, on the class: never set on the instance, and the instance is named
    # as its registry line.
    assert "tasks" not in vars(one) and one.name == name and task in type(one).tasks

    rev = pairs[::-1]
    three, ex_three = _batches(name, ctx, [rev[:1], rev[1:3], rev[3:]])
    assert _outcome(three, ex_three) == reference, "three batches differ from one"

    shard_a, shard_b = pairs[0::2], pairs[1::2]
    a, ex_a = _batches(name, ctx, [shard_a])
    b, ex_b = _batches(name, ctx, [shard_b])
    assert _outcome(a.merge(b), ex_a + ex_b) == reference, "a.merge(b) differs from one batch"
    a, ex_a = _batches(name, ctx, [shard_a])
    b, ex_b = _batches(name, ctx, [shard_b])
    assert _outcome(b.merge(a), ex_b + ex_a) == reference, "b.merge(a) differs from one batch"


def test_every_metric_declares_its_tasks_on_its_class() -> None:
    for name in METRICS.names():
        tasks = getattr(METRICS.entry(name).load(), "tasks", None)
        assert tasks and set(tasks) <= {"v2a", "a2v"}, name


def test_a_metric_for_the_other_task_fails_before_any_work(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    def no_work(*a: Any, **k: Any) -> None:
        raise AssertionError("pairing started before the metric's task was checked")

    monkeypatch.setattr(runner, "pair_clips", no_work)
    monkeypatch.setattr(runner, "validate", no_work)
    ctx = ScoreContext(proxy=True)
    for task, name in [("v2a", "is_c3d"), ("v2a", "fvd"), ("a2v", "is_panns"), ("a2v", "kl_panns")]:
        with pytest.raises(FoleybenchError, match=f"{name}' does not apply to {task}"):
            runner.score(task, tmp_path, None, ["av_align", name], ctx)  # type: ignore[arg-type]
    with pytest.raises(FoleybenchError, match="has no option"):
        runner.score("v2a", tmp_path, None, ["kl_panns"], ctx, metric_opts={"kl_panns": {"nboot": 3}})  # type: ignore[arg-type]


def test_clip_ids_enter_a_metric_once() -> None:
    from foleybench.metrics.av_align import AVAlign
    from foleybench.metrics.kl import KLMetric

    with pytest.raises(FoleybenchError, match="more than once"):
        AVAlign().update([ClipPair("a", "v2a"), ClipPair("a", "v2a")])
    m, other = AVAlign(), AVAlign()
    assert m.update([ClipPair("a", "v2a")]) == [("a", "no video file for task 'v2a'")]
    with pytest.raises(FoleybenchError, match="more than once"):
        m.update([ClipPair("a", "v2a")])
    other.update([ClipPair("a", "v2a"), ClipPair("b", "v2a")])
    with pytest.raises(FoleybenchError, match="share clip ids"):
        m.merge(other)
    with pytest.raises(TypeError):
        m.merge(KLMetric.__new__(KLMetric))
