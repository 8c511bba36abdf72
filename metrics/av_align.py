"""Streaming AV-Align metric: per-clip TempoTokens AV-Align, mean over scored clips."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, Metric, MetricValue, ScoreContext
from foleybench.metrics.functional.av_align import PROTOCOL, av_align
from foleybench.metrics.functional.bootstrap import bootstrap_ci


class AVAlign(Metric):
    """AV-Align over clips (METRICS.md "AV-Align"): higher is better, in [0, 1].

    State: per-clip (clip_id, score) and excluded (clip_id, reason) lists, so shards merge
    by concatenation. Clips whose files cannot be read are excluded with the
    :class:`InputError` message; clips with no peaks in either stream are excluded and
    counted in ``n_no_peaks`` (the reference would divide by zero).
    """

    name = "av_align"
    version = "1"
    higher_is_better = True

    def __init__(self, ctx: ScoreContext | None = None):
        self.ctx = ctx if ctx is not None else ScoreContext()
        self.scores: list[tuple[str, float]] = []
        self.excluded: list[tuple[str, str]] = []
        self.n_no_peaks = 0

    def update(self, pairs: Sequence[ClipPair]) -> list[tuple[str, str]]:
        """Score each pair's (video, audio); returns the (clip_id, reason) excluded here."""
        newly: list[tuple[str, str]] = []
        for pair in pairs:
            video, audio = pair.video, pair.audio
            if video is None or audio is None:
                missing = "video" if video is None else "audio"
                newly.append((pair.clip_id, f"no {missing} file for task {pair.task!r}"))
                continue
            try:
                res = av_align(video, audio)
            except InputError as e:
                newly.append((pair.clip_id, str(e)))
                continue
            if res.score is None:
                self.n_no_peaks += 1
                newly.append((pair.clip_id, res.reason or "no peaks"))
                continue
            self.scores.append((pair.clip_id, float(res.score)))
        self.excluded.extend(newly)
        return newly

    def merge(self, other: Metric) -> "AVAlign":
        """Concatenate another shard's clips into this one; returns self."""
        if not isinstance(other, AVAlign):
            raise TypeError(f"cannot merge {type(other).__name__} into AVAlign")
        self.scores.extend(other.scores)
        self.excluded.extend(other.excluded)
        self.n_no_peaks += other.n_no_peaks
        return self

    def compute(self) -> MetricValue:
        """Mean over scored clips with a seeded 95% percentile-bootstrap interval."""
        values = np.array([s for _, s in self.scores], dtype=np.float64)
        extras: dict[str, Any] = {
            "per_clip": {cid: s for cid, s in self.scores},
            "n_no_peaks": self.n_no_peaks,
            "excluded": [[cid, reason] for cid, reason in self.excluded],
            "protocol": PROTOCOL,
        }
        if values.size == 0:
            return MetricValue(value=None, n=0, ci=None, extras=extras)
        ci = bootstrap_ci(values, seed=self.ctx.seed)
        return MetricValue(value=float(values.mean()), n=int(values.size), ci=ci, extras=extras)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "protocol": PROTOCOL}
