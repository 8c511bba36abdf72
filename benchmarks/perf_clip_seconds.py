"""Seconds per generated clip for every model family (issue 11: "report the seconds per
generated clip for each family in ``make perf``").

For each registered family, its shipped ``tiny`` model (or, for a family without a shipped
checkpoint, its ``debug`` config: the same network code at random init) generates a batch
of ``N_CLIPS`` synthfoley-shaped requests of ``SECONDS`` s (v2a: 64x64 frames at 16 fps
in, 16 kHz audio out; a2v: 16 kHz audio in, 64x64 video at 16 fps out), after a one-clip
warm-up; the figure is the median over ``repeats`` of wall seconds / clips, with the torch
threads the run has. Inputs are seeded noise: generation cost does not depend on content.

Figures: ``clip_seconds.<family>.<tag>`` (seconds per 3 s clip) and
``clip_seconds.<family>.<tag>.realtime`` (seconds of media per second of compute).

Usage: ``python benchmarks/perf_clip_seconds.py [FAMILY ...]`` prints the dict ``run()`` returns.
"""
from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

SECONDS = 3.0
N_CLIPS = 2
FPS = 16.0
SIZE = (64, 64)
RATE = 16000


def _requests(task: str, n: int, seed: int = 0) -> list:
    from foleybench.api import A2VRequest, V2ARequest

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if task == "v2a":
            frames = rng.integers(0, 256, (int(SECONDS * FPS), *SIZE, 3), dtype=np.uint8)
            out.append(V2ARequest(f"clip{i}", frames, FPS, "dog barking", SECONDS, RATE, seed + i))
        else:
            audio = (0.1 * rng.standard_normal((1, int(SECONDS * RATE)))).astype(np.float32)
            out.append(A2VRequest(f"clip{i}", audio, RATE, "dog barking", SECONDS, FPS, SIZE, seed + i))
    return out


def model_for(fam) -> str:
    """The family's shipped tiny model, else its debug config."""
    names = fam.model_names()
    for tag in ("tiny", "debug"):
        if f"{fam.name}.{tag}" in names:
            return f"{fam.name}.{tag}"
    return names[0]


def run(families: tuple[str, ...] | None = None, repeats: int = 3) -> dict[str, float]:
    from foleybench.family import build_model
    from foleybench.family import families as all_families

    figures: dict[str, float] = {}
    for fam in all_families():
        if families and fam.name not in families:
            continue
        name = model_for(fam)
        model = build_model(name, task=fam.task, device="cpu")
        model.generate(_requests(fam.task, 1, seed=99))  # warm-up: lazy weights, kernels
        per_clip = []
        for r in range(repeats):
            reqs = _requests(fam.task, N_CLIPS, seed=r)
            t0 = time.perf_counter()
            model.generate(reqs)
            per_clip.append((time.perf_counter() - t0) / N_CLIPS)
        med = statistics.median(per_clip)
        key = f"clip_seconds.{name}"
        figures[key] = round(med, 4)
        figures[f"{key}.realtime"] = round(SECONDS / med, 4)
        print(f"  {name} ({fam.task}): {med:.3f} s per {SECONDS:g} s clip", flush=True)
    return figures


if __name__ == "__main__":
    print(json.dumps(run(tuple(sys.argv[1:]) or None), indent=2))
