"""CLIPSIM: mean over sampled frames of cos(CLIP image embedding, CLIP text embedding).

Scored video: ``pair.video`` (the generated video for A2V, the reference for V2A).
Text (decision): the raw class label (``prompt="{label}"``), because CLIPSIM was defined
on captions and no public code fixes a template; ``prompt="a video of {label}"`` is the
named variant. Frames: ``n_frames`` (8) spread uniformly over the clip. The value is the
raw cosine (TempoTokens' 0.47-0.70 are not raw cosines), mean over clips of the per-clip
frame means; 95% bootstrap interval over clips.

Scale (``scale``): ``"cosine"`` (default, METRICS.md) or ``"clipscore"``, CLIPScore's
rescaling (Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for Image
Captioning": ``2.5 * max(cos, 0)`` per image-text pair), applied to each frame before the
frame mean; registered as ``clipsim_clipscore``. That TempoTokens' published CLIPSIM is on
this scale is a hypothesis (their values fall in its range; their code is not public),
not a fact: docs/PROTOCOL.md, "CLIPSIM".

State (keyed by clip id, metrics/base.py): each clip's label and CLIP frame embeddings.
The label prompts are embedded at compute, all together in sorted order, so a clip's
value does not depend on which labels shared its batch.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench.api import ClipPair, InputError, MetricValue, ScoreContext
from foleybench.cache import embed_files
from foleybench.metrics.base import Excluded, PerClipMean
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.functional.similarity import rows_cosine

CLIPSCORE_W = 2.5  # Hessel et al. 2021: CLIP-S(c, v) = w * max(cos(c, v), 0), w = 2.5
SCALES = {
    "cosine": "raw cosine, mean over frames then clips",
    "clipscore": "CLIPScore scale: 2.5 x max(cos, 0) per frame (Hessel et al. 2021), mean over frames then "
                 "clips; a hypothesis about TempoTokens' published scale, not their code",
}


class CLIPSim(PerClipMean):
    """Mean over clips of the mean over frames of cos(image, label text) (or its CLIPScore
    rescaling, ``scale="clipscore"``); higher is better.

    Row per clip: (label, float32 ``[F, 512]`` frame embeddings); at compute, the
    (cosine mean, F) of each clip.
    """

    name = "clipsim"
    version = "1"
    higher_is_better = True
    tasks = ("v2a", "a2v")

    def __init__(self, ctx: ScoreContext | None = None, prompt: str = "{label}", n_frames: int = 8,
                 n_boot: int = 1000, scale: str = "cosine"):
        if "{label}" not in prompt:
            raise ValueError("prompt must contain '{label}'")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {sorted(SCALES)}, not {scale!r}")
        super().__init__(ctx)
        self.prompt, self.n_frames, self.n_boot, self.scale = prompt, n_frames, n_boot, scale
        if scale != "cosine":
            self.name = f"clipsim_{scale}"
        self.embedder = get_embedder("clip", self.ctx, n_frames=n_frames)
        self._text: dict[str, np.ndarray] = {}  # label -> text embedding [512], set by compute

    def score_batch(self, pairs: Sequence[ClipPair]) -> list[Any]:
        out: list[Any] = [None] * len(pairs)
        todo = []
        for i, p in enumerate(pairs):
            if not p.label.strip():
                out[i] = Excluded("no label to build the CLIPSIM prompt from")
            elif not p.video:
                out[i] = Excluded("no video to score")
            else:
                todo.append(i)
        embs = embed_files(self.embedder, [pairs[i].video or "" for i in todo], self.ctx)
        for i, e in zip(todo, embs):
            out[i] = Excluded(str(e)) if isinstance(e, InputError) else (pairs[i].label, np.asarray(e))
        return out

    def compute(self) -> MetricValue:
        # One text call over every label, sorted: the embeddings cannot depend on batching.
        labels = sorted({label for label, _ in self.rows.values()})
        embs = self.embedder.embed_text([self.prompt.format(label=lab) for lab in labels]) if labels else []  # type: ignore[attr-defined]
        self._text = dict(zip(labels, embs))
        return super().compute()

    def clip_value(self, row: Any) -> float:
        label, img = row
        cos = rows_cosine(img, self._text[label])
        if self.scale == "clipscore":
            cos = CLIPSCORE_W * np.maximum(cos, 0.0)
        return float(cos.mean())

    def extras(self, ids: list[str], values: np.ndarray) -> dict[str, Any]:
        n_frames = sum(len(self.rows[i][1]) for i in ids)
        return {"per_clip": dict(zip(ids, values.tolist())), "n_frames": n_frames, "n_unit": "clips",
                **self.protocol()}

    def protocol(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "scale": self.scale, "value": SCALES[self.scale],
                "frame_sampling": f"{self.n_frames} frames uniform over the clip", "ci": "bootstrap 95% over clips"}

    def provenance(self) -> dict[str, Any]:
        return {"metric": self.name, "version": self.version, **self.protocol(), **self.embedder.provenance()}
