"""Benchmarks: a YAML spec per table, run end to end into results and a leaderboard.

Spec (benchmarks/NAME.yaml)::

    name: synthfoley
    title: ...
    dataset: {name: synthfoley, clips: 48, seed: 0, split: test}   # or {name: vggsound, root: DIR}
    proxy: true            # allow seeded random-init evaluators (scores marked proxy)
    clip_seconds: null     # protocol clip length audio is cut to (VGGSound V2A: 8.0)
    tasks:
      v2a: {models: [oracle, shuffled, silence, noise], metrics: [av_align, fd_melstat]}
    published:             # optional: rows from papers, shown beside ours
      v2a: [{model: X, source: "...", values: {fd_vggish: 0.79}}]

Generated media and results go to ``runs/NAME/`` (resumable: finished clips are
skipped), the leaderboard to ``leaderboard/NAME.md`` with a bar chart PNG.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from foleybench.api import FoleybenchError, ScoreContext
from foleybench.datasets.base import Manifest
from foleybench.leaderboard import bar_chart, footer, render_table, rows_from_results
from foleybench.registry import UnknownNameError
from foleybench.results import read_json, write_json

log = logging.getLogger("foleybench")
REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"


def list_benchmarks() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.yaml"))


def load_spec(name: str) -> dict[str, Any]:
    path = Path(name) if name.endswith(".yaml") else BENCH_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UnknownNameError("benchmark", name, list_benchmarks())
    spec = yaml.safe_load(path.read_text())
    spec.setdefault("name", path.stem)
    spec["_path"] = str(path)
    return spec


def prepare_dataset(spec: dict[str, Any], runs: Path) -> Manifest:
    ds = dict(spec["dataset"])
    name = ds.pop("name")
    split = ds.pop("split", None)
    if name == "synthfoley":
        from foleybench.datasets.synthfoley import SynthFoley

        root = Path(ds.pop("root", runs / "data" / f"synthfoley-{ds.get('clips', 48)}-s{ds.get('seed', 0)}"))
        sf = SynthFoley(root, n_clips=int(ds.get("clips", 48)), seed=int(ds.get("seed", 0)))
        return sf.manifest(split)
    if name == "vggsound":
        from foleybench.runner import open_reference

        if not ds.get("root"):
            raise FoleybenchError(f"benchmark {spec['name']!r} needs the VGGSound clip folder: "
                                  "set dataset.root or pass --data DIR")
        return open_reference(ds["root"], "vggsound", split)
    raise FoleybenchError(f"benchmark {spec['name']!r}: unknown dataset {name!r}")


def run_benchmark(name: str, *, runs_dir: str | Path = "runs", leaderboard_dir: str | Path = "leaderboard",
                  device: str = "cpu", data: str | None = None, progress: bool = True,
                  cache_dir: str | None = None, limit: int | None = None) -> dict[str, Any]:
    from foleybench.runner import generate, score

    spec = load_spec(name)
    if data:
        spec["dataset"]["root"] = data
    runs = Path(runs_dir) / spec["name"]
    if spec.get("evaluate"):
        return run_evaluation(spec, runs, Path(runs_dir), Path(leaderboard_dir), progress)
    if spec["dataset"]["name"] != "synthfoley" and not spec["dataset"].get("root"):
        # Real-data tables cannot run without the clips: show the published rows alone,
        # and say so, rather than fail the whole `make bench`.
        log.warning("%s: no --data given for dataset %r; rendering published rows only",
                    spec["name"], spec["dataset"]["name"])
        spec["not_run"] = (f"Our rows were not run here: they need the {spec['dataset']['name']} clips "
                           f"(`foleybench bench {spec['name']} --data DIR`).")
        render(spec, runs, Path(leaderboard_dir))
        return {}
    manifest = prepare_dataset(spec, Path(runs_dir)).limit(limit)
    stale = report_stale([m for t in spec.get("tasks", {}).values() for m in t["models"]],
                         manifest.root if _is_training_set(spec["dataset"]) else None)
    ctx = ScoreContext(device=device, proxy=bool(spec.get("proxy", False)),
                       cache_dir=cache_dir or str(Path(runs_dir) / "cache"), progress=progress,
                       clip_seconds=spec.get("clip_seconds"), seed=int(spec.get("seed", 0)))
    out: dict[str, Any] = {}
    for task, tspec in spec.get("tasks", {}).items():
        for model in tspec["models"]:
            pred = runs / task / model / "media"
            gen = generate(task, model, manifest, pred, seed=ctx.seed, device=device, progress=progress)
            doc = score(task, pred, manifest, tspec["metrics"], ctx, metric_opts=tspec.get("metric_options"),
                        extra={"benchmark": spec["name"], "model": model, "stale_checkpoint": stale.get(model),
                               "generation": {k: gen[k] for k in ("params", "seed", "failures", "generated",
                                                                  "resumed")}})
            write_json(runs / "results" / f"{task}__{model}.json", doc)
            out[f"{task}/{model}"] = doc
            log.info("%s %s %s", spec["name"], task, model)
    render(spec, runs, Path(leaderboard_dir))
    return out


def run_evaluation(spec: dict[str, Any], runs: Path, runs_root: Path, out_dir: Path,
                   progress: bool) -> dict[str, Any]:
    """Benchmarks that are not generate-then-score (a paper's training-loss table).

    ``evaluate: module:function`` is called with the dataset folder and returns plain
    data; ``render: module`` supplies ``render_markdown``, ``bar_chart`` and
    ``flat_values``. Shipped checkpoints are used as they are: a stale one is reported
    and its column marked, never retrained here (that is ``make train``).
    """
    import importlib

    from foleybench.registry import Entry
    from foleybench.results import provenance_block

    manifest = prepare_dataset({**spec, "dataset": {**spec["dataset"], "split": None}}, runs_root)
    stale = report_stale(spec.get("models", []), manifest.root if _is_training_set(spec["dataset"]) else None)
    result = Entry("evaluate", spec["evaluate"]).load()(manifest.root)
    result["stale"] = stale
    doc = {"benchmark": spec["name"], "stale_checkpoints": stale, "result": result,
           "dataset": {"name": manifest.name or "synthfoley", "root": str(manifest.root),
                       "fingerprint": manifest.fingerprint()}, **provenance_block()}
    write_json(runs / "results" / "evaluation.json", doc)
    rmod = importlib.import_module(spec["render"])
    png = rmod.bar_chart(result, out_dir / f"{spec['name']}.png")
    code = doc["code"]
    text = [f"# {spec.get('title', spec['name'])}", "", spec.get("description", "").strip(), "",
            rmod.render_markdown(result, spec, png.name), "",
            f"Dataset fingerprint `{doc['dataset']['fingerprint'][:16]}`; foleybench {code['harness_version']}, "
            f"code digest `{code['code_digest'][:16]}`."]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{spec['name']}.md").write_text("\n".join(text).rstrip() + "\n")
    write_json(out_dir / f"{spec['name']}.json", {"values": rmod.flat_values(result),
                                                   "fingerprints": [doc["dataset"]["fingerprint"]],
                                                   "code_digest": code["code_digest"],
                                                   "stale_checkpoints": stale})
    return doc


def _is_training_set(ds: dict[str, Any]) -> bool:
    """True for the synthfoley set the shipped checkpoints are trained on (48 clips, seed 0):
    only there is a checkpoint's data fingerprint compared with the data in hand."""
    return ds.get("name") == "synthfoley" and int(ds.get("clips", 48)) == 48 and int(ds.get("seed", 0)) == 0


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


def collect(runs: Path, spec: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    docs: dict[str, list[dict[str, Any]]] = {}
    for task, tspec in spec.get("tasks", {}).items():
        for model in tspec["models"]:
            p = runs / "results" / f"{task}__{model}.json"
            if p.is_file():
                docs.setdefault(task, []).append(read_json(p))
    return docs


def render(spec: dict[str, Any], runs: Path, out_dir: Path) -> Path:
    """Write leaderboard/NAME.md (+ NAME-TASK.png) from runs/NAME/results."""
    docs = collect(runs, spec)
    title = spec.get("title", spec["name"])
    parts = [f"# {title}", "", spec.get("description", "").strip(), ""]
    if spec.get("not_run"):
        parts += [f"> {spec['not_run']}", ""]
    for task, tspec in spec.get("tasks", {}).items():
        tdocs = docs.get(task, [])
        # Published columns we do not compute yet (e.g. PaSST) still show, with our cells dashed.
        metrics = list(tspec["metrics"]) + sorted({m for p in spec.get("published", {}).get(task, [])
                                                   for m in p["values"] if m not in tspec["metrics"]})
        rows, higher = rows_from_results(tdocs, metrics)
        for p in spec.get("published", {}).get(task, []):
            for m, hib in p.get("higher_is_better", {}).items():
                higher.setdefault(m, hib)
        for m, hib in spec.get("higher_is_better", {}).items():
            higher.setdefault(m, hib)
        published = spec.get("published", {}).get(task, [])
        label = {"v2a": "video → audio", "a2v": "audio → video"}.get(task, task)
        parts += [f"## {label}", "", render_table(rows, metrics, higher, published), ""]
        if published:
            srcs = sorted({p["source"] for p in published if p.get("source")})
            parts += [f"Published rows: {'; '.join(srcs)}.", ""]
        png = bar_chart(rows, metrics, higher, f"{title}: {label}", out_dir / f"{spec['name']}-{task}.png")
        if png:
            parts += [f"![{label}]({png.name})", ""]
        excluded = {d["model"]: d["pairing"].get("invalid_pred", {}) for d in tdocs if d["pairing"].get("invalid_pred")}
        if excluded:
            parts += ["Excluded clips: " + "; ".join(f"{m}: {len(v)}" for m, v in excluded.items()), ""]
    flat = [d for v in docs.values() for d in v]
    parts.append(footer(flat))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec['name']}.md"
    path.write_text("\n".join(parts).rstrip() + "\n")
    write_json(out_dir / f"{spec['name']}.json", summarise(docs))
    return path


def summarise(docs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Flat ``task/model/metric -> value`` map: what the drift check compares."""
    flat: dict[str, Any] = {}
    for task, tdocs in docs.items():
        for d in tdocs:
            for m, res in d["metrics"].items():
                flat[f"{task}/{d['model']}/{m}"] = res.get("value")
    flat_docs = [d for v in docs.values() for d in v]
    return {"values": flat, "fingerprints": sorted({d["dataset"]["fingerprint"] for d in flat_docs}),
            "code_digest": sorted({d["code"].get("code_digest") or "" for d in flat_docs}),
            "stale_checkpoints": {d["model"]: d["stale_checkpoint"] for d in flat_docs if d.get("stale_checkpoint")}}
