"""CI fails on metric drift: a small benchmark, end to end, against stored goldens.

Runs tests/data/mini-bench.yaml (synthfoley, seed 11, proxy evaluators) through the
same path as `make bench` and compares every value with tests/data/goldens/mini-bench.json
under per-metric tolerances. A change that moves a number (resampler, decoder, STFT,
an embedder's layers, the FD routine) fails here with the diff table; if the change is
intended, regenerate the goldens with `python tests/test_drift_golden.py --update` and
say why in the commit.
"""
from __future__ import annotations

import sys
from pathlib import Path

from foleybench import drift
from foleybench.bench import run_benchmark
from foleybench.results import read_json

HERE = Path(__file__).resolve().parent
SPEC = HERE / "data" / "mini-bench.yaml"
GOLDEN = HERE / "data" / "goldens" / "mini-bench.json"
TOLERANCES = {
    "default": {"abs": 1e-6, "rel": 1e-4},
    # Flow peaks and onsets on decoded H.264 are deterministic on the pinned stack:
    # rounding-level slack only.
    "av_align": {"abs": 1e-9, "rel": 0.0},
}


def current_values(tmp: Path) -> dict:
    run_benchmark(str(SPEC), runs_dir=tmp / "runs", leaderboard_dir=tmp / "lb", device="cpu", progress=False)
    return read_json(tmp / "lb" / "mini-bench.json")["values"]


def test_mini_bench_matches_goldens(tmp_path):
    values = current_values(tmp_path)
    rc, text = drift.check(GOLDEN, values)
    assert rc == 0, "\n" + text
    # The canary must still order things the way the metrics promise (proxy evaluators).
    v2a, a2v = values["v2a"], values["a2v"]
    for task in (v2a, a2v):
        for other in ("shuffled", "silence", "noise"):
            assert task["oracle"]["av_align"] > task[other]["av_align"]
    for fd in ("fd_melstat", "fd_vggish", "fd_panns", "fd_clap", "fd_encodec"):
        assert v2a["oracle"][fd] < v2a["noise"][fd], fd
    assert abs(v2a["oracle"]["kl_panns"]) < 1e-6  # KL of a clip with itself
    assert a2v["oracle"]["fvd"] < a2v["silence"]["fvd"]  # static first frame
    assert a2v["oracle"]["fvd"] < a2v["noise"]["fvd"]
    for m in ("clipsim", "ib_score"):
        assert a2v["oracle"][m] is not None and a2v["shuffled"][m] is not None


if __name__ == "__main__" and "--update" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(drift.update(GOLDEN, current_values(Path(d)), TOLERANCES))
