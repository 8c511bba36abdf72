"""``make perf``: speed benchmarks -> leaderboard/perf.json (flat dotted names) and perf.md.

Each ``benchmarks/perf_*.py`` module exposes ``run() -> dict[str, float]``; this script
runs them in turn, merges their figures, and records the machine they ran on. Timing
habits (warm-up, medians of repeats) live in each module. A module that fails is
reported and the others still run.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "leaderboard"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def main(argv: list[str]) -> int:
    only = set(argv)
    figures: dict[str, float] = {}
    failed: dict[str, str] = {}
    for path in sorted(HERE.glob("perf_*.py")):
        if only and path.stem not in only:
            continue
        t0 = time.time()
        print(f"[perf] {path.stem} ...", flush=True)
        try:
            res = _load(path).run()
            figures.update({k: float(v) for k, v in res.items()})
        except Exception as exc:  # one broken benchmark must not hide the others
            failed[path.stem] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        print(f"[perf] {path.stem} done in {time.time() - t0:.1f} s", flush=True)
    OUT.mkdir(exist_ok=True)
    if only and (OUT / "perf.json").is_file():  # a partial run updates its own figures only
        figures = {**json.loads((OUT / "perf.json").read_text()), **figures}
    (OUT / "perf.json").write_text(json.dumps(dict(sorted(figures.items())), indent=2) + "\n")
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
               f"{torch.__version__}, threads {torch.get_num_threads()}, "
               f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only'}")
    lines = ["# Performance", "", f"Machine: {machine}. Created {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             "", "| figure | value |", "|---|---|"]
    lines += [f"| `{k}` | {v:.4g} |" for k, v in sorted(figures.items())]
    if failed:
        lines += ["", "Failed benchmarks:", ""] + [f"- {k}: {v}" for k, v in failed.items()]
    (OUT / "perf.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT / 'perf.json'} and {OUT / 'perf.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
