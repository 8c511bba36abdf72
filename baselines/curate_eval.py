"""Judging ``foleybench curate`` on synthfoley with a known corruption (and real clips).

The test split's audio is replaced for a known 20% of its clips (round(0.2 n), chosen
with a seed): those clips swap audio in a cycle, so each gets another clip's audio.
Every scorer then curates the corrupted set; the dropped set (dropped plus excluded
clips) is compared with the corrupted set: precision = corrupted among dropped /
dropped, recall = corrupted among dropped / corrupted. Rule ``top:0.8`` drops exactly as
many clips as were corrupted (it is told the rate), so there precision equals recall;
each scorer's own default rule (``foleybench list scorers``) is reported beside it.

One draw of 5 corrupted clips of 27 is a coarse estimate (one miss costs 0.2), so the
corruption is drawn ``N_DRAWS`` times (seeds spec.seed, spec.seed + 1, ...; the first is
the single draw the curated folders are written for) on the same test clips, and the
mean, spread and a bootstrap interval of the mean over draws are reported. A scorer
rates a (video, audio) pair, so every pair any draw needs is scored once
(:func:`pair_table`: each file decoded and embedded once) and a draw only looks its
pairs up. The real clips (``../shared/data/realclips``, when present) are scored too.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

FRACTION = 0.2
N_DRAWS = 20
N_BOOT = 2000
RULES = ("top", "default")
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "realclips"
# AV-Align's optical flow over 10 s of 720p video costs ~2 min of CPU for the real clips,
# a fifth of `make bench`'s budget: run it by hand (`foleybench curate --scorer av_align`).
REAL_SCORERS = ("avc", "ib_score")

Pair = tuple[str, str]  # (clip id whose video, clip id whose audio)


def swaps(ids: Sequence[str], seed: int, fraction: float = FRACTION) -> dict[str, str]:
    """{corrupted id: donor id}: round(fraction n) clips (at least 2), chosen with seed,
    each taking the audio of the next chosen clip (a cycle, so none keeps its own)."""
    k = max(2, int(round(fraction * len(ids))))
    chosen = sorted(np.random.default_rng(seed).choice(len(ids), k, replace=False).tolist())
    return {ids[chosen[i]]: ids[chosen[(i + 1) % k]] for i in range(k)}


def corrupt(test: Any, seed: int, fraction: float = FRACTION) -> tuple[Any, list[str], dict[str, str]]:
    """(manifest with swapped audio, corrupted ids, {corrupted id: donor id}). Audio of a
    corrupted clip points at its donor's file; content hashes are cleared so the
    fingerprint is that of the files actually used."""
    donor = swaps(test.ids(), seed, fraction)
    recs = []
    for r in test:
        if r.clip_id in donor:
            r = dataclasses.replace(r, audio=test[donor[r.clip_id]].audio_source, audio_sha256="", content_sha256="")
        recs.append(r)
    return type(test)(recs, test.root), sorted(donor), donor


def precision_recall(dropped: list[str], corrupted: list[str]) -> tuple[float | None, float]:
    hit = len(set(dropped) & set(corrupted))
    return (hit / len(dropped) if dropped else None), hit / len(corrupted)


# ------------------------------------------------------------------ scoring pairs once
def pair_table(scorer: str, test: Any, pairs: Sequence[Pair], ctx: Any
               ) -> tuple[dict[Pair, float], dict[Pair, str], dict[str, Any]]:
    """Scores of (video of clip v, audio of clip a) pairs: ({pair: score}, {pair: why
    excluded}, provenance). The same computation as the scorer on a manifest holding
    those pairs, with each file decoded / embedded once."""
    pairs = list(dict.fromkeys(pairs))
    vid = {c: test[c].video for c in test.ids()}
    aud = {c: test[c].audio_source for c in test.ids()}
    scores: dict[Pair, float] = {}
    excluded: dict[Pair, str] = {}

    def put(p: Pair, value: Any) -> None:
        if isinstance(value, (float, int)) and not isinstance(value, bool):
            scores[p] = float(value)
        else:
            excluded[p] = str(getattr(value, "reason", value))

    if scorer == "avc":
        from foleybench.baselines.correspondence import score_pairs

        values, prov = score_pairs([(vid[v], aud[a]) for v, a in pairs])
        for p, x in zip(pairs, values):
            put(p, x)
        return scores, excluded, prov
    if scorer == "ib_score":
        from foleybench.metrics.ib_score import IBScore

        m = IBScore(ctx, n_boot=0)
        ids = test.ids()
        v_emb, a_emb = m.embed_sides([vid[c] for c in ids], [aud[c] for c in ids])
        ve, ae = dict(zip(ids, v_emb)), dict(zip(ids, a_emb))
        for v, a in pairs:
            bad = next((e for e in (ve[v], ae[a]) if not isinstance(e, np.ndarray)), None)
            put((v, a), bad if bad is not None else m.row(None, ve[v], ae[a]))  # type: ignore[arg-type]
        return scores, excluded, {"scorer": "ib_score", "unit": "cosine x 100", **m.provenance()}
    if scorer == "av_align":
        from foleybench.metrics.av_align import AVAlign
        from foleybench.metrics.functional.av_align import av_align_many, av_align_score

        ids = test.ids()  # video peaks of each video, onsets of each audio: from the own pairs
        own = dict(zip(ids, av_align_many([(vid[c], aud[c]) for c in ids])))
        for v, a in pairs:
            rv, ra = own[v], own[a]
            if not hasattr(rv, "video_peaks") or not hasattr(ra, "audio_peaks"):
                put((v, a), rv if not hasattr(rv, "video_peaks") else ra)
                continue
            s = av_align_score(ra.audio_peaks, rv.video_peaks, rv.fps)
            put((v, a), s if s is not None else "no audio onsets and no video flow peaks (AV-Align undefined)")
        m = AVAlign(ctx)
        return scores, excluded, {"scorer": "av_align", "unit": "[0, 1]", "metric": m.name, "version": m.version}
    raise ValueError(f"curate_eval has no pair scorer for {scorer!r}")


def draw_scores(scores: dict[Pair, float], excluded: dict[Pair, str], ids: Sequence[str],
                donor: dict[str, str]) -> tuple[dict[str, float], dict[str, str]]:
    """One draw's ({clip id: score}, {clip id: why excluded}): clip c is the pair (c, donor of c or c)."""
    s, e = {}, {}
    for c in ids:
        p = (c, donor.get(c, c))
        if p in scores:
            s[c] = scores[p]
        else:
            e[c] = excluded.get(p, "not scored")
    return s, e


def judge(scores: dict[str, float], excluded: dict[str, str], corrupted: list[str], rule: str) -> dict[str, Any]:
    """Precision and recall of the dropped set (dropped by the rule, plus excluded)."""
    from foleybench.curate import KeepRule

    kr = KeepRule.parse(rule)
    kept, _ = kr.select(scores)
    keep = set(kept)
    dropped = [c for c in scores if c not in keep]
    p, r = precision_recall(dropped + list(excluded), corrupted)
    return {"rule": f"{kr.kind}:{kr.value:g}", "precision": p, "recall": r, "n_dropped": len(dropped),
            "n_excluded": len(excluded), "missed": sorted(set(corrupted) - set(dropped) - set(excluded))}


def summary(values: Sequence[float | None], seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Mean, sd, min, max and a 95% percentile bootstrap interval of the mean over draws
    (None values, precision of an empty dropped set, are left out and counted)."""
    x = np.array([v for v in values if v is not None], dtype=np.float64)
    out: dict[str, Any] = {"n": int(x.size), "n_undefined": len(values) - int(x.size)}
    if not x.size:
        return {**out, "mean": None, "sd": None, "min": None, "max": None, "ci": [None, None]}
    boot = x[np.random.default_rng(seed).integers(0, x.size, (n_boot, x.size))].mean(1)
    return {**out, "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "min": float(x.min()), "max": float(x.max()),
            "ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]}


def evaluate_draws(scores: dict[Pair, float], excluded: dict[Pair, str], ids: Sequence[str],
                   donors: Sequence[dict[str, str]], rules: dict[str, str], seed: int = 0) -> dict[str, Any]:
    """Per rule label: each draw's precision and recall, their summary over draws, and how
    often each corrupted clip was missed (kept although its audio was another clip's)."""
    out: dict[str, Any] = {}
    for label, rule in rules.items():
        per = [judge(*draw_scores(scores, excluded, ids, d), sorted(d), rule) for d in donors]
        missed: dict[str, int] = {}
        for j in per:
            for c in j["missed"]:
                missed[c] = missed.get(c, 0) + 1
        out[label] = {"rule": per[0]["rule"], "per_draw": [[j["precision"], j["recall"]] for j in per],
                      "missed": dict(sorted(missed.items())),
                      "precision": summary([j["precision"] for j in per], seed),
                      "recall": summary([j["recall"] for j in per], seed)}
    return out


def evaluate_curation(data_dir: str | Path, spec: Any = None, n_draws: int = N_DRAWS) -> dict[str, Any]:
    from foleybench.api import ScoreContext
    from foleybench.baselines.mw_table1 import synth_class
    from foleybench.curate import SCORERS, curate
    from foleybench.train import read_manifest

    if spec is None:
        from foleybench.bench import load_spec
        spec = load_spec("curate-synthfoley")
    data_dir = Path(data_dir)
    runs = (data_dir.parents[1] if data_dir.parent.name == "data" else Path("runs")) / spec.name
    test = read_manifest(data_dir).split(spec.dataset.split or "test")
    ids = test.ids()
    bad, corrupted, donor = corrupt(test, spec.seed)
    donors = [donor] + [swaps(ids, spec.seed + d) for d in range(1, n_draws)]
    pairs = [(c, c) for c in ids] + [(c, d[c]) for d in donors for c in sorted(d)]
    ctx = ScoreContext(proxy=True, cache_dir=None, progress=False, seed=spec.seed)
    rows, real = [], {}
    for col in spec.columns:
        row: dict[str, Any] = {"scorer": col.key, "title": col.title}
        table, why, prov = pair_table(col.key, test, pairs, ctx)
        scored = (*draw_scores(table, why, ids, donor), prov)  # the seed-spec.seed draw, as curate sees it
        rules = {"top": "top:0.8", "default": SCORERS[col.key][2]}
        for label, rule in rules.items():
            rep = curate(bad, col.key, runs / f"{col.key}-{label}", rule, ctx, scored)
            p, r = precision_recall(rep["dropped"] + list(rep["excluded"]), corrupted)
            row[label] = {"rule": rep["keep"], "precision": p, "recall": r, "n_dropped": len(rep["dropped"]),
                          "n_excluded": len(rep["excluded"])}
            row["scores"] = rep["scores"]
            row["provenance"] = {k: v for k, v in rep["provenance"].items() if isinstance(v, (str, int, float, bool))}
        row["draws"] = evaluate_draws(table, why, ids, donors, rules, spec.seed)
        rows.append(row)
        if REAL.is_dir() and col.key in REAL_SCORERS:
            from foleybench.datasets.folder import folder_manifest

            rep = curate(folder_manifest(REAL), col.key, runs / f"real-{col.key}", None, ctx)
            real[col.key] = {"scores": rep["scores"], "excluded": rep["excluded"], "kept": rep["kept"],
                             "rule": rep["keep"]}
    same = sum(synth_class(c) == synth_class(d) for c, d in donor.items())
    same_all = sum(synth_class(c) == synth_class(d[c]) for d in donors for c in d)
    return {"rows": rows, "corrupted": corrupted, "donor": donor, "same_class_swaps": same, "n": len(test),
            "n_draws": len(donors), "draw_seeds": [spec.seed + d for d in range(len(donors))],
            "same_class_swaps_all": same_all, "n_swaps_all": sum(len(d) for d in donors),
            "real": real, "real_dir": str(REAL) if REAL.is_dir() else None}
