"""The end-of-run summary on stderr: every clip left out, by id and reason, in one place.

The results JSON holds the same facts (``pairing``, each metric's ``excluded``,
``cache.repaired``); this is what a person reads. One block per ``score`` /
``generate`` run and per (task, model) of ``bench``.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

GROUP_AT = 3  # this many clips with the same reason share one line


def _lines(head: str, items: Iterable[tuple[str, str]]) -> list[str]:
    """One line per clip, except that clips sharing a reason (GROUP_AT or more: a whole set
    of silent predictions, say) share one line that still names every id."""
    by_why: dict[str, list[str]] = {}
    for cid, why in items:  # a reason naming the clip's file ("dir/ID.wav") groups as "dir/{id}.wav"
        key = re.sub(rf"(?<![\w-]){re.escape(cid)}(?=\.\w+\b)", "{id}", why) if cid else why
        by_why.setdefault(key, []).append(cid)
    out = []
    for why, ids in by_why.items():
        if len(ids) >= GROUP_AT:
            out.append(f"  {head} ({len(ids)} clips)" + (f": {why}" if why else "") + f": {', '.join(ids)}")
        else:
            out += [f"  {head} {cid}" + (f": {why.replace('{id}', cid)}" if why else "") for cid in ids]
    return out


def score_summary(doc: dict[str, Any], title: str | None = None) -> str:
    """Summary of a results document (runner.score)."""
    p = doc.get("pairing", {})
    metrics = doc.get("metrics", {})
    cache = doc.get("cache", {})
    n_ref = doc.get("dataset", {}).get("n_clips")
    head = f"foleybench: summary{' ' + title if title else ''}: {p.get('n_scored_pairs', 0)} clip(s) scored"
    head += f" of {n_ref} reference clip(s)" if n_ref is not None else ""
    if p.get("pred_pattern"):
        head += (f" from {p.get('n_files_scored', 0)} file(s) (samples per clip {p.get('samples_per_clip', {})}; "
                 f"{p.get('n_files_unmatched', 0)} unmatched, {p.get('n_cut', 0)} cut, "
                 f"{p.get('n_excluded_length', 0)} too short)")
    out = [head]
    out += _lines("excluded reference", p.get("excluded_ref", {}).items())
    out += _lines("invalid prediction", p.get("invalid_pred", {}).items())
    out += _lines("unpaired prediction", ((c, "no reference clip with this id") for c in p.get("unpaired_pred", [])))
    out += _lines("missing prediction", ((c, "") for c in p.get("missing_pred", [])))
    out += _lines("excluded by length", p.get("excluded_length", {}).items())
    if p.get("pred_pattern"):  # without a pattern, unmatched files are the unpaired predictions above
        out += _lines("unmatched file", p.get("unmatched_files", {}).items())
    out += _lines("warning", p.get("warnings", {}).items())
    for name, r in metrics.items():
        out += _lines(f"{name}: excluded", ((str(c), str(w)) for c, w in r.get("excluded", [])))
        reason = (r.get("extras") or {}).get("reason")
        if r.get("value") is None:
            out.append(f"  {name}: no value" + (f" ({reason})" if reason else ""))
        bad = r.get("non_finite") or {}
        if bad:
            out.append(f"  {name}: non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} written as null")
    if cache.get("repaired"):
        out.append(f"  cache: {cache['repaired']} damaged embedding cache entr{'y' if cache['repaired'] == 1 else 'ies'} "
                   "recomputed")
    out += [f"  note: {n}" for n in p.get("notes", [])]
    if len(out) == 1:
        out[0] += "; nothing excluded"
    return "\n".join(out)


def generation_summary(index: dict[str, Any], notes: Iterable[str] = ()) -> str:
    """Summary of a generation index (runner.generate)."""
    fails = index.get("failures", {})
    out = [f"foleybench: summary: {index.get('generated', 0)} generated, {index.get('resumed', 0)} already there, "
           f"{len(fails)} failed"]
    out += _lines("failed", fails.items())
    out += [f"  note: {n}" for n in notes]
    return "\n".join(out)
