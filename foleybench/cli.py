"""The ``foleybench`` command line. ``foleybench COMMAND --help`` explains each command."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from foleybench.api import FoleybenchError, ScoreContext
from foleybench.cli_args import build_parser, parse_opts  # noqa: F401 (parse_opts: re-export)


def _weights_dir(a: argparse.Namespace) -> str | None:
    """``--weights-dir``, checked: a file there would be ignored and every evaluator fall back."""
    d = getattr(a, "weights_dir", None)
    if d and Path(d).expanduser().exists() and not Path(d).expanduser().is_dir():
        raise FoleybenchError(f"--weights-dir {d}: is a file, not a folder")
    return d


class _Checkpoints(dict):
    """``--checkpoint`` files by embedder name, remembering which names an embedder looked
    up: a checkpoint no requested metric uses is said at the end, not silently ignored."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self.asked.add(key)
        return super().__contains__(key)

    def __reduce__(self) -> tuple:  # shard states and worker processes get a plain dict
        return (dict, (dict(self),))

    def unused(self) -> list[str]:
        return [f"--checkpoint {n}={f}: no requested metric uses embedder {n!r}; the file was not loaded"
                for n, f in self.items() if n not in self.asked]


def _ctx(a: argparse.Namespace) -> ScoreContext:
    """The run context; ``--checkpoint`` names are checked against the embedder registry
    (did-you-mean error) and their files for existence, before any work."""
    from foleybench.registry import EMBEDDERS, UnknownNameError, load_plugins

    ckpts = _Checkpoints()
    for item in a.checkpoint or []:
        name, _, path = item.partition("=")
        if not path:
            if not getattr(a, "embedder", None):
                raise FoleybenchError(f"--checkpoint expects NAME=FILE, got {item!r}")
            name, path = a.embedder, item  # `embed --checkpoint FILE` names the one embedder
        load_plugins()
        try:
            EMBEDDERS.entry(name)  # UnknownNameError with close matches
        except UnknownNameError as exc:
            raise FoleybenchError(f"--checkpoint {name}: {exc}") from None
        if not Path(path).expanduser().is_file():
            raise FoleybenchError(f"--checkpoint {item!r}: {path} is not a file")
        ckpts[name] = path
    if not a.no_cache and a.cache_dir:
        cache = Path(a.cache_dir).expanduser()
        if cache.exists() and not cache.is_dir():  # every entry would read as damaged
            raise FoleybenchError(f"--cache-dir {cache}: is a file, not a folder (or pass --no-cache)")
    return ScoreContext(device=a.device, proxy=a.proxy, checkpoints=ckpts,
                        cache_dir=None if a.no_cache else a.cache_dir, batch_size=a.batch_size,
                        amp=not a.no_amp, seed=a.seed, clip_seconds=a.clip_seconds,
                        num_workers=a.num_workers, progress=not a.quiet,
                        batch_invariant=a.batch_invariant)


def cmd_list(a: argparse.Namespace) -> int:
    from foleybench import registry

    registry.load_plugins()
    if a.what == "benchmarks":
        from foleybench.bench import list_benchmarks

        names = list_benchmarks()
    elif a.what == "weights":
        from foleybench import weights

        weights._load_records()
        names = sorted(weights.WEIGHTS)
    elif a.what == "suites":
        from foleybench import suites

        names = [suites.SUITES[n].line() for n in suites.names()]
    elif a.what == "scorers":
        from foleybench.curate import scorer_names as names_of

        names = names_of()
    else:
        reg = {"models": registry.MODELS, "metrics": registry.METRICS, "datasets": registry.DATASETS,
               "embedders": registry.EMBEDDERS}[a.what]
        names = reg.names(a.pattern)
        if a.long and a.what == "models":
            names = [_model_line(registry.MODELS.entry(n)) for n in names]
    print("\n".join(names))
    return 0


def _model_line(entry: Any) -> str:
    """``name  task(s)  weights``: where a model's weights come from (``list models --long``)."""
    from foleybench import family

    tasks = ",".join(entry.meta.get("tasks", ()))
    if entry.meta.get("family") == "reference":
        return f"{entry.name:32s} {tasks:8s} reference (no weights)"
    fam, tag = family.split_name(entry.name, configs_only=False)
    kind = family.tag_kind(tag)
    where = {"debug": "random-init (seeded)", "tiny": f"shipped {fam.checkpoint_path(tag)}",
             "paper": f"weights dir {fam.checkpoint_path(tag)}"}[kind]
    return f"{entry.name:32s} {tasks:8s} {where}"


MEDIA_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".aiff", ".aif", ".mp4", ".mkv", ".mov",
                  ".webm", ".avi"}
SYNTH_RATES = (8000, 192000)  # Hz: synth --sample-rate
SYNTH_MAX_GB = 2.0  # one synthfoley clip's working arrays


def cmd_synth(a: argparse.Namespace) -> int:
    from foleybench.datasets.synthfoley import MIN_FRAMES, SynthConfig, generate
    from foleybench.outputs import check_out_dir

    try:
        cfg = SynthConfig(size=a.size, fps=a.fps, sample_rate=a.sample_rate, duration_s=a.duration)
    except ValueError as exc:  # the config's own checks (size even and >= 32...)
        where = "--size" if str(exc).startswith("size") else "synth"
        raise FoleybenchError(f"{where}: {exc}") from None
    if not SYNTH_RATES[0] <= a.sample_rate <= SYNTH_RATES[1]:  # the scenes' sounds reach 2 kHz bands
        raise FoleybenchError(f"--sample-rate: must be in [{SYNTH_RATES[0]}, {SYNTH_RATES[1]}] Hz, got {a.sample_rate}")
    frames = max(MIN_FRAMES, round(a.duration * a.fps))
    drawn = max(frames * a.size * a.size * 3 * 4, a.duration * a.sample_rate * 8) / 2 ** 30  # float32 canvas, float64 audio
    if drawn > SYNTH_MAX_GB:
        raise FoleybenchError(f"--size {a.size} --fps {a.fps:g} --duration {a.duration:g} --sample-rate {a.sample_rate}: "
                              f"one clip ({frames} frames of {a.size}x{a.size}) takes {drawn:.3g} GB while it is "
                              f"drawn (limit {SYNTH_MAX_GB} GB)")
    if round(a.duration * a.fps) < MIN_FRAMES:
        # A documented rule, said out loud: scenes need a few frames to show an event.
        print(f"foleybench: note: --duration {a.duration:g} s is {a.duration * a.fps:g} frames at {a.fps:g} fps; "
              f"clips are at least {MIN_FRAMES} frames, so each is {MIN_FRAMES / a.fps:g} s", file=sys.stderr)
    check_out_dir(a.out)
    m = generate(a.out, a.clips, seed=a.seed, cfg=cfg, progress=True)
    print(f"wrote {len(m)} clips and {Path(a.out) / 'manifest.csv'} (fingerprint {m.fingerprint()[:16]})")
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from foleybench.outputs import check_out_dir
    from foleybench.registry import MODELS, load_plugins
    from foleybench.report import generation_summary
    from foleybench.runner import generate, open_reference

    load_plugins()
    MODELS.entry(a.model)  # an unknown name fails before any file is read (did-you-mean)
    check_out_dir(a.out)
    manifest = open_reference(a.data, a.dataset, a.split)
    idx = generate(a.task, a.model, manifest, a.out, limit=a.limit, seed=a.seed, device=a.device,
                   batch_size=a.batch_size, progress=True)
    if not _is_root():
        return 0  # rank 0 prints the run's totals
    print(f"{a.model}: generated {idx['generated']}, resumed {idx['resumed']}, failed {len(idx['failures'])} "
          f"-> {a.out}")
    print(generation_summary(idx, manifest.notes), file=sys.stderr)
    return 0


def _is_root() -> bool:
    from foleybench.distributed import current

    return current().is_root


def cmd_score(a: argparse.Namespace) -> int:
    from foleybench import suites, weights
    from foleybench.outputs import check_out_file
    from foleybench.registry import METRICS, load_plugins
    from foleybench.runner import open_reference, score

    check_out_file(a.out)  # a read-only or folder --out fails now, not after the scoring
    if Path(a.out).suffix.lower() in MEDIA_SUFFIXES:  # results are JSON: never over a prediction or reference
        raise FoleybenchError(f"--out {a.out}: names a media file; the results are JSON (e.g. results.json)")
    load_plugins()
    if not [m for m in a.metrics.split(",") if m.strip()]:
        raise FoleybenchError(f"--metrics: no metric name in {a.metrics!r} (e.g. av_align,fd_melstat; "
                              "`foleybench list metrics`)")
    names, suite = suites.expand([m for m in a.metrics.split(",") if m], a.task)  # "@av-benchmark"
    for n in names:  # unknown names fail before any file is touched (a suite's unbuilt ones are reported)
        if not suites.is_planned(n):
            METRICS.entry(n)
    weights.set_weights_dir(_weights_dir(a))
    ctx = dataclasses.replace(_ctx(a), clip_seconds=suites.clip_seconds(suite, a.clip_seconds))
    manifest = open_reference(a.ref, a.dataset, a.split)
    extra = {"model": a.model_name or Path(a.pred).name, **({"suite": suite.describe()} if suite else {})}
    opts = parse_opts(a.opt, names)
    if a.shard:
        from foleybench.distributed import write_state
        from foleybench.runner import score_shard

        state = score_shard(a.task, a.pred, manifest, names, ctx, extra=extra, metric_opts=opts,
                            pred_pattern=a.pred_pattern)
        write_state(a.out, state)
        print(f"shard {a.shard}: scored {state['n_scored']} clips; wrote state {a.out} (`foleybench merge`)")
        return 0
    doc = score(a.task, a.pred, manifest, names, ctx, extra=extra, metric_opts=opts, pred_pattern=a.pred_pattern)
    if doc is None:
        return 0  # not rank 0: rank 0 writes the merged results
    notes = ctx.checkpoints.unused() if isinstance(ctx.checkpoints, _Checkpoints) else []
    if Path(a.pred).resolve() == Path(manifest.root).resolve():
        notes.append(f"--pred {a.pred} is the reference folder: the reference's own files were scored as predictions")
    doc["pairing"]["notes"] = list(doc["pairing"].get("notes", [])) + notes
    return _write_scores(a.out, doc)


def cmd_merge(a: argparse.Namespace) -> int:
    from foleybench.merge import merge_files
    from foleybench.outputs import check_out_file

    check_out_file(a.out)
    return _write_scores(a.out, merge_files(a.states))


def _write_scores(out: str, doc: dict[str, Any]) -> int:
    from foleybench.report import score_summary
    from foleybench.results import write_json

    write_json(out, doc)
    p = doc["pairing"]
    print(f"scored {p['n_scored_pairs']} clips ({len(p['missing_pred'])} without prediction, "
          f"{len(p['unpaired_pred'])} predictions without reference, {len(p['invalid_pred'])} invalid)")
    if p.get("pred_pattern") is not None:
        print(f"  files: {p['n_files_matched']} matched, {p['n_files_unmatched']} unmatched, {p['n_files_scored']} "
              f"scored; samples per clip {p['samples_per_clip']}, {p['n_averaged']} averaged; "
              f"length: {p['n_cut']} cut, {p['n_excluded_length']} too short")
    for name, r in doc["metrics"].items():
        ci = f" [{r['ci'][0]:.4g}, {r['ci'][1]:.4g}]" if r.get("ci") else ""
        val = "—" if r["value"] is None else f"{r['value']:.6g}"
        notes = "  (proxy evaluator)" if r["proxy"] else ""
        if r.get("available") is False:
            notes += f"  {r['extras']['reason']}"
        if r["excluded"]:
            notes += f"  excluded={len(r['excluded'])}"
        print(f"  {name:12s} {val}{ci}  n={r['n']}{notes}")
    print(f"wrote {out}")
    print(score_summary(doc), file=sys.stderr)
    return 0


def _bench_names(a: argparse.Namespace, only_with_goldens: bool = False) -> list[str]:
    """The names given, or with --all every benchmark in benchmarks/*.yaml (with goldens, for drift)."""
    from foleybench.bench import BENCH_DIR, list_benchmarks

    if a.all and a.names:
        raise FoleybenchError("give benchmark names or --all, not both")
    if not a.all:
        if not a.names:
            raise FoleybenchError("name a benchmark (`foleybench list benchmarks`) or pass --all")
        return a.names
    if only_with_goldens:
        return [n for n in list_benchmarks() if (BENCH_DIR / "expected" / f"{n}.json").is_file()]
    return list_benchmarks(default_only=True)


def cmd_bench(a: argparse.Namespace) -> int:
    from foleybench.bench import run_benchmark
    from foleybench.outputs import check_out_dir
    from foleybench.report import score_summary

    names = _bench_names(a)
    check_out_dir(a.runs)
    check_out_dir(a.leaderboard)
    import time

    for name in names:
        t0 = time.perf_counter()
        docs = run_benchmark(name, runs_dir=a.runs, leaderboard_dir=a.leaderboard, device=a.device, data=a.data,
                      progress=not a.quiet, limit=a.limit)
        if not _is_root():
            continue  # rank 0 writes and reports
        print(f"wrote {Path(a.leaderboard) / (name + '.md')} ({time.perf_counter() - t0:.0f} s)")
        for key, doc in (docs or {}).items():
            print(score_summary(doc, title=f"{name} {key}"), file=sys.stderr)
    return 0


def cmd_leaderboard(a: argparse.Namespace) -> int:
    from foleybench.bench import list_benchmarks, load_spec, render

    for name in a.names or list_benchmarks():
        spec = load_spec(name)
        if spec.kind == "evaluate":
            print(f"skipped {name}: an evaluate benchmark is rendered when it runs (`foleybench bench {name}`)")
            continue
        path = render(spec, Path(a.runs) / spec.name, Path(a.leaderboard))
        print(f"wrote {path}")
    return 0


def cmd_drift(a: argparse.Namespace) -> int:
    from foleybench import drift
    from foleybench.bench import BENCH_DIR
    from foleybench.results import read_json

    code = 0
    for name in _bench_names(a, only_with_goldens=True):
        current = read_json(Path(a.leaderboard) / f"{name}.json")["values"]
        golden = BENCH_DIR / "expected" / f"{name}.json"
        if a.update:
            print(f"wrote {drift.update(golden, current)}")
            continue
        if not golden.is_file():
            raise FoleybenchError(f"{golden}: no goldens for {name!r} (create them with --update)")
        rc, text = drift.check(golden, current, only_failures=a.failures_only)
        print(text)
        code = max(code, rc)
    return code


def cmd_weights(a: argparse.Namespace) -> int:
    from tabulate import tabulate

    from foleybench import weights

    weights.set_weights_dir(_weights_dir(a))
    weights._load_records()
    for name in a.names:  # a misspelt name must not verify (or fetch) nothing and say all is well
        if name not in weights.WEIGHTS:
            from foleybench.registry import UnknownNameError

            raise FoleybenchError(str(UnknownNameError("weight", name, sorted(weights.WEIGHTS))))
    if a.action == "list":
        rows = weights.status()
        print(f"weights directory: {weights.weights_dir()}")
        print(tabulate([[r["name"], r["file"], r["state"], r["license"]] for r in rows],
                       headers=["name", "file", "state", "license"]))
        return 0
    if a.action == "fetch":
        for name in a.names:
            print(f"{name}: {weights.fetch(name)}")
        return 0
    bad = 0
    for r in weights.status():
        if a.names and r["name"] not in a.names:
            continue
        print(f"{r['name']:12s} {r['state']:10s} {r['file']}")
        bad += r["state"] == "BAD SHA256"
    return 1 if bad else 0


def cmd_embed(a: argparse.Namespace) -> int:
    from foleybench import weights
    from foleybench.embed import embed_command

    weights.set_weights_dir(_weights_dir(a))
    return embed_command(a, _ctx(a))


def cmd_train(a: argparse.Namespace) -> int:
    from foleybench import family, weights
    from foleybench.train import data_for, record_line, train

    weights.set_weights_dir(_weights_dir(a))
    fam, tag = family.split_name(a.model)
    out = a.out
    if out is None:
        if family.tag_kind(tag) != "paper":  # never write a shipped checkpoint by default
            raise FoleybenchError(f"train {a.model}: give --out FILE (`make train` retrains shipped checkpoints)")
        out = fam.checkpoint_path(tag)
    info = train(a.model, data_for(a.model, a.data), out, steps=a.steps, seed=a.seed, progress=True)
    print(json.dumps({k: v for k, v in info.items() if not isinstance(v, (list, dict))}, indent=2))
    print(f"record for {fam.module}: {record_line(info)}")
    return 0


# Integer settings read from the environment deep inside the metrics: checked here, at the
# start of every command, so a bad value is one line before any work, not a traceback after.
INT_ENV = {"FOLEYBENCH_AV_ALIGN_WORKERS": 1, "FOLEYBENCH_BOOTSTRAP_THREADS": 1, "FOLEYBENCH_FRECHET_THREADS": 1}
DIR_ENV = ("FOLEYBENCH_CACHE", "FOLEYBENCH_WEIGHTS")


def check_env(environ: Any = None) -> None:
    """Raise FoleybenchError naming a FOLEYBENCH_* variable whose value cannot be used."""
    import os

    env = os.environ if environ is None else environ
    for name, low in INT_ENV.items():
        text = (env.get(name) or "").strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise FoleybenchError(f"{name}={text!r}: expected an integer >= {low}") from None
        if value < low:
            raise FoleybenchError(f"{name}={text}: must be >= {low}")
    for name in DIR_ENV:
        text = env.get(name) or ""
        if text and Path(text).expanduser().exists() and not Path(text).expanduser().is_dir():
            raise FoleybenchError(f"{name}={text}: is a file, not a folder")


def main(argv: list[str] | None = None) -> int:
    args = build_parser(sys.modules[__name__]).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(message)s")
    try:
        check_env()
        if args.command in ("generate", "score", "bench"):
            from foleybench import distributed  # torchrun/srun ranks, or --shard I/N

            distributed.setup(getattr(args, "shard", None))
        try:
            return int(args.fn(args) or 0)
        finally:
            if args.command in ("generate", "score", "bench"):
                from foleybench import distributed

                distributed.teardown()
    except FoleybenchError as exc:
        print(f"foleybench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Disk full, permission denied, a path that became a folder...: the file and the
        # problem, not a traceback (foleybench's own checks catch most of these earlier).
        where = exc.filename or "foleybench"
        print(f"foleybench: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
