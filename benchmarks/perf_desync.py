"""DeSync cost on this machine's CPU (proxy weights, cache off).

``desync.small.s_per_clip``: one 10 s clip (25 fps, 128x128, 16 kHz audio) scored with
the default small proxy, decode and preprocess included, after a warm-up clip.
``desync.full.video_s_per_segment`` / ``desync.full.audio_s_per_segment``: the full-size
network (random weights) on one 16-frame video segment / one 0.64 s audio segment, median
of 3 after a warm-up. ``desync.full.s_per_10s_clip`` = 28 x (video + audio) per segment:
a 10 s clip's two windows use 28 segments of each stream (the fusion transformer is
negligible beside them).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from foleybench import media
from foleybench.api import ClipPair, ScoreContext
from foleybench.metrics import embedders
from foleybench.metrics.desync import DeSync
from foleybench.metrics.embedders import synchformer as S


def _clip(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (250, 128, 128, 3), dtype=np.uint8)
    audio = rng.normal(0, 0.1, (1, 10 * 16000)).astype(np.float32)
    return str(media.write_mp4(path, frames, 25.0, audio=audio, sample_rate=16000))


def _median(fn, n: int = 3) -> float:
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None)
    with tempfile.TemporaryDirectory() as d:
        clips = [_clip(Path(d) / f"c{i}.mp4", i) for i in range(2)]
        embedders.clear()
        DeSync(ctx, n_boot=0).update([ClipPair("warm", "v2a", pred_audio=clips[0], ref_video=clips[0])])
        m = DeSync(ctx, n_boot=0)
        t0 = time.perf_counter()
        m.update([ClipPair("c", "v2a", pred_audio=clips[1], ref_video=clips[1])])
        out["desync.small.s_per_clip"] = time.perf_counter() - t0
    net = S.build(mode="proxy", proxy_config="full").net
    vis = torch.randn(1, 1, 16, 3, 224, 224)
    aud = torch.randn(1, 1, 1, 128, 66)
    with torch.inference_mode():
        out["desync.full.video_s_per_segment"] = _median(lambda: net.extract_vfeats(vis))
        out["desync.full.audio_s_per_segment"] = _median(lambda: net.extract_afeats(aud))
    out["desync.full.s_per_10s_clip"] = 28 * (out["desync.full.video_s_per_segment"]
                                              + out["desync.full.audio_s_per_segment"])
    for k, v in out.items():
        print(f"  {k}: {v:.3g}")
    return out
