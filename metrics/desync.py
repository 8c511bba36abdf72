"""DeSync: mean absolute audio-visual offset Synchformer predicts, in seconds (lower is better).

As av-benchmark computes it (evaluate.py): per clip, Synchformer compares the first 14
segments (4.8 s) of the video with the first 14 of the audio, and the last 14 with the
last 14; each comparison predicts one of 21 offsets (-2.0 ... +2.0 s in 0.2 s steps,
argmax); the clip's value is the mean of the two absolute offsets, and DeSync is the mean
over clips (av-benchmark's mean over all windows: the same number, every clip having two).
V2A pairs the reference (input) video with the generated audio; A2V the generated video
with the reference audio. A clip whose video or audio is shorter than one window
(fewer than 14 segments) is excluded with the reason (kind ``too_short``), never padded
or replaced. Preprocessing: metrics/embedders/synchformer.py.
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from foleybench.api import ClipPair, FoleybenchError, InputError, ScoreContext
from foleybench.cache import cached_apply
from foleybench.metrics.base import Excluded, PerClipMean
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.embedders.synchformer import OFFSETS, WINDOW_S, TooShort
from foleybench.metrics.embedders.synchformer_net import CONFIGS

PROTOCOL = {
    "windows": f"first and last {WINDOW_S:g} s (14 segments of 0.64 s, hop 0.32 s) of each stream",
    "offsets_s": [OFFSETS[0], OFFSETS[-1], 0.2],
    "clip_value": "mean over the two windows of |argmax offset|",
    "pairing": "v2a: reference video + generated audio; a2v: generated video + reference audio",
    "too_short": "clips with a stream under one window are excluded, never padded",
}


class DeSync(PerClipMean):
    """Mean over clips of the mean |predicted offset| of the first and last 4.8 s windows."""

    name = "desync"
    version = "1"
    higher_is_better = False
    tasks = ("v2a", "a2v")
    min_clip_s: ClassVar[float] = WINDOW_S  # shorter clips are excluded (too_short)

    def __init__(self, ctx: ScoreContext | None = None, n_boot: int = 1000, proxy_config: str = "small"):
        """``proxy_config``: the network a proxy run uses ("small" by default, "full" for the
        full-size architecture with random weights; ignored when the checkpoint is present)."""
        if proxy_config not in CONFIGS:
            raise FoleybenchError(f"desync: proxy_config must be one of {sorted(CONFIGS)}, not {proxy_config!r}")
        super().__init__(ctx)
        self.n_boot = n_boot
        self.embedder = get_embedder("synchformer", self.ctx, proxy_config=proxy_config)

    def clip_value(self, row: Any) -> float:
        return float(row[0])

    def score_batch(self, pairs: Sequence[ClipPair]) -> list[Any]:
        out: list[Any] = [None] * len(pairs)
        todo = []
        for i, p in enumerate(pairs):
            if not p.video or not p.audio:
                out[i] = Excluded(f"no {'video' if not p.video else 'audio'} file for task {p.task!r}")
            else:
                todo.append(i)
        e = self.embedder
        vids = cached_apply(e, [pairs[i].video or "" for i in todo], self.ctx, "sync_video",
                            load=lambda path: e.load_video(path, self.ctx), apply=e.embed_video)  # type: ignore[attr-defined]
        auds = cached_apply(e, [pairs[i].audio or "" for i in todo], self.ctx, "sync_audio",
                            load=lambda path: e.load_audio(path, self.ctx), apply=e.embed_audio)  # type: ignore[attr-defined]
        for i, v, a in zip(todo, vids, auds):
            bad = v if isinstance(v, InputError) else a if isinstance(a, InputError) else None
            if bad is not None:
                out[i] = Excluded(str(bad), kind="too_short" if isinstance(bad, TooShort) else "error")
                continue
            off = e.offsets(v, a)  # type: ignore[attr-defined]
            out[i] = (float(np.abs(off).mean()), float(off[0]), float(off[1]))
        return out

    def extras(self, ids: list[str], values: np.ndarray) -> dict[str, Any]:
        return {"per_clip": dict(zip(ids, values.tolist())),
                "offsets_s": {cid: [self.rows[cid][1], self.rows[cid][2]] for cid in ids},
                "unit": "seconds", "n_too_short": self.n_excluded("too_short"),
                "excluded": self.sorted_excluded(), "protocol": PROTOCOL}

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, "protocol": PROTOCOL, **self.embedder.provenance()}
