"""Benchmarks: a typed YAML spec per table (:mod:`foleybench.spec`), run end to end.

``benchmarks/*.yaml`` are discovered by name. A generate-and-score benchmark generates
each model's media into ``runs/media/TASK/MODEL/KEY`` (:func:`media_dir`: shared by the
benchmarks that ask for the same model on the same data; resumable: finished clips are
skipped), scores them into ``runs/NAME/results`` and renders ``leaderboard/NAME.md``
with a bar chart per task and ``leaderboard/NAME.json`` (the values the drift check
compares, nested task -> model -> metric). An evaluate benchmark calls its ``evaluate``
function on the dataset and renders with its ``render`` module.

Shipped checkpoints are used as they are: a stale one is reported by name and reason and
its rows are marked, never retrained here (that is ``make train``). Datasets are built
through the dataset registry.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from foleybench.api import FoleybenchError, ScoreContext
from foleybench.datasets.base import Manifest
from foleybench.leaderboard import bar_chart, footer, render_table, rows_from_results
from foleybench.registry import UnknownNameError
from foleybench.results import read_json, write_json
from foleybench.spec import BenchSpec, SpecError, read_spec
from foleybench.suites import expand_spec_metrics

log = logging.getLogger("foleybench")
REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
TASK_TITLES = {"v2a": "video → audio", "a2v": "audio → video"}


def list_benchmarks(default_only: bool = False) -> list[str]:
    """Every benchmark in benchmarks/*.yaml; ``default_only``: those `bench --all` runs
    (a spec with ``make_bench: false`` runs by name only)."""
    names = sorted(p.stem for p in BENCH_DIR.glob("*.yaml"))
    return [n for n in names if load_spec(n).make_bench] if default_only else names


def load_spec(name: str) -> BenchSpec:
    path = Path(name) if name.endswith(".yaml") else BENCH_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UnknownNameError("benchmark", name, list_benchmarks())
    spec = expand_spec_metrics(read_spec(path))  # a task's metrics may name a suite ("@av-benchmark")
    _check_names(spec)
    return spec


def _check_names(spec: BenchSpec) -> None:
    """Unknown models and metrics, a metric for the wrong task or with an unknown option,
    fail when the spec is read, before any work; a direction declared in the spec for a
    metric that declares its own is an error (one place each)."""
    from foleybench.options import check_metric
    from foleybench.registry import METRICS, MODELS, load_plugins
    from foleybench.suites import is_planned

    load_plugins()
    for task, t in spec.tasks.items():
        for m in t.models:
            if m not in MODELS:
                raise SpecError(spec.path, f"tasks.{task}.models: {UnknownNameError('model', m, MODELS.names())}")
        for m in t.metrics:
            if is_planned(m):  # named by a suite, not implemented: reported as not available
                continue
            if m not in METRICS:
                raise SpecError(spec.path, f"tasks.{task}.metrics: {UnknownNameError('metric', m, METRICS.names())}")
            try:
                check_metric(m, task, t.metric_options.get(m))
            except FoleybenchError as exc:
                raise SpecError(spec.path, f"tasks.{task}.metrics: {exc}") from None
    dup = sorted(m for m in spec.higher_is_better if m in METRICS)
    if dup:
        raise SpecError(spec.path, f"higher_is_better.{dup[0]}: the metric declares its own direction")


def prepare_dataset(spec: BenchSpec, runs_root: Path, split: str | None = "spec") -> Manifest:
    """The spec's dataset through the registry (``split="spec"``: the spec's split)."""
    from foleybench.registry import DATASETS

    ds = spec.dataset
    if ds.name not in DATASETS:
        raise SpecError(spec.path, f"dataset.name: {UnknownNameError('dataset', ds.name, DATASETS.names())}")
    if ds.name == "synthfoley":
        root = ds.root or str(runs_root / "data" / f"synthfoley-{ds.clips or 48}-s{ds.seed}")
        dataset = DATASETS.build(ds.name, root=root, n_clips=ds.clips or 48, seed=ds.seed)
    else:
        if not ds.root:
            raise FoleybenchError(f"benchmark {spec.name!r} needs the {ds.name} clip folder: "
                                  "set dataset.root or pass --data DIR")
        dataset = DATASETS.build(ds.name, root=ds.root)
    manifest = dataset.manifest(ds.split if split == "spec" else split)
    if hasattr(dataset, "report"):
        log.warning(dataset.report())
    return manifest


def run_benchmark(name: str, *, runs_dir: str | Path = "runs", leaderboard_dir: str | Path = "leaderboard",
                  device: str = "cpu", data: str | None = None, progress: bool = True,
                  cache_dir: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Run benchmark ``name``; returns ``{"TASK/MODEL": results document}`` of what was
    generated and scored (empty for an evaluate benchmark and a table not run here)."""
    from foleybench import distributed
    from foleybench.runner import generate, score

    spec = load_spec(name).with_root(data)
    runs = Path(runs_dir) / spec.name
    env = distributed.current()  # under torchrun/srun: each rank its shard, rank 0 writes
    if not env.is_root and (spec.kind == "evaluate" or (spec.dataset.name != "synthfoley"
                                                        and not spec.dataset.root)):
        return {}  # nothing to shard: rank 0 runs it alone
    if spec.kind == "evaluate":
        run_evaluation(spec, runs, Path(runs_dir), Path(leaderboard_dir))
        return {}  # no generated media to summarise: its document is runs/NAME/results/evaluation.json
    if spec.dataset.name != "synthfoley" and not spec.dataset.root:
        # Real-data tables cannot run without the clips: show the published rows alone,
        # and say so, rather than fail the whole `make bench`.
        log.warning("%s: no --data given for dataset %r; rendering published rows only", spec.name,
                    spec.dataset.name)
        render(spec, runs, Path(leaderboard_dir), not_run=(
            f"Our rows were not run here: they need the {spec.dataset.name} clips "
            f"(`foleybench bench {spec.name} --data DIR`)."))
        return {}
    if env.grouped and not env.is_root:
        distributed.barrier(env)  # rank 0 writes the dataset (synthfoley) first
    if spec.dataset.limit is not None and spec.dataset.limit < 0:
        raise SpecError(spec.path, f"dataset.limit: must be >= 0, got {spec.dataset.limit}")
    lim = [n for n in (limit, spec.dataset.limit) if n is not None]
    manifest = prepare_dataset(spec, Path(runs_dir)).limit(min(lim) if lim else None)
    if env.grouped and env.is_root:
        distributed.barrier(env)
    stale = report_stale(spec.all_models(), manifest.root if _is_training_set(spec) else None)
    ctx = ScoreContext(device=device, proxy=spec.proxy, cache_dir=cache_dir or str(Path(runs_dir) / "cache"),
                       progress=progress, clip_seconds=spec.clip_seconds, seed=spec.seed)
    out: dict[str, Any] = {}
    for task, tspec in spec.tasks.items():
        for model in tspec.models:
            pred = media_dir(Path(runs_dir), task, model, manifest, ctx.seed, device)
            gen = generate(task, model, manifest, pred, seed=ctx.seed, device=device, progress=progress)
            doc = score(task, pred, manifest, tspec.metrics, ctx, metric_opts=tspec.metric_options,
                        extra={"benchmark": spec.name, "model": model, "stale_checkpoint": stale.get(model),
                               "generation": {k: gen[k] for k in ("params", "seed", "failures", "generated",
                                                                  "resumed")}})
            if doc is None:
                continue  # not rank 0: rank 0 holds and writes the merged document
            write_json(runs / "results" / f"{task}__{model}.json", doc)
            out[f"{task}/{model}"] = doc
            log.info("%s %s %s", spec.name, task, model)
    if env.is_root:
        render(spec, runs, Path(leaderboard_dir))
    return out


def media_dir(runs_root: Path, task: str, model: str, manifest: Manifest, seed: int, device: str) -> Path:
    """Where a model's generated media for a dataset live, shared by every benchmark that
    asks for the same thing: ``runs/media/TASK/MODEL/KEY`` with KEY a hash of the model
    name, the dataset fingerprint, the seed, the device and the code digest (code, shipped
    checkpoints, specs, pins). Two tables of one run reuse the generation; a changed
    checkpoint or code never reuses stale media."""
    import hashlib

    from foleybench.results import code_digest

    blob = "|".join([task, model, manifest.fingerprint(), str(seed), str(device), code_digest()])
    return runs_root / "media" / task / model / hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_evaluation(spec: BenchSpec, runs: Path, runs_root: Path, out_dir: Path) -> dict[str, Any]:
    """Benchmarks that are not generate-then-score (a paper's training-loss table):
    ``evaluate(data_dir, spec)`` returns plain data; the ``render`` module supplies
    ``render_markdown(result, spec, png_name)``, ``bar_chart(result, spec, path)`` and
    ``flat_values(result, spec)`` (nested section -> row -> column)."""
    import importlib

    from foleybench.registry import Entry
    from foleybench.results import provenance_block

    manifest = prepare_dataset(spec, runs_root, split=None)
    stale = report_stale(spec.all_models(), manifest.root if _is_training_set(spec) else None)
    result = Entry("evaluate", spec.evaluate).load()(manifest.root, spec)
    result["stale"] = stale
    doc = {"benchmark": spec.name, "stale_checkpoints": stale, "result": result,
           "dataset": {"name": manifest.name or spec.dataset.name, "root": str(manifest.root),
                       "fingerprint": manifest.fingerprint()}, **provenance_block()}
    write_json(runs / "results" / "evaluation.json", doc)
    rmod = importlib.import_module(spec.render)
    png = rmod.bar_chart(result, spec, out_dir / f"{spec.name}.png")
    code = doc["code"]
    text = [f"# {spec.title}", "", spec.description.strip(), "",
            rmod.render_markdown(result, spec, png.name), "",
            f"Dataset fingerprint `{doc['dataset']['fingerprint'][:16]}`; foleybench {code['harness_version']}, "
            f"code digest `{code['code_digest'][:16]}`."]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{spec.name}.md").write_text("\n".join(text).rstrip() + "\n")
    write_json(out_dir / f"{spec.name}.json", {"values": rmod.flat_values(result, spec),
                                               "fingerprints": [doc["dataset"]["fingerprint"]],
                                               "code_digest": code["code_digest"], "stale_checkpoints": stale})
    return doc


def _is_training_set(spec: BenchSpec) -> bool:
    """True for the synthfoley set the shipped checkpoints are trained on (48 clips, seed 0):
    only there is a checkpoint's data fingerprint compared with the data in hand."""
    ds = spec.dataset
    return ds.name == "synthfoley" and (ds.clips or 48) == 48 and ds.seed == 0


def report_stale(models: list[str], data_dir: Path | None) -> dict[str, str]:
    """{model: reason} for the models whose shipped checkpoint is stale, each also logged.

    Only families that ship trained checkpoints (``family.tiny``) can be stale."""
    from foleybench.train import stale_reason, trained_families

    stale = {}
    for m in models:
        family, _, tag = m.partition(".")
        if tag == "tiny" and family in trained_families():
            why = stale_reason(m, data_dir)
            if why:
                stale[m] = why
                log.warning("stale checkpoint %s: %s. Its rows are marked; `make train` retrains it "
                            "(then update and commit the goldens with it).", m, why)
    return stale


def collect(runs: Path, spec: BenchSpec) -> dict[str, list[dict[str, Any]]]:
    docs: dict[str, list[dict[str, Any]]] = {}
    for task, tspec in spec.tasks.items():
        for model in tspec.models:
            p = runs / "results" / f"{task}__{model}.json"
            if p.is_file():
                docs.setdefault(task, []).append(read_json(p))
    return docs


def render(spec: BenchSpec, runs: Path, out_dir: Path, not_run: str | None = None) -> Path:
    """Write leaderboard/NAME.md (+ NAME-TASK.png) and NAME.json from runs/NAME/results."""
    from foleybench.registry import METRICS

    if spec.kind == "evaluate":
        raise FoleybenchError(f"{spec.name}: an evaluate benchmark is rendered when it runs (`foleybench bench`)")
    docs = collect(runs, spec)
    parts = [f"# {spec.title}", "", spec.description.strip(), ""]
    if not_run:
        parts += [f"> {not_run}", ""]
    for task, tspec in spec.tasks.items():
        tdocs = docs.get(task, [])
        published = spec.published.get(task, [])
        # Published columns we do not compute yet (e.g. PaSST) still show, with our cells dashed.
        metrics = list(tspec.metrics) + sorted({m for p in published for m in p.values if m not in tspec.metrics})
        rows = rows_from_results(tdocs, metrics)
        higher = {m: (METRICS.entry(m).load().higher_is_better if m in METRICS else spec.higher_is_better.get(m, True))
                  for m in metrics}
        label = TASK_TITLES.get(task, task)
        parts += [f"## {label}", "", render_table(rows, metrics, higher, published), ""]
        if published:
            parts += [f"Published rows: {'; '.join(sorted({p.source for p in published}))}.", ""]
        png = bar_chart(rows, metrics, higher, f"{spec.title}: {label}", out_dir / f"{spec.name}-{task}.png")
        if png:
            parts += [f"![{label}]({png.name})", ""]
        excluded = {d["model"]: d["pairing"].get("invalid_pred", {}) for d in tdocs if d["pairing"].get("invalid_pred")}
        if excluded:
            parts += ["Excluded clips: " + "; ".join(f"{m}: {len(v)}" for m, v in excluded.items()), ""]
    flat = [d for v in docs.values() for d in v]
    parts.append(footer(flat))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.md"
    path.write_text("\n".join(parts).rstrip() + "\n")
    write_json(out_dir / f"{spec.name}.json", summarise(docs))
    return path


def summarise(docs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``values``: task -> model -> metric -> value, what the drift check compares."""
    values: dict[str, Any] = {}
    for task, tdocs in docs.items():
        for d in tdocs:
            values.setdefault(task, {})[d["model"]] = {m: res.get("value") for m, res in d["metrics"].items()}
    flat_docs = [d for v in docs.values() for d in v]
    return {"values": values, "fingerprints": sorted({d["dataset"]["fingerprint"] for d in flat_docs}),
            "code_digest": sorted({d["code"].get("code_digest") or "" for d in flat_docs}),
            "stale_checkpoints": {d["model"]: d["stale_checkpoint"] for d in flat_docs if d.get("stale_checkpoint")}}
