"""Argument parsing of the ``foleybench`` command line (the commands are in foleybench.cli).

Every number an option takes is checked where it is parsed (``--batch-size 0``,
``--num-workers -1``, ``--clip-seconds -2``, ``synth --fps 0``...), and every parse error
is one line, ``foleybench: error: <option or name>: <problem>``, exit code 2: no usage
block, no traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from foleybench import __version__
from foleybench.api import FoleybenchError

EPILOG = """examples:
  foleybench synth --out data/synth --clips 48 --seed 0
  foleybench generate --task v2a --model oracle --data data/synth --out runs/oracle
  foleybench score --task v2a --pred runs/oracle --ref data/synth --metrics av_align,fd_melstat --out oracle.json
  foleybench bench synthfoley && foleybench drift synthfoley
"""




class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with the harness's error format: one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument "):
            message = message[len("argument "):]  # "argument --x: ..." -> "--x: ..."
        print(f"foleybench: error: {message}", file=sys.stderr)
        sys.exit(2)


def _number(kind: type, low: float, strict: bool, high: float | None = None) -> Any:
    """An argparse ``type`` for numbers of ``kind`` above ``low`` (``strict``) or at least
    ``low``, and at most ``high``."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:d}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


positive_int = _number(int, 0, strict=True)
nonneg_int = _number(int, 0, strict=False)
positive_float = _number(float, 0.0, strict=True)
# Seeds reach numpy (0 <= seed < 2**32) and torch: outside, a traceback after the set-up.
seed_int = _number(int, 0, strict=False, high=2 ** 32 - 1)
MAX_WORKERS = 256  # decoding processes: more is a typo (each is a Python process with torch)
workers_int = _number(int, 0, strict=False, high=MAX_WORKERS)


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
    p.add_argument("--batch-size", type=positive_int, default=8, help="clips per embedder batch")
    p.add_argument("--num-workers", type=workers_int, default=0, help="decoding worker processes")
    p.add_argument("--batch-invariant", action=argparse.BooleanOptionalAction, default=None,
                   help="run embedders one clip per forward pass, so no clip's values depend on the "
                        "other clips in its batch (default: on for CPU, off for CUDA)")
    p.add_argument("--no-amp", action="store_true", help="full precision on GPU too")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--clip-seconds", type=positive_float, default=None,
                   help="truncate audio to this many seconds before embedding (VGGSound V2A protocol: 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _shard_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", metavar="I/N",
                   help="independent job I of N (no network between jobs): only the clips of shard I "
                        "(foleybench.distributed.SHARD_RULE). score: --out is then a state file for "
                        "`foleybench merge`. Under torchrun/srun ranks shard themselves; no --shard")


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
        if not value.strip():  # YAML reads "" as null, which would quietly mean "the default"
            raise FoleybenchError(f"--opt {item!r}: no value after '='")
        if key in out.get(metric, {}):
            raise FoleybenchError(f"--opt {metric}.{key}: given twice ({out[metric][key]!r} and {value!r}); keep one")
        out.setdefault(metric, {})[key] = yaml.safe_load(value)
    return out


def build_parser(cmds: Any) -> argparse.ArgumentParser:
    """The parser; ``cmds`` is the module holding the ``cmd_*`` functions (foleybench.cli)."""
    ap = OneLineErrorParser(prog="foleybench", description="Score video-to-audio and audio-to-video "
                                 "generators with one pipeline.", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"foleybench {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered names, one per line")
    p.add_argument("what", choices=["models", "metrics", "datasets", "benchmarks", "embedders", "weights",
                                            "scorers", "suites"])
    p.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'fd_*'")
    p.add_argument("-l", "--long", action="store_true", help="models: also task and where the weights come from")
    p.set_defaults(fn=cmds.cmd_list)

    p = sub.add_parser("synth", help="write the procedural synthfoley dataset (DIR/{clip_id}.mp4 + manifest.csv)")
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=positive_int, default=48)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--size", type=positive_int, default=64, help="frame height and width in pixels")
    p.add_argument("--fps", type=positive_float, default=16.0)
    p.add_argument("--sample-rate", type=positive_int, default=16000)
    p.add_argument("--duration", type=positive_float, default=3.0,
                   help="clip length in seconds (at least 8 frames: a shorter length is raised, and printed)")
    p.set_defaults(fn=cmds.cmd_synth)

    for name, fn, hlp in [("generate", cmds.cmd_generate, "run a model over a dataset, one file per clip id")]:
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--task", choices=["v2a", "a2v"], required=True)
        p.add_argument("--model", required=True, help="see `foleybench list models`")
        p.add_argument("--data", required=True, help="reference folder (manifest.csv or media files)")
        p.add_argument("--dataset", choices=["vggsound"], help="read --data as a VGGSound clip folder")
        p.add_argument("--split", default=None)
        p.add_argument("--out", required=True)
        p.add_argument("--limit", type=nonneg_int, help="only the first N clips of the manifest")
        p.add_argument("--device", default="auto")
        p.add_argument("--seed", type=seed_int, default=0)
        p.add_argument("--batch-size", type=positive_int, default=None,
                       help="clips per generation batch (default: the model's own, else 4)")
        _shard_opt(p)
        p.set_defaults(fn=fn)

    p = sub.add_parser("score", help="score a folder of generated files against a reference set")
    p.add_argument("--task", choices=["v2a", "a2v"], required=True)
    p.add_argument("--pred", required=True, help="V2A: DIR/{clip_id}.wav|.flac; A2V: DIR/{clip_id}.mp4 "
                   "(other names: --pred-pattern)")
    p.add_argument("--pred-pattern", metavar="TEMPLATE|MAP.csv",
                   help="how prediction files are named, explicitly: a template with {id} (clip id) and "
                        "optionally {k} (sample index), e.g. '{id}.mp4' (V2A: the mp4's audio track), "
                        "'{id}_{k}.flac', '{id}/{k}.wav'; or a CSV with columns file,clip_id[,sample]. "
                        "Several samples per clip are scored each against the reference, then combined "
                        "(docs/PROTOCOL.md); every file that does not match is listed in the results")
    p.add_argument("--ref", required=True, help="reference folder (manifest.csv or media files) or manifest")
    p.add_argument("--dataset", choices=["vggsound"], help="read --ref as a VGGSound clip folder")
    p.add_argument("--split", default=None)
    p.add_argument("--metrics", required=True, help="comma-separated, see `foleybench list metrics`; "
                   "@SUITE for a paper's set under its protocol (`foleybench list suites`)")
    p.add_argument("--out", required=True, help="results JSON")
    p.add_argument("--model-name", help="name recorded in the results (default: the --pred folder name)")
    p.add_argument("--opt", action="append", metavar="METRIC.KEY=VALUE",
                   help="metric option, e.g. fd_panns.n_boot=100, fd_vggish.fd_inf=true, clipsim.prompt='a video of {label}'")
    _score_opts(p)
    _shard_opt(p)
    p.set_defaults(fn=cmds.cmd_score)

    p = sub.add_parser("merge", help="combine shard state files (score --shard I/N) into one results JSON")
    p.add_argument("states", nargs="+", help="the N state files of one split")
    p.add_argument("--out", required=True, help="results JSON")
    p.set_defaults(fn=cmds.cmd_merge)

    p = sub.add_parser("bench", help="run a benchmark (benchmarks/NAME.yaml) end to end")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every benchmark in benchmarks/*.yaml")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", help="dataset folder for benchmarks on real data (VGGSound)")
    p.add_argument("--runs", default="runs")
    p.add_argument("--leaderboard", default="leaderboard")
    p.add_argument("--limit", type=nonneg_int)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmds.cmd_bench)

    p = sub.add_parser("leaderboard", help="re-render leaderboard markdown from stored results")
    p.add_argument("names", nargs="*")
    p.add_argument("--runs", default="runs")
    p.add_argument("--leaderboard", default="leaderboard")
    p.set_defaults(fn=cmds.cmd_leaderboard)

    p = sub.add_parser("drift", help="compare leaderboard/NAME.json with benchmarks/expected/NAME.json")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true", help="every benchmark that has goldens in benchmarks/expected/")
    p.add_argument("--leaderboard", default="leaderboard")
    p.add_argument("--update", action="store_true", help="store today's values as the goldens")
    p.add_argument("--failures-only", action="store_true")
    p.set_defaults(fn=cmds.cmd_drift)

    p = sub.add_parser("weights", help="pretrained checkpoints: list, fetch (needs network), verify")
    p.add_argument("action", choices=["list", "fetch", "verify"])
    p.add_argument("names", nargs="*")
    p.add_argument("--weights-dir")
    p.set_defaults(fn=cmds.cmd_weights)

    p = sub.add_parser("embed", help="write embeddings of wav/flac/mp4 inputs to FILE.npy (+ index)")
    p.add_argument("--embedder", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("inputs", nargs="+")
    _score_opts(p)
    p.set_defaults(fn=cmds.cmd_embed)

    p = sub.add_parser("train", help="train a model family config (FAMILY.TAG, any tag) on a dataset folder")
    p.add_argument("--model", required=True, help="e.g. wavenet_video.tiny or deepfusion.paper")
    p.add_argument("--data", help="dataset folder (default: synthfoley, 48 clips, seed 0, under runs/data)")
    p.add_argument("--out", help="checkpoint file (default for paper tags: the weights directory)")
    p.add_argument("--weights-dir", help="folder of pretrained checkpoints (default $FOLEYBENCH_WEIGHTS)")
    p.add_argument("--steps", type=positive_int)
    p.add_argument("--seed", type=seed_int, default=0)
    p.set_defaults(fn=cmds.cmd_train)
    from foleybench.curate import add_parser as add_curate  # the command lives in its own module

    add_curate(sub)
    return ap


