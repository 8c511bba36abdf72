"""Leaderboard markdown and bar charts from results documents.

One table per task: rows are models (ours first, then published rows with their
source), columns are metrics with an arrow for direction. The best of our rows in each
column is bold; a missing value is a dash, never 0; a score from a proxy evaluator
carries a dagger and the footnote says what that means. The footer names the dataset
fingerprint, harness version and code digest (a hash of the code, shipped checkpoints,
specs and pins: :func:`foleybench.results.code_digest`), so a table can be traced to what
made it. It holds no clock time and no git commit: a table committed with the code that
made it must come out byte-identical when nothing changed (run times and the commit are
in the results JSON under runs/). A row whose model's shipped checkpoint is stale carries
a double dagger. A score from an evaluator loaded from a user's own checkpoint (weights
``custom``) carries a section sign, and the footnote names the checkpoint's sha256.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

DASH = "—"
PROXY_MARK = "†"
STALE_MARK = "‡"
CUSTOM_MARK = "§"


def fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return DASH
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.3e}"
    return f"{v:#.4g}" if a >= 1 else f"{v:.4f}"


def _best(values: list[float | None], higher: bool) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    return max(vals) if higher else min(vals)


def render_table(rows: Sequence[dict[str, Any]], metrics: Sequence[str], higher: dict[str, bool],
                 published: Sequence[Any] = ()) -> str:
    """rows: {"model", "values": {metric: value}, "ci": {metric: (lo, hi)}, "proxy": {metric: bool}, "n"};
    published: :class:`foleybench.spec.PublishedRow` (model, values, n)."""
    head = ["model"] + [f"{m} {'↑' if higher.get(m, True) else '↓'}" for m in metrics] + ["N"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {m: _best([r["values"].get(m) for r in rows], higher.get(m, True)) for m in metrics}
    for r in rows:
        cells = [r["model"] + (f" {STALE_MARK}" if r.get("stale") else "")]
        for m in metrics:
            v = r["values"].get(m)
            s = fmt(v)
            if v is not None and best[m] is not None and v == best[m] and len(rows) > 1:
                s = f"**{s}**"
            ci = r.get("ci", {}).get(m)
            if ci and v is not None and all(c is not None and math.isfinite(c) for c in ci):
                s += f" [{fmt(ci[0])}, {fmt(ci[1])}]"
            if v is not None and r.get("proxy", {}).get(m):
                s += PROXY_MARK
            if v is not None and r.get("custom", {}).get(m):
                s += CUSTOM_MARK
            cells.append(s)
        cells.append(str(r.get("n", DASH)))
        lines.append("| " + " | ".join(cells) + " |")
    for p in published:
        # Published numbers are shown as printed in the source: no added or dropped digits.
        cells = [f"{p.model} (published)"] + [DASH if p.values.get(m) is None else f"{p.values[m]:g}"
                                              for m in metrics] + [DASH if p.n is None else str(p.n)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_from_results(docs: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[dict]:
    rows = []
    for d in docs:
        row = {"model": d.get("model", "?"), "values": {}, "ci": {}, "proxy": {}, "n": d["pairing"]["n_scored_pairs"],
               "stale": d.get("stale_checkpoint")}
        for m in metrics:
            res = d["metrics"].get(m)
            if res is None:
                continue
            row["values"][m] = res.get("value")
            row["ci"][m] = res.get("ci")
            row["proxy"][m] = bool(res.get("proxy"))
            row.setdefault("custom", {})[m] = bool(res.get("custom"))
        rows.append(row)
    return rows


def footer(docs: Sequence[dict[str, Any]]) -> str:
    if not docs:
        return "_No results yet._"
    d = docs[0]
    code = d.get("code", {})
    fps = sorted({x["dataset"]["fingerprint"][:16] for x in docs})
    any_proxy = any(m.get("proxy") for x in docs for m in x["metrics"].values())
    digests = sorted({(x.get("code", {}).get("code_digest") or "unknown")[:16] for x in docs})
    parts = [
        f"Dataset `{d['dataset']['name']}` fingerprint `{', '.join(fps)}`; "
        f"foleybench {code.get('harness_version')}, code digest `{', '.join(digests)}`.",
        "Values in brackets are 95% bootstrap intervals over clips (FD: clips resampled in pairs; FD is "
        "biased upward at small N, so its interval can lie above the value). A dash means not measured.",
    ]
    if any_proxy:
        parts.append(f"{PROXY_MARK} proxy evaluator: seeded random-init weights, because the pretrained "
                     "checkpoint is absent on this machine. Such scores check the pipeline; they are not "
                     "comparable to published numbers.")
    custom = sorted({(m.get("provenance", {}).get("embedder", "?"), m.get("provenance", {}).get("checkpoint_sha256") or "?")
                     for x in docs for m in x["metrics"].values() if m.get("custom")})
    if custom:
        parts.append(f"{CUSTOM_MARK} custom checkpoint: " + "; ".join(f"{e} sha256 `{h[:16]}…`" for e, h in custom)
                     + ", not the published weights. Such scores are not comparable to published numbers.")
    if any(m.get("provenance", {}).get("scale") == "clipscore" for x in docs for m in x["metrics"].values()):
        parts.append("clipsim_clipscore is CLIPSIM on CLIPScore's scale, 2.5 x max(cos, 0) per frame (Hessel et al. "
                     "2021), not the raw cosine; that published CLIPSIM values (TempoTokens) are on this scale is a "
                     "hypothesis (docs/PROTOCOL.md).")
    stale = sorted({(x["model"], x["stale_checkpoint"]) for x in docs if x.get("stale_checkpoint")})
    if stale:
        parts.append(f"{STALE_MARK} stale checkpoint (used as shipped; `make train` retrains it): "
                     + "; ".join(f"{m}: {why}" for m, why in stale) + ".")
    return "\n\n".join(parts)


def bar_chart(rows: Sequence[dict[str, Any]], metrics: Sequence[str], higher: dict[str, bool], title: str,
              path: str | Path) -> Path | None:
    """One panel per metric, one bar per model, 95% interval whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if any(r["values"].get(m) is not None for r in rows)]
    if not metrics:
        return None
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, metrics):
        names = [r["model"] for r in rows]
        vals = [r["values"].get(m) for r in rows]
        ys = [v if v is not None else 0.0 for v in vals]
        err = [[0.0] * len(rows), [0.0] * len(rows)]
        for i, r in enumerate(rows):
            ci = r.get("ci", {}).get(m)
            if ci and vals[i] is not None and all(c is not None and math.isfinite(c) for c in ci):
                err[0][i], err[1][i] = max(0.0, vals[i] - ci[0]), max(0.0, ci[1] - vals[i])
        colors = ["#bbbbbb" if v is None else "#3b75af" for v in vals]
        ax.bar(range(len(rows)), ys, yerr=err, color=colors, capsize=3)
        for i, v in enumerate(vals):
            if v is None:
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(rows)), names, rotation=35, ha="right", fontsize=8)
        proxy = any(r.get("proxy", {}).get(m) for r in rows)
        ax.set_title(f"{m} {'↑' if higher.get(m, True) else '↓'}{' (proxy)' if proxy else ''}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
