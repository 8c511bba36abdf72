"""Martel & Wagner Table I on synthfoley, plus the video-context ablation.

Their Table I gives, per test video (car chase, clapping, nature), each model's
validation cross-entropy. Here the three synthfoley classes ``car_passing``,
``clapping`` and ``rain_nature`` stand for those videos, and the value is the
teacher-forced mu-law cross-entropy (nats per audio sample, 256 classes; a model that
ignores its inputs and predicts uniformly scores ln 256 = 5.545) over every sample of
the test-split clips of the class, at the model's own sample rate. Unlike theirs, it
cannot be negative.

The ablation scores the same trained model with the true video context, with zeroed
frames (what the model sees before a clip starts) and with another test clip's frames
(the clip list rolled by half its length, so most clips get another class's video). If
the video context matters, true < shuffled and true < zeroed.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch

from foleybench.baselines import martel_wagner as mw


def synth_class(clip_id: str) -> str:
    """Synthfoley clip ids read ``synth_<class>_<index>``; the label column is a caption."""
    core = clip_id[len("synth_"):] if clip_id.startswith("synth_") else clip_id
    head, _, tail = core.rpartition("_")
    return head if tail.isdigit() and head else core


@torch.no_grad()
def clip_ce(net: torch.nn.Module, audio: torch.Tensor, video_padded: torch.Tensor) -> tuple[float, int]:
    """(sum of cross-entropy in nats, number of scored samples) for one clip.

    audio [C, N] quantised amplitudes, video_padded [F + n - 1, 3, S, S]."""
    out = net.sequence_logits(audio[None], video_padded[None])
    n = out.shape[1] * out.shape[2]
    return float(mw.loss_fn(out, audio[None], net.cfg)) * n, n


def _variants(clips: list, conds: list[str]) -> dict[str, list[torch.Tensor]]:
    """Video per clip for each ablation condition in ``conds`` (each [F + n - 1, 3, S, S])."""
    k = len(clips) // 2 or 1
    shuffled = []
    for i, c in enumerate(clips):
        other = clips[(i + k) % len(clips)].video_padded
        need = c.video_padded.shape[0]
        if other.shape[0] < need:
            other = torch.cat([other, other[-1:].expand(need - other.shape[0], -1, -1, -1)])
        shuffled.append(other[:need])
    out = {"true": [c.video_padded for c in clips],
           "zeroed": [torch.zeros_like(c.video_padded) for c in clips],
           "shuffled": shuffled}
    return {c: out[c] for c in conds}


CONDITIONS = ("true", "zeroed", "shuffled")


def evaluate_table1(data_dir: str | Path, spec: Any = None,
                    checkpoints: Mapping[str, str | Path | None] | None = None,
                    max_clips_per_class: int | None = None) -> dict[str, Any]:
    """Per-class validation cross-entropy on the spec's split, and the ablation.

    spec: the benchmark spec (:class:`foleybench.spec.BenchSpec`; default
    benchmarks/martel-wagner-table1.yaml): its ``rows`` name the synthfoley classes, its
    ``columns`` the families and the model whose shipped checkpoint each uses, its
    ``ablation.conditions`` the video conditions (of true, zeroed, shuffled).
    checkpoints: column key -> checkpoint file, overriding the shipped one.
    Returns plain data: ``rows`` (one per class: ours per column), ``ablation`` (one per
    column: CE per condition over all scored clips), ``models`` (checkpoint provenance).
    """
    from foleybench.baselines.mw_train import load_clips
    from foleybench.train import read_manifest

    if spec is None:
        from foleybench.bench import load_spec
        spec = load_spec("martel-wagner-table1")
    classes = {r.key: r.title for r in spec.rows}
    conds = list(spec.ablation.conditions) if spec.ablation else ["true"]
    unknown = [c for c in conds if c not in CONDITIONS]
    if unknown or conds[0] != "true":
        raise ValueError(f"{spec.path}: ablation conditions {conds}: want 'true' first, then any of {CONDITIONS}")
    checkpoints = dict(checkpoints or {})
    test = read_manifest(data_dir).split(spec.dataset.split or "test")
    recs = [r for r in test if synth_class(r.clip_id) in classes]
    if max_clips_per_class is not None:
        recs = [r for cls in classes for r in [x for x in recs if synth_class(x.clip_id) == cls][:max_clips_per_class]]
    per_class: dict[str, dict[str, float]] = {c: {} for c in classes}
    n_class: dict[str, int] = {}
    ablation, models = [], {}
    for col in spec.columns:
        family = col.key
        ck = checkpoints.get(family) or mw.default_checkpoint(col.model or f"{family}.tiny")
        meta = mw.load_checkpoint(ck)
        fam, tag = meta["model"].split(".")
        cfg = mw.get_config(fam, tag)
        model = mw.MWModel(cfg, meta["model"], ck)
        models[family] = {"model": meta["model"], **model.meta}
        net = model.net
        clips = load_clips(type(test)(recs, test.root), cfg)
        clips = [type(c)(c.clip_id, synth_class(c.clip_id), c.audio, c.video_padded) for c in clips]
        sums = {}
        for cond, videos in _variants(clips, conds).items():
            tot, cnt = {}, {}
            for c, v in zip(clips, videos):
                s, n = clip_ce(net, c.audio, v)
                tot[c.label], cnt[c.label] = tot.get(c.label, 0.0) + s, cnt.get(c.label, 0) + n
            sums[cond] = (tot, cnt)
            if cond == "true":
                for cls in classes:
                    per_class[cls][family] = tot[cls] / cnt[cls] if cnt.get(cls) else None
                    n_class[cls] = sum(1 for c in clips if c.label == cls)
        ablation.append({"model": family, "checkpoint": meta["model"],
                         **{cond: sum(t.values()) / max(1, sum(n.values())) for cond, (t, n) in sums.items()}})
    rows = [{"class": cls, "stands_for": vid, "n_clips": n_class.get(cls, 0),
             **{c.key: per_class[cls].get(c.key) for c in spec.columns}}
            for cls, vid in classes.items()]
    return {"rows": rows, "ablation": ablation, "models": models, "data_fingerprint": test.fingerprint(),
            "uniform_ce": math.log(256)}
