"""Embedding throughput per registered embedder on this machine (proxy weights).

``embedding.<name>.clips_per_s``: clips embedded per second, decode and preprocess
included, cache off, after one warm-up batch. Audio embedders get 8 s mono clips
(the VGGSound V2A protocol length), video embedders 64x64 clips of 2 s at 16 fps, the
synthfoley default, so figures compare across commits on the same machine.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from foleybench import media
from foleybench.api import ScoreContext
from foleybench.cache import cached_apply
from foleybench.metrics.embedders import get_embedder
from foleybench.registry import EMBEDDERS

N_CLIPS = 8


def _clips(tmp: Path) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(0)
    wavs, mp4s = [], []
    for i in range(N_CLIPS):
        wavs.append(str(media.write_wav(tmp / f"a{i}.wav", rng.normal(0, 0.1, (1, 8 * 16000)), 16000)))
        frames = rng.integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
        audio = rng.normal(0, 0.1, (1, 2 * 16000)).astype(np.float32)
        mp4s.append(str(media.write_mp4(tmp / f"v{i}.mp4", frames, 16.0, audio=audio, sample_rate=16000)))
    return wavs, mp4s


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None, batch_size=N_CLIPS)
    with tempfile.TemporaryDirectory() as d:
        wavs, mp4s = _clips(Path(d))
        for name in EMBEDDERS.names():
            try:
                emb = get_embedder(name, ctx)
            except Exception as exc:  # absent optional embedders are reported, not fatal
                print(f"  {name}: skipped ({type(exc).__name__}: {exc})")
                continue
            paths = wavs if emb.kind == "audio" else mp4s
            cached_apply(emb, paths[:2], ctx)  # warm-up
            t0 = time.perf_counter()
            res = cached_apply(emb, paths, ctx)
            dt = time.perf_counter() - t0
            if any(isinstance(r, Exception) for r in res):
                print(f"  {name}: failed on the benchmark clips: {[r for r in res if isinstance(r, Exception)][:1]}")
                continue
            out[f"embedding.{name}.clips_per_s"] = len(paths) / dt
            print(f"  {name}: {len(paths) / dt:.2f} clips/s")
    return out
