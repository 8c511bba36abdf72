"""Generation speed of FoleyGen-C and -P at the tiny config: KV cache vs recomputation.

For each variant: the LM alone generating the tokens of one 3 s clip (150 codec steps
of 4 codebooks at 50 steps/s, so 153 delayed columns) with guidance (the doubled batch
of the default config), seeded random weights (speed does not depend on training),
timed with ``time.perf_counter`` after a warm-up. The one 3 s clip (the issue-10 figure,
where the two differ least) runs in ``ROUNDS`` rounds of three cached runs and one
recomputed run, interleaved so that both meet the same machine (on the shared 2-core
machine a run's rate moves by a quarter from minute to minute), and each takes its best
(of 15 and of 5); the longer cases take the best of ``repeats`` (5) cached runs and one
recomputed run. Figures:

- ``foleygen.<v>.cached_tokens_per_s`` / ``recompute_tokens_per_s``: codec tokens
  (columns x codebooks) per second, and their ratio ``cache_speedup``; the same with
  ``_10s`` for a 10 s clip (500 steps), and with ``_b32`` for the 3 s clip generated as the
  harness generates it, 32 clips per batch (``FoleyGenModel.generation_batch``);
- ``foleygen.<v>.audio_s_per_s``: seconds of audio per second of the whole generator
  (visual encoder, cached LM, codec decode, resampling to 16 kHz) on the same clip;
  the shipped small codec, a seeded random LM of the tiny size.

Threads: ``threads`` (default 1). On the shared 2-core machine two intra-op threads per
process made these step-by-step loops erratic (a P run measured the cache slower than
recomputation); one thread gives stable figures. Compare figures from one run. Usage: ``python benchmarks/perf_foleygen.py``.
"""
from __future__ import annotations

import json
import time

import numpy as np
import torch

SECONDS = 3.0
LONG_SECONDS = 10.0  # recomputation is quadratic in length: the cache's gain grows with it
ROUNDS = 5  # one 3 s clip: cached and recomputed runs interleaved, best of 15 and of 5


def _lm_time(lm: torch.nn.Module, n_steps: int, use_cache: bool, repeats: int, batch: int = 1) -> float:
    from foleybench.baselines.foleygen_sample import generate_codes

    vis = torch.randn(batch, 48, lm.cfg.vis_dim, generator=torch.Generator().manual_seed(0))
    nf = torch.full((batch,), 48)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate_codes(lm, vis, nf, n_steps, [torch.Generator().manual_seed(i) for i in range(batch)], cfg_coef=3.0,
                       top_k=250, use_cache=use_cache)
        best = min(best, time.perf_counter() - t0)
    return best


def run(threads: int = 1, repeats: int = 5) -> dict[str, float]:
    from foleybench.api import V2ARequest
    from foleybench.baselines.foleygen import build_model
    from foleybench.baselines.foleygen_configs import get_config
    from foleybench.baselines.foleygen_train import FoleyGenNet
    from foleybench.weights import seeded_init

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    out: dict[str, float] = {}
    try:
        for v in ("c", "p"):
            cfg = get_config(v, "tiny")
            lm = seeded_init(FoleyGenNet(cfg), 0).lm.eval()
            _lm_time(lm, 10, True, 1)  # warm-up
            for sec, tag, batch in ((SECONDS, "", 1), (LONG_SECONDS, "_10s", 1), (SECONDS, "_b32", 32)):
                n_steps = int(sec * lm.cfg.frame_rate)
                n_tok = n_steps * lm.cfg.n_q * batch
                if batch == 1 and sec == SECONDS:  # the short case: rounds of 3 cached + 1 recomputed run
                    cached = naive = float("inf")
                    for _ in range(ROUNDS):
                        cached = min(cached, _lm_time(lm, n_steps, True, 3, batch))
                        naive = min(naive, _lm_time(lm, n_steps, False, 1, batch))
                else:
                    cached = _lm_time(lm, n_steps, True, repeats, batch)
                    naive = _lm_time(lm, n_steps, False, 1, batch)
                out[f"foleygen.{v}.cached_tokens_per_s{tag}"] = n_tok / cached
                out[f"foleygen.{v}.recompute_tokens_per_s{tag}"] = n_tok / naive
                out[f"foleygen.{v}.cache_speedup{tag}"] = naive / cached
            model = build_model(cfg, name=f"foleygen_{v}.tiny(random LM)", checkpoint=None)
            frames = np.random.default_rng(0).integers(0, 256, (int(SECONDS * 16), 64, 64, 3), dtype=np.uint8)
            req = V2ARequest("perf", frames, 16.0, "", SECONDS, 16000, 0)
            model.generate([req])  # warm-up
            t0 = time.perf_counter()
            model.generate([req])
            out[f"foleygen.{v}.audio_s_per_s"] = SECONDS / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    out["foleygen.threads"] = float(threads)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
