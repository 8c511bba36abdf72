"""Performance regression canary for CI: a quick subset of ``make perf``'s ratios against
the committed leaderboard/perf.json. Warns, never fails.

Ratios only (both contenders timed side by side in this process, so a slower or busier
CI machine moves both), each a small version of its perf module's measurement:

- ``frechet.d2048.speedup``: our Frechet distance vs scipy's sqrtm route at d = 2048;
- ``generation.av_transformer.cache_speedup``: cached vs naive generation;
- ``embedding.vggish.ratio_vs_torchvggish``: when the peer package is installed.

A ratio below half its committed value prints ``WARNING: perf canary ...``. The script
exits 0 whatever it finds (a crash in it is reported as a warning too), writes nothing
in the repository (its JSON goes to ``$FOLEYBENCH_CANARY_OUT``, default
``$TMPDIR/foleybench-perf-canary.json``) and takes about a minute on a quiet machine.
Run: ``python benchmarks/perf_canary.py``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMITTED = HERE.parent / "leaderboard" / "perf.json"
DROP = 0.5  # warn when a ratio falls below this fraction of the committed one


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def measure() -> dict[str, float]:
    out: dict[str, float] = {}
    fr = _load("perf_frechet")
    fr._interleaved_medians = _no_warmup_medians  # one call per route: sqrtm alone takes ~10 s
    out.update({k: v for k, v in fr.run(repeats=1).items() if k == "frechet.d2048.speedup"})
    gen = _load("perf_generation").run(repeats=1, families=("av_transformer",))
    out.update({k: v for k, v in gen.items() if k.endswith(".cache_speedup")})
    try:
        res = _load("perf_peers").run(repeats=1, panns_too=False)
        out.update({k: v for k, v in res.items() if k == "embedding.vggish.ratio_vs_torchvggish"})
    except Exception as exc:  # an absent peer is not a regression
        print(f"perf canary: peer embedding ratio skipped ({type(exc).__name__}: {exc})")
    return out


def _no_warmup_medians(fns, repeats):
    times, results = {}, {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        results[k] = fn()
        times[k] = time.perf_counter() - t0
    return {k: (times[k], results[k]) for k in fns}


def compare(now: dict[str, float], committed: dict[str, float]) -> list[str]:
    """Warning lines for ratios that dropped below DROP x their committed value."""
    warnings = []
    for k, v in sorted(now.items()):
        ref = committed.get(k)
        if not isinstance(ref, (int, float)) or ref <= 0:
            continue
        if v < DROP * ref:
            warnings.append(f"WARNING: perf canary: {k} = {v:.3g}, below half the committed {ref:.3g} "
                            f"(leaderboard/perf.json)")
    return warnings


def main() -> int:
    t0 = time.time()
    try:
        committed = json.loads(COMMITTED.read_text()) if COMMITTED.is_file() else {}
        now = measure()
        warnings = compare(now, committed)
        out = Path(os.environ.get("FOLEYBENCH_CANARY_OUT")
                   or Path(tempfile.gettempdir()) / "foleybench-perf-canary.json")
        out.write_text(json.dumps({"now": now, "committed": {k: committed.get(k) for k in now},
                                   "warnings": warnings}, indent=2) + "\n")
        for k, v in sorted(now.items()):
            print(f"perf canary: {k} = {v:.3g} (committed {committed.get(k, 'none')})")
        for w in warnings:
            print(w)
        print(f"perf canary: {len(warnings)} warning(s), {time.time() - t0:.0f} s, details in {out}")
    except Exception:  # the canary must never fail the build
        print("WARNING: perf canary could not run:")
        traceback.print_exc(file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
