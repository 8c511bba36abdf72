"""Likelihood retrieval: each test video queries the candidate audios, ranked by the
model's teacher-forced log-likelihood of that audio given that video.

For N clips the matrix ``L[i, j]`` (nats per clip) is the log-likelihood of clip j's
audio under clip i's video (every clip cut to the same window, so lengths do not favour
a candidate). Query i's target is candidate i. Per query:

- ``g`` = candidates strictly more likely than the target, ``e`` = other candidates
  exactly as likely (ties). **Ties are broken uniformly at random, in expectation**: the
  target's rank is uniform on g+1 .. g+e+1, so hit@k = clip((k - g) / (e + 1), 0, 1),
  reciprocal rank = mean of 1/r over that range, and rank = g + 1 + e/2. A matrix whose
  rows are all equal (a model that ignores the video, scored with column-centred values)
  then sits exactly at chance instead of at the best or worst case.
- recall@k, mean reciprocal rank (MRR) = means over queries; median rank = median.
- chance (a random ranking): recall@k = k/N, MRR = H_N / N, median rank = (N + 1) / 2.
- 95% intervals: seeded percentile bootstrap over query clips
  (``metrics.functional.bootstrap``).

Besides the raw likelihood, "centred" values subtract each candidate's mean over the
queries, ``L[i, j] - mean_i L[i, j]`` (a pointwise mutual information estimate): an audio
that is likely under every video (quiet, stationary) no longer wins every query. The
video-ablation row scores every query with zeroed frames: all queries then see the same
video, so only one row is computed and repeated.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("foleybench")
CODE_VERSION = "retrieval-1"
N_CLIPS = 16       # test clips in the subset (N x N pairs per model; make-bench budget)
WINDOW_S = 1.0     # seconds of each clip scored (from its start)
KS = (1, 5)
N_BOOT = 1000


# ------------------------------------------------------------------ arithmetic
def target_counts(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g, e) per query of L [N, N]: candidates strictly above the target L[i, i], and
    other candidates tied with it."""
    L = np.asarray(L, dtype=np.float64)
    if L.ndim != 2 or L.shape[0] != L.shape[1] or not np.isfinite(L).all():
        raise ValueError(f"want a finite square matrix, got shape {L.shape}")
    diag = np.diag(L)[:, None]
    g = (L > diag).sum(1)
    e = (L == diag).sum(1) - 1
    return g, e


def per_query(L: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, np.ndarray]:
    """Per-query values [N]: ``hit@k`` (expected, ties random), ``rr`` and ``rank``."""
    g, e = target_counts(L)
    out = {f"hit@{k}": np.clip((k - g) / (e + 1.0), 0.0, 1.0) for k in ks}
    out["rr"] = np.array([np.mean(1.0 / np.arange(gi + 1, gi + ei + 2)) for gi, ei in zip(g, e)])
    out["rank"] = g + 1.0 + e / 2.0
    return out


def chance(n: int, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Expected values of a random ranking of n candidates."""
    out = {f"recall@{k}": min(k, n) / n for k in ks}
    out["median_rank"] = (n + 1) / 2.0
    out["mrr"] = float(np.sum(1.0 / np.arange(1, n + 1)) / n)
    return out


def summarise(L: np.ndarray, ks: tuple[int, ...] = KS, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """recall@k, median_rank, mrr of L [N, N], each ``{"value", "ci"}`` (bootstrap over queries)."""
    from foleybench.metrics.functional.bootstrap import bootstrap_ci

    q = per_query(L, ks)
    cols = {**{f"recall@{k}": (q[f"hit@{k}"], np.mean) for k in ks},
            "median_rank": (q["rank"], np.median), "mrr": (q["rr"], np.mean)}
    return {name: {"value": float(stat(v)), "ci": list(bootstrap_ci(v, stat, n_boot=n_boot, seed=seed))}
            for name, (v, stat) in cols.items()} | {"n": int(len(q["rr"]))}


def centred(L: np.ndarray) -> np.ndarray:
    """L minus each candidate's (column's) mean over queries. A column whose values are all
    equal becomes exactly 0 (the float mean of equal values need not equal them, and the
    rounding would decide ties that a video-blind model does not make)."""
    L = np.asarray(L, dtype=np.float64)
    C = L - L.mean(0, keepdims=True)
    C[:, L.max(0) == L.min(0)] = 0.0
    return C


def beats_chance(summary: dict[str, Any], n: int) -> bool:
    """True when the MRR interval lies wholly above chance MRR."""
    return summary["mrr"]["ci"][0] > chance(n)["mrr"]


# ------------------------------------------------------------------ likelihoods
def subset(manifest: Any, n: int = N_CLIPS) -> Any:
    """n clips taken round-robin over the synthfoley classes in clip-id order (so every
    class is in it), in clip-id order."""
    from foleybench.baselines.mw_table1 import synth_class

    by: dict[str, list[Any]] = {}
    for r in sorted(manifest, key=lambda r: r.clip_id):
        by.setdefault(synth_class(r.clip_id), []).append(r)
    picked: list[Any] = []
    while len(picked) < min(n, len(manifest)):
        for cls in sorted(by):
            if by[cls] and len(picked) < n:
                picked.append(by[cls].pop(0))
    return type(manifest)(sorted(picked, key=lambda r: r.clip_id), manifest.root)


def likelihood_matrix(scorer: Any, clips: list[tuple[Any, Any]], zeroed: bool = False) -> np.ndarray:
    """L [N, N] in nats per clip: row i = every candidate audio under clip i's video.

    Batched one query at a time (N candidates per batch). ``zeroed``: every query's frames
    are zero, so one row is computed and repeated."""
    import torch

    audio = torch.stack([a for a, _ in clips])
    rows = []
    for _, v in clips:
        v = scorer.zeroed(v) if zeroed else v
        rows.append(np.asarray(scorer.log_likelihood(audio, v[None].expand(len(clips), *v.shape)), np.float64))
        if zeroed:
            return np.tile(rows[0], (len(clips), 1))
    return np.stack(rows)


def _cache_key(meta: dict[str, Any], fingerprint: str, ids: list[str], zeroed: bool) -> str:
    blob = json.dumps({"model": meta.get("model"), "sha": meta.get("checkpoint_sha256"), "data": fingerprint,
                       "ids": ids, "window_s": WINDOW_S, "zeroed": zeroed, "code": CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_matrix(scorer: Any, clips: list, cache_dir: Path, fingerprint: str, ids: list[str],
                  zeroed: bool) -> np.ndarray:
    """:func:`likelihood_matrix`, read from / written to cache_dir by model, checkpoint,
    data fingerprint, clip ids, window and condition."""
    path = cache_dir / f"{scorer.meta['model']}__{'zeroed' if zeroed else 'true'}__" \
                       f"{_cache_key(scorer.meta, fingerprint, ids, zeroed)}.npy"
    if path.is_file():
        return np.load(path)
    L = likelihood_matrix(scorer, clips, zeroed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, L)
    tmp.replace(path)
    return L


def _runs_root(data_dir: Path) -> Path:
    """runs/ of the bench layout (runs/data/NAME), else ./runs."""
    return data_dir.parents[1] if data_dir.parent.name == "data" else Path("runs")


def evaluate_retrieval(data_dir: str | Path, spec: Any = None, n_clips: int = N_CLIPS) -> dict[str, Any]:
    """Retrieval over the spec's split for every column model, plus any other shipped model
    whose family provides the likelihood hook. Returns plain data (matrices included)."""
    import torch

    from foleybench.baselines.likelihood import families_with_hook, scorer_hook
    from foleybench.train import read_manifest

    if spec is None:
        from foleybench.bench import load_spec
        spec = load_spec("retrieval-synthfoley")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data_dir = Path(data_dir)
    test = subset(read_manifest(data_dir).split(spec.dataset.split or "test"), n_clips)
    ids, fp = test.ids(), test.fingerprint()
    cache = _runs_root(data_dir) / spec.name / "likelihood"
    titles = {c.model: c.title for c in spec.columns if c.model}
    names = list(titles) + [m for m in families_with_hook() if m not in titles]
    models = []
    for name in names:
        hook = scorer_hook(name)
        if hook is None:
            log.warning("%s: its family has no likelihood_scorer hook; skipped", name)
            continue
        scorer = hook(name)
        clips = scorer.prepare(test, WINDOW_S)
        row: dict[str, Any] = {"model": name, "title": titles.get(name, name), "meta": scorer.meta}
        for cond in ("true", "zeroed"):
            L = cached_matrix(scorer, clips, cache, fp, ids, cond == "zeroed")
            row[cond] = {"raw": summarise(L, seed=spec.seed), "centred": summarise(centred(L), seed=spec.seed)}
            if cond == "true":
                row["matrix"] = L.tolist()
        models.append(row)
    return {"models": models, "clip_ids": ids, "n": len(ids), "window_s": WINDOW_S, "chance": chance(len(ids)),
            "data_fingerprint": fp, "n_boot": N_BOOT}
