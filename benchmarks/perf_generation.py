"""Generation speed of the Martel & Wagner models, cached vs naive (samples per second).

For each family at its ``tiny`` config: one clip (batch 1), the full generation loop
(video embedding per frame, network step, seeded mu-law draw), timed with
``time.perf_counter`` after a warm-up run, best of ``repeats``. The naive path
recomputes the receptive field at every sample, so its cost grows until the history
fills that field; it is timed at steady state as the difference between runs of
``rf + 3 * spf`` and ``rf + spf`` samples (2 * spf samples, all with a full window).
``generation.<family>.cache_speedup`` = cached samples/s over rf + 3 * spf samples
divided by the naive steady-state figure (goal >= 10x). Deep fusion emits a frame per
pass and is not autoregressive (no incremental state, no cache): its two numbers time
the same computation, should agree, and it has no cache_speedup. Weights are seeded random: speed does not
depend on training. Runs in about a minute on one CPU core.

Usage: ``python benchmarks/perf_generation.py`` prints the dict ``run()`` returns.
"""
from __future__ import annotations

import json
import time

import torch

from foleybench.baselines import martel_wagner as mw
from foleybench.weights import seeded_init


def _time(net: torch.nn.Module, n_samples: int, cached: bool, repeats: int) -> float:
    """Best-of-``repeats`` samples per second for one clip of ``n_samples``."""
    cfg = net.cfg
    n_fr = -(-n_samples // cfg.spf)
    video = torch.rand(1, n_fr, 3, cfg.frame_size, cfg.frame_size, generator=torch.Generator().manual_seed(0))
    best = float("inf")
    for _ in range(repeats):
        gens = [torch.Generator().manual_seed(0)]
        t0 = time.perf_counter()
        mw.generate_audio(net, video, n_samples, gens, cached=cached)
        best = min(best, time.perf_counter() - t0)
    return n_samples / best


def run(threads: int = 1, repeats: int = 2, families: tuple[str, ...] | None = None) -> dict[str, float]:
    """{"generation.<family>.cached_samples_per_s": ..., "...naive_samples_per_s": ...}."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    out: dict[str, float] = {}
    try:
        for family in families or mw.FAMILIES:
            cfg = mw.get_config(family, "tiny")
            net = seeded_init(mw.build_net(cfg), 0).eval()
            rf = getattr(net, "receptive_field", cfg.n_frames * cfg.spf)
            mw.generate_audio(net, torch.zeros(1, 1, 3, cfg.frame_size, cfg.frame_size), cfg.spf,
                              [torch.Generator().manual_seed(0)], cached=True)  # warm-up
            out[f"generation.{family}.cached_samples_per_s"] = _time(net, 8 * cfg.spf, True, repeats)
            if family == "deepfusion":
                out[f"generation.{family}.naive_samples_per_s"] = _time(net, 8 * cfg.spf, False, repeats)
                continue
            n1, n2 = rf + cfg.spf, rf + 3 * cfg.spf
            # best of ``repeats`` each: one run apiece made t2 - t1 negative on a loaded machine
            t1, t2 = n1 / _time(net, n1, False, repeats), n2 / _time(net, n2, False, repeats)
            out[f"generation.{family}.naive_samples_per_s"] = (n2 - n1) / (t2 - t1)
            # Cached throughput over the same span as the naive figure (the clip's first
            # receptive field plus 3 frames), where per-clip set-up is amortised as in use.
            out[f"generation.{family}.cached_samples_per_s_rf"] = _time(net, n2, True, repeats)
            out[f"generation.{family}.cache_speedup"] = (
                out[f"generation.{family}.cached_samples_per_s_rf"] / out[f"generation.{family}.naive_samples_per_s"])
    finally:
        torch.set_num_threads(old)
    return {k: round(v, 2) for k, v in out.items()}


if __name__ == "__main__":
    res = run()
    for fam in mw.FAMILIES:
        c, n = res[f"generation.{fam}.cached_samples_per_s"], res[f"generation.{fam}.naive_samples_per_s"]
        res[f"generation.{fam}.speedup"] = round(c / n, 1)
    print(json.dumps(res, indent=1))
