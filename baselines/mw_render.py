"""Leaderboard markdown and chart for the Martel & Wagner Table I benchmark.

Everything the table shows besides our numbers comes from its spec
(benchmarks/martel-wagner-table1.yaml): column titles and the model each stands for,
row titles, the units, the direction, the published rows with their source and the
ablation's conditions. Rows are the synthfoley classes standing for the paper's test
videos; the best of each row is bold; the published Table I follows as its own block
(their scale differs: see the description). The ablation table gives each model's CE
with each video condition and the differences to the true video, so whether video
helps is read off directly, either way. A column whose checkpoint is stale carries ‡.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from foleybench.leaderboard import STALE_MARK, fmt
from foleybench.spec import BenchSpec

METRIC = "cross_entropy"


def _lower(spec: BenchSpec) -> bool:
    return not spec.higher_is_better.get(METRIC, False)


def _bold_best(vals: list[float | None], lower: bool) -> list[str]:
    finite = [v for v in vals if v is not None]
    best = (min(finite) if lower else max(finite)) if finite else None
    return [f"**{fmt(v)}**" if v is not None and v == best else fmt(v) for v in vals]


def _title(col: Any, stale: dict[str, str]) -> str:
    return col.title + (f" {STALE_MARK}" if col.model in stale else "")


def render_markdown(result: dict[str, Any], spec: BenchSpec, png_name: str | None) -> str:
    cols, arrow, stale = spec.columns, "↓" if _lower(spec) else "↑", result.get("stale", {})
    head = "| test video (synthfoley class) | " + " | ".join(f"{_title(c, stale)} {arrow}" for c in cols) + " | N clips |"
    lines = [f"## Table I: validation cross-entropy ({spec.units})", "", head, "|" + "---|" * (len(cols) + 2)]
    for r in result["rows"]:
        cells = _bold_best([r.get(c.key) for c in cols], _lower(spec))
        lines.append(f"| {r['stands_for']} ({r['class']}) | " + " | ".join(cells) + f" | {r['n_clips']} |")
    published = spec.published.get("table1", [])
    if published:
        sources = "; ".join(sorted({p.source for p in published}))
        lines += ["", f"Published ({sources}; their values, not on our scale):", "",
                  "| test video | " + " | ".join(c.title for c in cols) + " |", "|" + "---|" * (len(cols) + 1)]
        for p in published:
            lines.append(f"| {p.model} | " + " | ".join(fmt(p.values.get(c.key)) for c in cols) + " |")
    if spec.ablation and result.get("ablation"):
        conds = list(spec.ablation.conditions)
        base, others = conds[0], conds[1:]
        lines += ["", f"## {spec.ablation.title}", "",
                  "| model | " + " | ".join(f"{c} video" + (f" {arrow}" if c == base else "") for c in conds)
                  + " | " + " | ".join(f"{c} − {base}" for c in others) + " |",
                  "|" + "---|" * (1 + len(conds) + len(others))]
        titles = {c.key: c.title for c in cols}
        for a in result["ablation"]:
            lines.append(f"| {titles[a['model']]} | " + " | ".join(fmt(a[c]) for c in conds) + " | "
                         + " | ".join(f"{a[c] - a[base]:+.4f}" for c in others) + " |")
        helps = [titles[a["model"]] for a in result["ablation"] if a[base] < min(a[c] for c in others)]
        lines += ["", f"Video context lowers the cross-entropy for {len(helps)} of {len(result['ablation'])} models"
                  + (f" ({', '.join(helps)})." if helps else "."), "",
                  "Conditions: " + "; ".join(f"{c}: {why}" for c, why in spec.ablation.conditions.items()) + "."]
    if png_name:
        lines += ["", f"![Table I and ablation]({png_name})"]
    lines += ["", "Checkpoints: " + "; ".join(
        f"{m['model']} sha256 `{str(m.get('checkpoint_sha256', ''))[:12]}` data `{str(m.get('data_fingerprint', ''))[:12]}`"
        for m in result["models"].values())]
    if stale:
        lines += ["", f"{STALE_MARK} stale checkpoint (used as shipped; `make train` retrains it): "
                  + "; ".join(f"{m}: {why}" for m, why in sorted(stale.items())) + "."]
    return "\n".join(lines)


def bar_chart(result: dict[str, Any], spec: BenchSpec, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = spec.columns
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    x = np.arange(len(result["rows"]))
    w = 0.8 / max(1, len(cols))
    for i, c in enumerate(cols):
        ax1.bar(x + (i - (len(cols) - 1) / 2) * w, [r.get(c.key) or 0 for r in result["rows"]], w, label=c.title)
    ax1.set_xticks(x, [r["stands_for"] for r in result["rows"]])
    ax1.set_ylabel(f"CE, nats/sample {'↓' if _lower(spec) else '↑'}")
    ax1.set_title("Table I on synthfoley")
    ax1.legend(fontsize=7)
    conds = list(spec.ablation.conditions) if spec.ablation else []
    x = np.arange(len(result["ablation"]))
    w = 0.8 / max(1, len(conds))
    titles = {c.key: c.title for c in cols}
    for i, c in enumerate(conds):
        ax2.bar(x + (i - (len(conds) - 1) / 2) * w, [a[c] for a in result["ablation"]], w, label=f"{c} video")
    ax2.set_xticks(x, [titles[a["model"]] for a in result["ablation"]], fontsize=8)
    ax2.set_title("video-context ablation")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def flat_values(result: dict[str, Any], spec: BenchSpec) -> dict[str, dict[str, dict[str, float | None]]]:
    """``table1 -> class -> column`` and ``ablation -> column -> condition``, for the drift check."""
    out: dict[str, dict[str, dict[str, float | None]]] = {"table1": {}, "ablation": {}}
    for r in result["rows"]:
        out["table1"][r["class"]] = {c.key: r.get(c.key) for c in spec.columns}
    for a in result["ablation"]:
        out["ablation"][a["model"]] = {c: a[c] for c in (spec.ablation.conditions if spec.ablation else {})}
    return out
