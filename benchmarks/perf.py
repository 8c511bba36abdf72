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

# The ratios the performance issue sets goals for: (figure, goal, what it compares).
# Each is measured side by side in one run (both contenders in the same process or
# loop), so it compares across machines better than the absolute seconds do.
RATIOS: list[tuple[str, float, str]] = [
    ("cache.rescore_speedup_short", 10.0, "first / fully cached `foleybench score`, 96 x 3 s clips, beyond start-up"),
    ("cache.rescore_speedup_8s", 10.0, "first / fully cached `foleybench score`, 32 x 8 s clips, beyond start-up"),
    ("frechet.d2048.speedup", 12.0, "scipy sqrtm route / ours, Frechet distance at d = 2048"),
    ("av_align.speedup_vs_reference", 2.0, "reference (see av_align.peer_is_reference_script) / ours, real clips"),
    ("embedding.vggish.ratio_vs_torchvggish", 1.5, "torchvggish / ours, same clips and weights, CPU"),
    ("embedding.panns.ratio_vs_panns_inference", 1.5, "panns-inference / ours, same clips and weights, CPU"),
    ("generation.av_transformer.cache_speedup", 10.0, "cached / naive generation"),
    ("generation.wavenet_video.cache_speedup", 10.0, "cached / naive generation"),
    ("generation.foleygen_c.cache_speedup", 10.0, "cached / recompute generation, 10 s clips"),
    ("generation.foleygen_p.cache_speedup", 10.0, "cached / recompute generation, 10 s clips"),
    ("foleygen.c.cache_speedup", 10.0, "cached / recompute generation, one 3 s clip, guided (issue 10)"),
    ("foleygen.p.cache_speedup", 10.0, "cached / recompute generation, one 3 s clip, guided (issue 10)"),
]
NOT_MEASURED = [
    "generation.deepfusion: not autoregressive (one frame per pass, no incremental state), no cache ratio",
    "generation.seq2seq: generation is incremental only (SampleRNN tiers carry their state); "
    "there is no naive recompute path to compare with",
]


def derived(figures: dict[str, float]) -> dict[str, float]:
    """Ratios named by family from figures other modules report under their own names."""
    out = {}
    for fam in ("c", "p"):
        k = f"foleygen.{fam}.cache_speedup_10s"
        if k in figures:
            out[f"generation.foleygen_{fam}.cache_speedup"] = figures[k]
    return out


def machine() -> dict[str, str]:
    """CPU model (from /proc/cpuinfo), cores, threads, torch, accelerator."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = "%.1f" % os.getloadavg()[0]
    except OSError:
        load = "?"
    return {
        "cpu": model, "cores": str(os.cpu_count()), "torch_threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "accelerator": f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU only",
        "load_avg_1min_at_end": load,
    }


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
        old = {k: v for k, v in json.loads((OUT / "perf.json").read_text()).items() if not k.startswith("_")}
        figures = {**old, **figures}
    figures.update(derived(figures))
    mach = machine()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    doc = {"_machine": {**mach, "date": date}, **dict(sorted(figures.items()))}
    (OUT / "perf.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["# Performance", "",
             f"Machine: {mach['cpu']}, {mach['cores']} cores, torch {mach['torch']} with {mach['torch_threads']} "
             f"threads, {mach['accelerator']}; 1-min load average {mach['load_avg_1min_at_end']} at the end "
             f"(the machine is shared: other jobs ran alongside). Run {date}.",
             "", "Timings are medians over interleaved repeats unless a module says otherwise "
             "(benchmarks/perf_*.py docstrings).", ""]
    if only:
        lines += [f"Partial run: {', '.join(sorted(only))}; every other figure is carried over from the "
                  "previous perf.json (an earlier run, possibly of older code).", ""]
    lines += ["## Ratios against goals", "", "| ratio | value | goal | met | compares |", "|---|---|---|---|---|"]
    for k, goal, what in RATIOS:
        v = figures.get(k)
        met = "-" if v is None else ("yes" if v >= goal else "**no**")
        lines.append(f"| `{k}` | {'not measured' if v is None else f'{v:.3g}x'} | >= {goal:g}x | {met} | {what} |")
    lines += ["", "Not measured:", ""] + [f"- {x}" for x in NOT_MEASURED]
    if figures.get("av_align.peer_is_reference_script") == 0.0:
        lines += ["", "AV-Align's peer here is the reference's procedure re-implemented from TempoTokens' "
                  "av_align.py (cv2.VideoCapture decode, T+1 Farneback calls with two BGR2GRAY conversions "
                  "per pair, librosa onsets; one process, clip after clip; its per-clip counts are checked "
                  "equal to ours: `av_align.ref_counts_equal`); set "
                  "FOLEYBENCH_PEER_AV_ALIGN=path/av_align.py:function to time the script itself. "
                  "`av_align.speedup_vs_serial` compares with our own serial route."]
    lines += ["", "## All figures", "", "| figure | value |", "|---|---|"]
    lines += [f"| `{k}` | {v:.4g} |" for k, v in sorted(figures.items())]
    if failed:
        lines += ["", "Failed benchmarks:", ""] + [f"- {k}: {v}" for k, v in failed.items()]
    (OUT / "perf.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT / 'perf.json'} and {OUT / 'perf.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
