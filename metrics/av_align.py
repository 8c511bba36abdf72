"""Streaming AV-Align metric: per-clip TempoTokens AV-Align, mean over scored clips."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, ScoreContext
from foleybench.metrics.base import Excluded, PerClipMean
from foleybench.metrics.functional.av_align import PROTOCOL, av_align, default_workers, fork_pool


class AVAlign(PerClipMean):
    """AV-Align over clips (METRICS.md "AV-Align"): higher is better, in [0, 1].

    State: per-clip scores and exclusions keyed by clip id (metrics/base.py). Clips
    whose files cannot be read are excluded with the :class:`InputError` message; clips
    with no peaks in either stream are excluded and counted in ``n_no_peaks`` (the
    reference would divide by zero). Interval: 95% bootstrap over clips, ``n_boot`` draws.

    Speed: a batch's clips are scored in ``workers`` forked processes (default: the CPU
    count, ``FOLEYBENCH_AV_ALIGN_WORKERS``); a lone clip splits its optical flow over
    them instead. Per-clip results do not depend on the worker count
    (tests/test_av_align.py).
    """

    name = "av_align"
    version = "1"
    higher_is_better = True
    tasks = ("v2a", "a2v")

    def __init__(self, ctx: ScoreContext | None = None, n_boot: int = 1000, workers: int | None = None):
        super().__init__(ctx)
        self.n_boot = n_boot
        self.workers = default_workers() if workers is None else max(1, int(workers))

    def score_batch(self, pairs: Sequence[ClipPair]) -> list[float | Excluded]:
        """Score each pair's (video, audio): the clip's AV-Align or why it has none."""
        jobs = [(p.video, p.audio) for p in pairs if p.video is not None and p.audio is not None]
        n_par = max(1, min(self.workers, len(jobs)))
        pool = fork_pool(n_par) if n_par > 1 else None
        if pool is not None:
            with pool:
                done = pool.map(_score_one, [(v, a, 1) for v, a in jobs])
        else:
            done = [_score_one((v, a, self.workers)) for v, a in jobs]
        results = iter(done)
        out: list[float | Excluded] = []
        for pair in pairs:
            if pair.video is None or pair.audio is None:
                missing = "video" if pair.video is None else "audio"
                out.append(Excluded(f"no {missing} file for task {pair.task!r}"))
            else:
                out.append(next(results))
        return out

    def extras(self, ids: list[str], values: np.ndarray) -> dict[str, Any]:
        return {"per_clip": dict(zip(ids, values.tolist())), "n_no_peaks": self.n_excluded("no_peaks"),
                "excluded": self.sorted_excluded(), "protocol": PROTOCOL}

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "protocol": PROTOCOL}


def _score_one(job: tuple[str, str, int]) -> float | Excluded:
    """One clip's AV-Align or why it has none (module level: runs in forked workers)."""
    video, audio, workers = job
    try:
        res = av_align(video, audio, workers=workers)
    except InputError as e:
        return Excluded(str(e))
    if res.score is None:
        return Excluded(res.reason or "no peaks", kind="no_peaks")
    return float(res.score)
