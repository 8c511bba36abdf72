"""Judging ``foleybench curate`` on synthfoley with a known corruption (and real clips).

The test split's audio is replaced for a known 20% of its clips (round(0.2 n), chosen
with the spec's seed): those clips swap audio in a cycle, so each gets another clip's
audio. Every scorer then curates the corrupted set; the dropped set (dropped plus
excluded clips) is compared with the corrupted set: precision = corrupted among dropped /
dropped, recall = corrupted among dropped / corrupted. Rule ``top:0.8`` drops exactly as
many clips as were corrupted (it is told the rate), so there precision equals recall;
each scorer's own default rule (``foleybench list scorers``) is reported beside it. The
real clips (``../shared/data/realclips``, when present) are scored too and listed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

FRACTION = 0.2
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "realclips"
# AV-Align's optical flow over 10 s of 720p video costs ~2 min of CPU for the real clips,
# a fifth of `make bench`'s budget: run it by hand (`foleybench curate --scorer av_align`).
REAL_SCORERS = ("avc", "ib_score")


def corrupt(test: Any, seed: int, fraction: float = FRACTION) -> tuple[Any, list[str], dict[str, str]]:
    """(manifest with swapped audio, corrupted ids, {corrupted id: donor id}). Audio of a
    corrupted clip points at its donor's file; content hashes are cleared so the
    fingerprint is that of the files actually used."""
    ids = test.ids()
    k = max(2, int(round(fraction * len(ids))))
    chosen = sorted(np.random.default_rng(seed).choice(len(ids), k, replace=False).tolist())
    donor = {ids[chosen[i]]: ids[chosen[(i + 1) % k]] for i in range(k)}
    recs = []
    for r in test:
        if r.clip_id in donor:
            r = dataclasses.replace(r, audio=test[donor[r.clip_id]].audio_source, audio_sha256="", content_sha256="")
        recs.append(r)
    return type(test)(recs, test.root), sorted(donor), donor


def precision_recall(dropped: list[str], corrupted: list[str]) -> tuple[float | None, float]:
    hit = len(set(dropped) & set(corrupted))
    return (hit / len(dropped) if dropped else None), hit / len(corrupted)


def evaluate_curation(data_dir: str | Path, spec: Any = None) -> dict[str, Any]:
    from foleybench.api import ScoreContext
    from foleybench.baselines.mw_table1 import synth_class
    from foleybench.curate import SCORERS, curate, get_scorer
    from foleybench.train import read_manifest

    if spec is None:
        from foleybench.bench import load_spec
        spec = load_spec("curate-synthfoley")
    data_dir = Path(data_dir)
    runs = (data_dir.parents[1] if data_dir.parent.name == "data" else Path("runs")) / spec.name
    test = read_manifest(data_dir).split(spec.dataset.split or "test")
    bad, corrupted, donor = corrupt(test, spec.seed)
    ctx = ScoreContext(proxy=True, cache_dir=None, progress=False, seed=spec.seed)
    rows, real = [], {}
    for col in spec.columns:
        row: dict[str, Any] = {"scorer": col.key, "title": col.title}
        scored = get_scorer(col.key)(bad, ctx)  # scored once, both rules applied to it
        for label, rule in (("top", "top:0.8"), ("default", SCORERS[col.key][2])):
            rep = curate(bad, col.key, runs / f"{col.key}-{label}", rule, ctx, scored)
            p, r = precision_recall(rep["dropped"] + list(rep["excluded"]), corrupted)
            row[label] = {"rule": rep["keep"], "precision": p, "recall": r, "n_dropped": len(rep["dropped"]),
                          "n_excluded": len(rep["excluded"])}
            row["scores"] = rep["scores"]
            row["provenance"] = {k: v for k, v in rep["provenance"].items() if isinstance(v, (str, int, float, bool))}
        rows.append(row)
        if REAL.is_dir() and col.key in REAL_SCORERS:
            from foleybench.datasets.folder import folder_manifest

            rep = curate(folder_manifest(REAL), col.key, runs / f"real-{col.key}", None, ctx)
            real[col.key] = {"scores": rep["scores"], "excluded": rep["excluded"], "kept": rep["kept"],
                             "rule": rep["keep"]}
    same = sum(synth_class(c) == synth_class(d) for c, d in donor.items())
    return {"rows": rows, "corrupted": corrupted, "donor": donor, "same_class_swaps": same, "n": len(test),
            "real": real, "real_dir": str(REAL) if REAL.is_dir() else None}
