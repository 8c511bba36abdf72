"""Streaming AV-Align metric: per-clip TempoTokens AV-Align, mean over scored clips."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, ScoreContext
from foleybench.metrics.base import Excluded, PerClipMean
from foleybench.metrics.functional.av_align import PROTOCOL, AVAlignResult, av_align_many, default_workers


class AVAlign(PerClipMean):
    """AV-Align over clips (METRICS.md "AV-Align"): higher is better, in [0, 1].

    State: per-clip scores and exclusions keyed by clip id (metrics/base.py). Clips
    whose files cannot be read are excluded with the :class:`InputError` message; clips
    with no peaks in either stream are excluded and counted in ``n_no_peaks`` (the
    reference would divide by zero). Interval: 95% bootstrap over clips, ``n_boot`` draws.

    Speed: a batch is scored by ``av_align_many``: each video decoded once in this
    process, the optical flow of all the batch's frame pairs spread in small chunks over
    ``workers`` forked processes (default: the CPU count, ``FOLEYBENCH_AV_ALIGN_WORKERS``),
    the next clip decoded and the audio onsets found meanwhile. Per-clip results do not
    depend on the worker count (tests/test_av_align.py).
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
        done = [_as_value(r) for r in av_align_many(jobs, self.workers)]
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


def _as_value(res: AVAlignResult | InputError) -> float | Excluded:
    """One clip's AV-Align or why it has none."""
    if isinstance(res, InputError):
        return Excluded(str(res))
    if res.score is None:
        return Excluded(res.reason or "no peaks", kind="no_peaks")
    return float(res.score)
