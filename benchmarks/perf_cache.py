"""Embedding-cache speed-up: the same `score` twice, cold cache then warm.

``cache.score_first_s``, ``cache.score_second_s`` and ``cache.rescore_speedup`` for the
audio evaluators (fd_vggish, fd_panns, kl_panns, is_panns with proxy weights) on 32
synthfoley clips of 8 s (the VGGSound V2A protocol length), noise predictions against
the references, the whole `score` path included (pairing, validation, embedding,
statistics). The target is a second run at least 10x faster than the first. What the
cache cannot save is fixed per run: validation decodes, FD statistics and the 200-draw
bootstrap of fd_vggish (about 2 s here), so tiny toy sets show smaller ratios.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from foleybench.api import ScoreContext
from foleybench.datasets.synthfoley import SynthConfig
from foleybench.datasets.synthfoley import generate as synth
from foleybench.metrics import embedders
from foleybench.runner import generate, score

METRICS = ["fd_vggish", "fd_panns", "kl_panns", "is_panns"]


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        manifest = synth(d / "data", 32, seed=5, cfg=SynthConfig(duration_s=8.0))
        generate("v2a", "noise", manifest, d / "pred", seed=0, device="cpu")
        ctx = ScoreContext(device="cpu", proxy=True, cache_dir=str(d / "cache"))
        embedders.get_embedder("panns", ctx)  # build the networks outside the timed runs
        embedders.get_embedder("vggish", ctx)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            score("v2a", d / "pred", manifest, METRICS, ctx)
            times.append(time.perf_counter() - t0)
    return {"cache.score_first_s": times[0], "cache.score_second_s": times[1],
            "cache.rescore_speedup": times[0] / times[1]}
