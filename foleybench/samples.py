"""Several generated samples per clip: how each metric combines them.

METRICS.md: "Several samples per clip: score each against its reference and average (say
so)". Where it is silent we follow av-benchmark (``num_samples``): its paired KL is
computed per sample set against the references, its FDs and inception scores take every
generated file as one member of the generated set. So, per metric base:

- :class:`~foleybench.metrics.base.PerClipMean` (KL, IB score, AV-Align, CLIPSIM): each
  sample is scored against its clip's reference; a clip's value is the mean over its
  scored samples; the value is the mean over clips (each clip weighs the same, whatever
  its sample count), with the bootstrap interval over clips. With the same number of
  samples per clip this is av-benchmark's mean over all (clip, sample) rows.
- :class:`~foleybench.metrics.fd.FrechetMetric` (FD, FVD): every sample's embedding rows
  join the generated set; each reference clip is in the reference set once. The
  interval resamples clips (a clip with all its samples).
- :class:`~foleybench.metrics.inception_score.InceptionScore`: every sample is one
  generated item (items ordered by clip id, then sample).

Mechanics: the pairs are grouped by sample label (each group holds a clip at most once),
each group is scored by its own metric instance exactly as a one-sample run, and the
instances are combined here. Clip-keyed metric state stays untouched.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import numpy as np

from foleybench.api import ClipPair, FoleybenchError, MetricValue

RULES = {
    "mean": "each sample scored against its clip's reference; a clip's value is the mean over its scored "
            "samples; the value is the mean over clips (each clip weighs the same); interval: bootstrap over clips",
    "pooled_fd": "every sample is a member of the generated set; each reference clip is in the reference set "
                 "once; interval: bootstrap over clips, each with all its samples",
    "pooled_items": "every sample is one generated item (ordered by clip id, then sample)",
}


def is_multi(pairs: Sequence[ClipPair]) -> bool:
    """True when some clip has more than one prediction among ``pairs``."""
    ids = [p.clip_id for p in pairs]
    return len(set(ids)) != len(ids)


def rule_of(cls: type, name: str) -> str:
    """The combination rule of a metric class (a key of :data:`RULES`); an error for a
    metric that has none (checked before any work)."""
    from foleybench.metrics.base import PerClipMean
    from foleybench.metrics.fd import FrechetMetric
    from foleybench.metrics.inception_score import InceptionScore

    if issubclass(cls, PerClipMean):
        return "mean"
    if issubclass(cls, FrechetMetric):
        return "pooled_fd"
    if issubclass(cls, InceptionScore):
        return "pooled_items"
    raise FoleybenchError(f"metric {name!r} has no rule for several samples per clip; "
                          "score one sample per clip (a --pred-pattern without {k})")


def _order(label: str | None) -> tuple[int, int, str]:
    if label is None:
        return (0, -1, "")
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


def groups(pairs: Sequence[ClipPair]) -> dict[str | None, list[ClipPair]]:
    """Pairs by sample label, labels in sample order; each group holds a clip id once."""
    out: dict[str | None, list[ClipPair]] = {}
    for p in pairs:
        out.setdefault(p.sample, []).append(p)
    return {k: out[k] for k in sorted(out, key=_order)}


def score_samples(make: Callable[[], Any], pairs: Sequence[ClipPair], name: str, rule: str,
                  progress: Callable[[Any, int, str], Any] | None = None,
                  seed: int = 0) -> tuple[Any, MetricValue, list[tuple[str, str]], dict[str, Any]]:
    """Score ``pairs`` (several per clip) with fresh instances from ``make``, one per sample
    label, and combine them by ``rule``. Returns (an instance for provenance, the value,
    excluded (``clip_id#k``, reason), the results' ``samples`` block)."""
    by_label = groups(pairs)
    metrics: dict[str | None, Any] = {}
    excluded: list[tuple[str, str]] = []
    for label, ps in by_label.items():
        m = make()
        chunks = range(0, len(ps), 64)
        if progress is not None:
            chunks = progress(chunks, (len(ps) + 63) // 64, f"{name} sample {label}")
        for start in chunks:
            excluded += [(f"{cid}#{label}", why) for cid, why in m.update(ps[start:start + 64])]
        metrics[label] = m
    first = next(iter(metrics.values()))
    prov = first.provenance()
    if any(m.provenance() != prov for m in metrics.values()):
        raise FoleybenchError(f"metric {name!r}: sample sets were scored with different settings")
    if rule == "mean":
        value = _mean_per_clip(metrics, first, seed)
    elif rule == "pooled_fd":
        value = _pooled(first, _fd_rows(metrics))
    elif rule == "pooled_items":
        value = _pooled(first, {(cid, i): row for i, (label, m) in enumerate(metrics.items())
                                for cid, row in m.rows.items()})
    else:
        raise FoleybenchError(f"unknown sample rule {rule!r}")
    counts: dict[str, int] = {}
    for m in metrics.values():
        for cid in m.rows:
            counts[cid] = counts.get(cid, 0) + 1
    hist: dict[str, int] = {}
    for n in counts.values():
        hist[str(n)] = hist.get(str(n), 0) + 1
    block = {"rule": rule, "description": RULES[rule], "n_samples": sum(counts.values()), "n_clips": len(counts),
             "samples_per_clip": dict(sorted(hist.items(), key=lambda kv: int(kv[0]))),
             "n_clips_averaged": sum(n > 1 for n in counts.values()),
             "labels": [str(k) for k in metrics]}
    return first, value, excluded, block


def _mean_per_clip(metrics: dict[str | None, Any], first: Any, seed: int) -> MetricValue:
    from foleybench.metrics.functional.bootstrap import bootstrap_ci

    per_sample: dict[str, dict[str, float]] = {}
    by_sample: dict[str, Any] = {}
    for label, m in metrics.items():
        v = m.compute()  # also readies what per_clip needs (CLIPSIM's text embeddings)
        by_sample[str(label)] = {"value": v.value, "n": v.n,
                                 **{k: x for k, x in v.extras.items() if k not in ("per_clip", "worst")}}
        ids, vals = m.per_clip()
        for cid, x in zip(ids, vals.tolist()):
            per_sample.setdefault(cid, {})[str(label)] = float(x)
    ids = sorted(per_sample)
    values = np.array([np.mean(np.array(list(per_sample[c].values()), dtype=np.float64)) for c in ids],
                      dtype=np.float64)
    extras: dict[str, Any] = {"per_clip": dict(zip(ids, values.tolist())), "per_sample": per_sample,
                              "by_sample": by_sample, "n_unit": "clips (each the mean over its samples)"}
    if not ids:
        extras["reason"] = "no clip could be scored"
        return MetricValue(None, 0, None, extras)
    n_boot = getattr(first, "n_boot", 0)
    ci = (bootstrap_ci(values, n_boot=n_boot, seed=seed)
          if n_boot and len(ids) >= getattr(first, "ci_min_n", 1) else None)
    if n_boot:
        extras["bootstrap"] = {"n_boot": n_boot, "unit": "clips", "seed": seed}
    return MetricValue(float(values.mean()), len(ids), ci, extras)


def _fd_rows(metrics: dict[str | None, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per clip: (every sample's generated rows stacked in sample order, the reference rows)."""
    gen: dict[str, list[np.ndarray]] = {}
    ref: dict[str, np.ndarray] = {}
    for m in metrics.values():
        for cid, (g, r) in m.rows.items():
            gen.setdefault(cid, []).append(g)
            ref.setdefault(cid, r)
    return {cid: (_pool_side(gen[cid]), ref[cid]) for cid in gen}


def _pool_side(items: list[Any]) -> Any:
    """Samples' rows stacked in sample order; when a sample is a long input reduced to its
    statistics (foleybench.metrics.frechet_state), all of them merged into one statistics item."""
    from foleybench.metrics.frechet_state import RowStats, is_clip_stats

    if not any(is_clip_stats(x) for x in items):
        return np.concatenate(items, axis=0)
    dim = int(np.asarray(items[0]).shape[-1])
    acc = RowStats(dim)
    for x in items:
        acc.add_stats(RowStats.of(x, dim))
    return acc.pack()


def _pooled(first: Any, rows: dict[Any, Any]) -> MetricValue:
    """``first``'s own compute over the pooled rows (a shallow copy: same embedder and options)."""
    pooled = copy.copy(first)
    pooled.rows, pooled.excluded = dict(rows), {}
    return pooled.compute()
