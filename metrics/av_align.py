"""Streaming AV-Align metric: per-clip TempoTokens AV-Align, mean over scored clips."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, ScoreContext
from foleybench.metrics.base import Excluded, PerClipMean
from foleybench.metrics.functional.av_align import PROTOCOL, av_align


class AVAlign(PerClipMean):
    """AV-Align over clips (METRICS.md "AV-Align"): higher is better, in [0, 1].

    State: per-clip scores and exclusions keyed by clip id (metrics/base.py). Clips
    whose files cannot be read are excluded with the :class:`InputError` message; clips
    with no peaks in either stream are excluded and counted in ``n_no_peaks`` (the
    reference would divide by zero). Interval: 95% bootstrap over clips, ``n_boot`` draws.
    """

    name = "av_align"
    version = "1"
    higher_is_better = True
    tasks = ("v2a", "a2v")

    def __init__(self, ctx: ScoreContext | None = None, n_boot: int = 1000):
        super().__init__(ctx)
        self.n_boot = n_boot

    def score_batch(self, pairs: Sequence[ClipPair]) -> list[float | Excluded]:
        """Score each pair's (video, audio): the clip's AV-Align or why it has none."""
        out: list[float | Excluded] = []
        for pair in pairs:
            video, audio = pair.video, pair.audio
            if video is None or audio is None:
                missing = "video" if video is None else "audio"
                out.append(Excluded(f"no {missing} file for task {pair.task!r}"))
                continue
            try:
                res = av_align(video, audio)
            except InputError as e:
                out.append(Excluded(str(e)))
                continue
            if res.score is None:
                out.append(Excluded(res.reason or "no peaks", kind="no_peaks"))
            else:
                out.append(float(res.score))
        return out

    def extras(self, ids: list[str], values: np.ndarray) -> dict[str, Any]:
        return {"per_clip": dict(zip(ids, values.tolist())), "n_no_peaks": self.n_excluded("no_peaks"),
                "excluded": self.sorted_excluded(), "protocol": PROTOCOL}

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "protocol": PROTOCOL}
