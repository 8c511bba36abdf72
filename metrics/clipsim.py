"""CLIPSIM: mean over sampled frames of cos(CLIP image embedding, CLIP text embedding).

Scored video: ``pair.video`` (the generated video for A2V, the reference for V2A).
Text (decision): the raw class label (``prompt="{label}"``), because CLIPSIM was defined
on captions and no public code fixes a template; ``prompt="a video of {label}"`` is the
named variant. Frames: ``n_frames`` (8) spread uniformly over the clip. The value is the
raw cosine (TempoTokens' 0.47-0.70 are not raw cosines), mean over clips of the per-clip
frame means; 95% bootstrap interval over clips.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, Metric, MetricValue, ScoreContext
from foleybench.cache import embed_files
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.functional.bootstrap import bootstrap_ci


class CLIPSim(Metric):
    name = "clipsim"
    version = "1"
    higher_is_better = True

    def __init__(self, ctx: ScoreContext | None = None, prompt: str = "{label}", n_frames: int = 8,
                 n_boot: int = 1000):
        if "{label}" not in prompt:
            raise ValueError("prompt must contain '{label}'")
        self.ctx = ctx or ScoreContext()
        self.prompt, self.n_frames, self.n_boot = prompt, n_frames, n_boot
        self.embedder = get_embedder("clip", self.ctx, n_frames=n_frames)
        self._text: dict[str, np.ndarray] = {}
        self.per_clip: dict[str, float] = {}
        self.n_frames_scored = 0

    def _text_emb(self, labels: Sequence[str]) -> None:
        new = sorted({lab for lab in labels if lab not in self._text})
        if new:
            embs = self.embedder.embed_text([self.prompt.format(label=lab) for lab in new])
            self._text.update(zip(new, embs))

    def update(self, pairs: Sequence[ClipPair]) -> list[tuple[str, str]]:
        excluded: list[tuple[str, str]] = []
        todo = []
        for p in pairs:
            if not p.label.strip():
                excluded.append((p.clip_id, "no label to build the CLIPSIM prompt from"))
            elif not p.video:
                excluded.append((p.clip_id, "no video to score"))
            else:
                todo.append(p)
        self._text_emb([p.label for p in todo])
        embs = embed_files(self.embedder, [p.video or "" for p in todo], self.ctx)
        for p, e in zip(todo, embs):
            if isinstance(e, InputError):
                excluded.append((p.clip_id, str(e)))
                continue
            img = np.asarray(e, dtype=np.float64)  # [F, 512], unit rows
            txt = np.asarray(self._text[p.label], dtype=np.float64)
            cos = (img @ txt) / (np.linalg.norm(img, axis=1) * np.linalg.norm(txt))
            self.per_clip[p.clip_id] = float(cos.mean())
            self.n_frames_scored += len(img)
        return excluded

    def merge(self, other: "CLIPSim") -> "CLIPSim":
        self.per_clip.update(other.per_clip)
        self.n_frames_scored += other.n_frames_scored
        return self

    def compute(self) -> MetricValue:
        vals = np.array(list(self.per_clip.values()), dtype=np.float64)
        extras: dict[str, Any] = {"per_clip": dict(self.per_clip), "n_frames": self.n_frames_scored,
                                  "n_unit": "clips", **self.protocol()}
        if vals.size == 0:
            return MetricValue(None, 0, None, extras)
        ci = bootstrap_ci(vals, n_boot=self.n_boot, seed=self.ctx.seed) if self.n_boot else None
        return MetricValue(float(vals.mean()), int(vals.size), ci, extras)

    def protocol(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "value": "raw cosine, mean over frames then clips",
                "frame_sampling": f"{self.n_frames} frames uniform over the clip", "ci": "bootstrap 95% over clips"}

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, **self.protocol(), **self.embedder.provenance()}
