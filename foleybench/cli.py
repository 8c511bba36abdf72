"""The ``foleybench`` command line. ``foleybench COMMAND --help`` explains each command."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from foleybench import __version__
from foleybench.api import FoleybenchError, ScoreContext

EPILOG = """examples:
  foleybench synth --out data/synth --clips 48 --seed 0
  foleybench generate --task v2a --model oracle --data data/synth --out runs/oracle
  foleybench score --task v2a --pred runs/oracle --ref data/synth --metrics av_align,fd_melstat --out oracle.json
  foleybench bench synthfoley && foleybench drift synthfoley
"""


def _ctx(a: argparse.Namespace) -> ScoreContext:
    """The run context; ``--checkpoint`` names are checked against the embedder registry
    (did-you-mean error) and their files for existence, before any work."""
    from foleybench.registry import EMBEDDERS, load_plugins

    ckpts = {}
    for item in a.checkpoint or []:
        name, _, path = item.partition("=")
        if not path:
            if not getattr(a, "embedder", None):
                raise FoleybenchError(f"--checkpoint expects NAME=FILE, got {item!r}")
            name, path = a.embedder, item  # `embed --checkpoint FILE` names the one embedder
        load_plugins()
        EMBEDDERS.entry(name)  # UnknownNameError with close matches
        if not Path(path).expanduser().is_file():
            raise FoleybenchError(f"--checkpoint {item!r}: {path} is not a file")
        ckpts[name] = path
    return ScoreContext(device=a.device, proxy=a.proxy, checkpoints=ckpts,
                        cache_dir=None if a.no_cache else a.cache_dir, batch_size=a.batch_size,
                        amp=not a.no_amp, seed=a.seed, clip_seconds=a.clip_seconds,
                        num_workers=a.num_workers, progress=not a.quiet)


def _score_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--proxy", action="store_true",
                   help="use seeded random-init evaluators when pretrained weights are absent (labelled proxy)")
    p.add_argument("--checkpoint", action="append", metavar="[NAME=]FILE",
                   help="use FILE as the checkpoint of embedder NAME, loaded strictly (every key and "
                        "shape must fit). The upstream file (its published checksum matches) is "
                        "labelled pretrained; any other file is labelled custom with its sha256 and "
                        "marked on the leaderboard")
    p.add_argument("--weights-dir", help="folder of pretrained checkpoints (default $FOLEYBENCH_WEIGHTS)")
    p.add_argument("--cache-dir", default=str(Path("~/.cache/foleybench/embeddings").expanduser()),
                   help="embedding cache folder (content-keyed)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.add_argument("--batch-size", type=int, default=8, help="clips per embedder batch")
    p.add_argument("--num-workers", type=int, default=0, help="decoding worker processes")
    p.add_argument("--no-amp", action="store_true", help="full precision on GPU too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip-seconds", type=float, default=None,
                   help="truncate audio to this many seconds before embedding (VGGSound V2A protocol: 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_opts(items: list[str] | None, names: list[str]) -> dict[str, dict[str, Any]]:
    """``METRIC.KEY=VALUE`` items -> {metric: {key: value}}; values parsed as YAML scalars."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        lhs, eq, value = item.partition("=")
        metric, dot, key = lhs.partition(".")
        if not (eq and dot and key):
            raise FoleybenchError(f"--opt expects METRIC.KEY=VALUE, got {item!r}")
        if metric not in names:
            raise FoleybenchError(f"--opt {item!r}: metric {metric!r} is not among --metrics {names}")
        out.setdefault(metric, {})[key] = yaml.safe_load(value)
    return out


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


def cmd_synth(a: argparse.Namespace) -> int:
    from foleybench.datasets.synthfoley import SynthConfig, generate

    cfg = SynthConfig(size=a.size, fps=a.fps, sample_rate=a.sample_rate, duration_s=a.duration)
    m = generate(a.out, a.clips, seed=a.seed, cfg=cfg, progress=True)
    print(f"wrote {len(m)} clips and {Path(a.out) / 'manifest.csv'} (fingerprint {m.fingerprint()[:16]})")
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from foleybench.runner import generate, open_reference

    manifest = open_reference(a.data, a.dataset, a.split)
    idx = generate(a.task, a.model, manifest, a.out, limit=a.limit, seed=a.seed, device=a.device,
                   batch_size=a.batch_size, progress=True)
    print(f"{a.model}: generated {idx['generated']}, resumed {idx['resumed']}, failed {len(idx['failures'])} "
          f"-> {a.out}")
    for cid, why in idx["failures"].items():
        print(f"  excluded {cid}: {why}", file=sys.stderr)
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    from foleybench import weights
    from foleybench.registry import METRICS, load_plugins
    from foleybench.results import write_json
    from foleybench.runner import open_reference, score

    load_plugins()
    names = [m for m in a.metrics.split(",") if m]
    for n in names:  # unknown names fail before any file is touched
        METRICS.entry(n)
    weights.set_weights_dir(a.weights_dir)
    ctx = _ctx(a)
    manifest = open_reference(a.ref, a.dataset, a.split)
    doc = score(a.task, a.pred, manifest, names, ctx, extra={"model": a.model_name or Path(a.pred).name},
                metric_opts=parse_opts(a.opt, names))
    write_json(a.out, doc)
    p = doc["pairing"]
    print(f"scored {p['n_scored_pairs']} clips ({len(p['missing_pred'])} without prediction, "
          f"{len(p['unpaired_pred'])} predictions without reference, {len(p['invalid_pred'])} invalid)")
    for name, r in doc["metrics"].items():
        ci = f" [{r['ci'][0]:.4g}, {r['ci'][1]:.4g}]" if r.get("ci") else ""
        val = "—" if r["value"] is None else f"{r['value']:.6g}"
        notes = "  (proxy evaluator)" if r["proxy"] else ""
        if r["excluded"]:
            notes += f"  excluded={len(r['excluded'])}"
        print(f"  {name:12s} {val}{ci}  n={r['n']}{notes}")
    for cid, why in p["invalid_pred"].items():
        print(f"  excluded {cid}: {why}", file=sys.stderr)
    print(f"wrote {a.out}")
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
    names = list_benchmarks()
    return [n for n in names if (BENCH_DIR / "expected" / f"{n}.json").is_file()] if only_with_goldens else names


def cmd_bench(a: argparse.Namespace) -> int:
    from foleybench.bench import run_benchmark

    for name in _bench_names(a):
        run_benchmark(name, runs_dir=a.runs, leaderboard_dir=a.leaderboard, device=a.device, data=a.data,
                      progress=not a.quiet, limit=a.limit)
        print(f"wrote {Path(a.leaderboard) / (name + '.md')}")
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

    weights.set_weights_dir(a.weights_dir)
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

    weights.set_weights_dir(a.weights_dir)
    return embed_command(a, _ctx(a))


def cmd_train(a: argparse.Namespace) -> int:
    from foleybench import family, weights
    from foleybench.train import default_data, record_line, train

    weights.set_weights_dir(a.weights_dir)
    fam, tag = family.split_name(a.model)
    out = a.out
    if out is None:
        if family.tag_kind(tag) != "paper":  # never write a shipped checkpoint by default
            raise FoleybenchError(f"train {a.model}: give --out FILE (`make train` retrains shipped checkpoints)")
        out = fam.checkpoint_path(tag)
    info = train(a.model, a.data or default_data(), out, steps=a.steps, seed=a.seed, progress=True)
    print(json.dumps({k: v for k, v in info.items() if not isinstance(v, (list, dict))}, indent=2))
    print(f"record for {fam.module}: {record_line(info)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="foleybench", description="Score video-to-audio and audio-to-video "
                                 "generators with one pipeline.", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"foleybench {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered names, one per line")
    p.add_argument("what", choices=["models", "metrics", "datasets", "benchmarks", "embedders", "weights", "scorers"])
    p.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'fd_*'")
    p.add_argument("-l", "--long", action="store_true", help="models: also task and where the weights come from")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("synth", help="write the procedural synthfoley dataset (DIR/{clip_id}.mp4 + manifest.csv)")
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    p.add_argument("--fps", type=float, default=16.0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--duration", type=float, default=3.0, help="clip length in seconds")
    p.set_defaults(fn=cmd_synth)

    for name, fn, hlp in [("generate", cmd_generate, "run a model over a dataset, one file per clip id")]:
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--task", choices=["v2a", "a2v"], required=True)
        p.add_argument("--model", required=True, help="see `foleybench list models`")
        p.add_argument("--data", required=True, help="reference folder (manifest.csv or media files)")
        p.add_argument("--dataset", choices=["vggsound"], help="read --data as a VGGSound clip folder")
        p.add_argument("--split", default=None)
        p.add_argument("--out", required=True)
        p.add_argument("--limit", type=int)
        p.add_argument("--device", default="auto")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--batch-size", type=int, default=4)
        p.set_defaults(fn=fn)

    p = sub.add_parser("score", help="score a folder of generated files against a reference set")
    p.add_argument("--task", choices=["v2a", "a2v"], required=True)
    p.add_argument("--pred", required=True, help="V2A: DIR/{clip_id}.wav; A2V: DIR/{clip_id}.mp4")
    p.add_argument("--ref", required=True, help="reference folder (manifest.csv or media files) or manifest")
    p.add_argument("--dataset", choices=["vggsound"], help="read --ref as a VGGSound clip folder")
    p.add_argument("--split", default=None)
    p.add_argument("--metrics", required=True, help="comma-separated, see `foleybench list metrics`")
    p.add_argument("--out", required=True, help="results JSON")
    p.add_argument("--model-name", help="name recorded in the results (default: the --pred folder name)")
    p.add_argument("--opt", action="append", metavar="METRIC.KEY=VALUE",
                   help="metric option, e.g. fd_panns.n_boot=100, fd_vggish.fd_inf=true, clipsim.prompt='a video of {label}'")
    _score_opts(p)
    p.set_defaults(fn=cmd_score)

    p = sub.add_parser("bench", help="run a benchmark (benchmarks/NAME.yaml) end to end")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every benchmark in benchmarks/*.yaml")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", help="dataset folder for benchmarks on real data (VGGSound)")
    p.add_argument("--runs", default="runs")
    p.add_argument("--leaderboard", default="leaderboard")
    p.add_argument("--limit", type=int)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("leaderboard", help="re-render leaderboard markdown from stored results")
    p.add_argument("names", nargs="*")
    p.add_argument("--runs", default="runs")
    p.add_argument("--leaderboard", default="leaderboard")
    p.set_defaults(fn=cmd_leaderboard)

    p = sub.add_parser("drift", help="compare leaderboard/NAME.json with benchmarks/expected/NAME.json")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every benchmark that has goldens in benchmarks/expected/")
    p.add_argument("--leaderboard", default="leaderboard")
    p.add_argument("--update", action="store_true", help="store today's values as the goldens")
    p.add_argument("--failures-only", action="store_true")
    p.set_defaults(fn=cmd_drift)

    p = sub.add_parser("weights", help="pretrained checkpoints: list, fetch (needs network), verify")
    p.add_argument("action", choices=["list", "fetch", "verify"])
    p.add_argument("names", nargs="*")
    p.add_argument("--weights-dir")
    p.set_defaults(fn=cmd_weights)

    p = sub.add_parser("embed", help="write embeddings of wav/flac/mp4 inputs to FILE.npy (+ index)")
    p.add_argument("--embedder", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("inputs", nargs="+")
    _score_opts(p)
    p.set_defaults(fn=cmd_embed)

    p = sub.add_parser("train", help="train a model family config (FAMILY.TAG, any tag) on a dataset folder")
    p.add_argument("--model", required=True, help="e.g. wavenet_video.tiny or deepfusion.paper")
    p.add_argument("--data", help="dataset folder (default: synthfoley, 48 clips, seed 0, under runs/data)")
    p.add_argument("--out", help="checkpoint file (default for paper tags: the weights directory)")
    p.add_argument("--weights-dir", help="folder of pretrained checkpoints (default $FOLEYBENCH_WEIGHTS)")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_train)
    from foleybench.curate import add_parser as add_curate  # the command lives in its own module
    add_curate(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(message)s")
    try:
        return int(args.fn(args) or 0)
    except FoleybenchError as exc:
        print(f"foleybench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
