"""Does an embedder's output for one clip depend on the other clips in its batch?

Sharded runs (docs/SCALING.md) give every metric the rows a one-process run gives as
long as each clip's row does not depend on batch composition: a rank's batches hold
other clips than the one-process batches. This script embeds the same synthfoley clips
(6 clips of 2 s, proxy weights, CPU, 1 thread) at batch sizes 6, 4 and 1 and prints,
per embedder, whether the outputs are bit-identical and the largest absolute
difference. ``--batch-size 1`` makes every embedder's rows batch-free, hence merges
exact for every metric.

Usage: ``python benchmarks/check_batch_invariance.py [EMBEDDER ...]`` (default: all).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

VIDEO = {"c3d", "i3d", "clip"}


def main(names: list[str]) -> None:
    from foleybench import cache
    from foleybench.api import InputError, ScoreContext
    from foleybench.datasets.synthfoley import SynthConfig, generate
    from foleybench.metrics.embedders import get_embedder
    from foleybench.registry import EMBEDDERS, load_plugins

    torch.set_num_threads(1)
    load_plugins()
    names = names or EMBEDDERS.names()
    with tempfile.TemporaryDirectory() as tmp:
        man = generate(Path(tmp) / "data", 6, seed=0, cfg=SynthConfig(size=32, duration_s=2.0))
        for name in names:
            outs = {}
            for bs in (6, 4, 1):
                ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None, batch_size=bs)
                paths = [r.video if name in VIDEO else r.audio_source for r in man]
                outs[bs] = cache.embed_files(get_embedder(name, ctx), paths, ctx)
            pairs = [(a, b) for bs in (4, 1) for a, b in zip(outs[6], outs[bs])
                     if not isinstance(a, InputError) and not isinstance(b, InputError)]
            if not pairs:
                print(f"{name:10s} no clip embedded (inputs too short for it)")
                continue
            same = all(np.array_equal(a, b) for a, b in pairs)
            diff = max(float(np.max(np.abs(a - b))) for a, b in pairs)
            scale = max(float(np.max(np.abs(a))) for a, _ in pairs)
            print(f"{name:10s} bit-identical across batch sizes: {same!s:5s}  max |diff| {diff:.3g} "
                  f"(max |value| {scale:.3g})")


if __name__ == "__main__":
    main(sys.argv[1:])
