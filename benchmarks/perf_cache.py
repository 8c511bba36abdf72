"""Cached re-score, as a new user runs it: ``foleybench score`` twice in fresh processes.

Two sets, each scored with fd_vggish, fd_panns and kl_panns (proxy weights) against
noise predictions: ``short`` (96 synthfoley clips of 3 s) and ``8s`` (32 clips of 8 s,
the VGGSound V2A protocol length). For each set the CLI runs once on an empty embedding
cache and an empty foleybench cache folder (``FOLEYBENCH_CACHE``: file hashes, proxy
digests), as a first-time user; then again (median of ``repeats``) with every
embedding cached.

"Beyond process start-up": each run's wall time minus the median wall time of
``python -c "import foleybench.cli"`` (interpreter start-up plus the CLI's import),
measured in the same interleaved loop. Figures: ``cache.rescore_speedup_<set>`` =
(first - startup) / (cached - startup); ``cache.rescore_speedup_<set>_raw`` without the
start-up subtraction; the seconds behind them. Goal: >= 10x beyond start-up.

What the cached run skips: every embedding (foleybench.cache), every evaluator network
(built on the first cache miss only), torch and the other heavy imports (the embedders'
light modules, metrics/embedders/*_embedder.py), and the Frechet statistics (their results
memoised under the cache folder, foleybench.cache.ValueMemo).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from foleybench.datasets.synthfoley import SynthConfig
from foleybench.datasets.synthfoley import generate as synth
from foleybench.runner import generate

METRICS = "fd_vggish,fd_panns,kl_panns"
SETS = {"short": (96, 3.0), "8s": (32, 8.0)}


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({r.returncode}): {r.stderr[-2000:]}")
    return dt


def measure(name: str, n: int, seconds: float, root: Path, repeats: int) -> dict[str, float]:
    manifest = synth(root / "data", n, seed=5, cfg=SynthConfig(duration_s=seconds))
    generate("v2a", "noise", manifest, root / "pred", seed=0, device="cpu")
    env = {**os.environ, "FOLEYBENCH_CACHE": str(root / "fbcache"), "PYTHONHASHSEED": "0"}
    score = [sys.executable, "-m", "foleybench.cli", "score", "--task", "v2a", "--pred", str(root / "pred"),
             "--ref", str(manifest.root), "--metrics", METRICS, "--proxy", "--device", "cpu",
             "--cache-dir", str(root / "cache"), "--out", str(root / "out.json"), "--quiet"]
    startup_cmd = [sys.executable, "-c", "import foleybench.cli"]
    startup = [_timed(startup_cmd, env)]
    first = _timed(score, env)
    cached = []
    for _ in range(repeats):  # interleaved, so load spikes hit start-up and re-score alike
        startup.append(_timed(startup_cmd, env))
        cached.append(_timed(score, env))
    s, c = statistics.median(startup), statistics.median(cached)
    return {
        f"cache.{name}.clips": n,
        f"cache.{name}.clip_seconds": seconds,
        f"cache.{name}.startup_s": s,
        f"cache.{name}.first_s": first,
        f"cache.{name}.cached_s": c,
        f"cache.rescore_speedup_{name}": (first - s) / max(c - s, 1e-3),
        f"cache.rescore_speedup_{name}_raw": first / c,
    }


def run(repeats: int = 3, sets: tuple[str, ...] = ("short", "8s")) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in sets:
        n, seconds = SETS[name]
        with tempfile.TemporaryDirectory() as d:
            out.update(measure(name, n, seconds, Path(d), repeats))
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(sets=tuple(sys.argv[1:]) or ("short", "8s")), indent=2))
