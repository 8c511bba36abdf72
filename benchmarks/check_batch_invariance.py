"""Does an embedder's output for one clip depend on the other clips in its batch?

Sharded runs (docs/SCALING.md) give every metric the rows a one-process run gives as
long as each clip's row does not depend on batch composition: a rank's batches hold
other clips than the one-process batches. This script embeds the same synthfoley clips
(6 clips of 2 s, proxy weights, CPU, 1 thread) at batch sizes 6, 4 and 1 and prints,
per embedder, whether the outputs are bit-identical and the largest absolute
difference. By default (CPU) embedders run one clip per forward pass (``ScoreContext.batch_invariant``,
``--batch-invariant``), so every row should be bit-identical; ``--batched`` measures the
batched forward (``--no-batch-invariant``, the CUDA default), whose rows differ in the
last bits with batch composition.

``--values``: the metric level instead. 12 clips, the ``noise`` model's predictions,
each metric scored at batch sizes 8 and 3; prints the relative difference of the values
and intervals (what a sharded run can differ by from a one-process run).

Usage: ``python benchmarks/check_batch_invariance.py [--batched] [EMBEDDER ...]`` (default:
all), or ``python benchmarks/check_batch_invariance.py [--batched] --values``.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

VIDEO = {"c3d", "i3d", "clip"}


BATCHED = False  # --batched: ScoreContext(batch_invariant=False)


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
                ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None, batch_size=bs,
                                   batch_invariant=False if BATCHED else None)
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


def values() -> None:
    from foleybench.api import ScoreContext
    from foleybench.datasets.synthfoley import SynthConfig, generate
    from foleybench.runner import generate as run_generate
    from foleybench.runner import score

    torch.set_num_threads(1)
    suites = (("v2a", ["fd_panns", "fd_vggish", "kl_panns", "is_panns", "ib_score"]),
              ("a2v", ["fvd", "is_c3d", "clipsim"]))
    with tempfile.TemporaryDirectory() as tmp:
        man = generate(Path(tmp) / "data", 12, seed=0, cfg=SynthConfig(size=32, duration_s=2.0))
        for task, metrics in suites:
            pred = Path(tmp) / f"pred_{task}"
            run_generate(task, "noise", man, pred, device="cpu")
            docs = {bs: score(task, pred, man, metrics, ScoreContext(device="cpu", proxy=True, cache_dir=None,
                                                                     batch_size=bs,
                                                                     batch_invariant=False if BATCHED else None))
                    for bs in (8, 3)}
            for name in metrics:
                a, b = docs[8]["metrics"][name], docs[3]["metrics"][name]
                if a["value"] is None or b["value"] is None:
                    print(f"{name:10s} no value")
                    continue
                rel = abs(a["value"] - b["value"]) / max(abs(a["value"]), 1e-300)
                ci = (max(abs(x - y) / max(abs(x), 1e-300) for x, y in zip(a["ci"], b["ci"]))
                      if a.get("ci") and b.get("ci") else None)
                print(f"{name:10s} identical: {a['value'] == b['value'] and a.get('ci') == b.get('ci')!s:5s} "
                      f"value rel. diff {rel:.3g}" + ("" if ci is None else f", interval rel. diff {ci:.3g}"))


if __name__ == "__main__":
    args = sys.argv[1:]
    BATCHED = "--batched" in args
    args = [a for a in args if a != "--batched"]
    print("forward:", "batched (--no-batch-invariant)" if BATCHED else "one clip per pass (CPU default)")
    values() if args == ["--values"] else main(args)
