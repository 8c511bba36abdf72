"""Leaderboard markdown, chart and drift values of the curate benchmark (``curate_eval``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from foleybench.leaderboard import fmt
from foleybench.spec import BenchSpec


def render_markdown(result: dict[str, Any], spec: BenchSpec, png_name: str | None) -> str:
    n, k = result["n"], len(result["corrupted"])
    lines = [f"## Dropped set vs the {k} corrupted clips of {n} ({spec.units})", "",
             f"Corrupted (audio swapped in a cycle, seed {spec.seed}): {', '.join(result['corrupted'])}; "
             f"{result['same_class_swaps']} of the {k} swaps are between clips of the same class.", "",
             "| scorer | rule | precision ↑ | recall ↑ | dropped | excluded | rule | precision ↑ | recall ↑ "
             "| dropped | excluded |", "|" + "---|" * 11]
    for r in result["rows"]:
        cells = []
        for label in ("top", "default"):
            s = r[label]
            cells += [f"`{s['rule']}`", fmt(s["precision"]), fmt(s["recall"]), str(s["n_dropped"]), str(s["n_excluded"])]
        proxy = " (proxy weights)" if "proxy" in str(r["provenance"]).lower() else ""
        lines.append(f"| {r['title']}{proxy} | " + " | ".join(cells) + " |")
    lines += ["", "`top:0.8` is told the corruption rate (it drops as many clips as were corrupted, so precision "
              "= recall); the second block is each scorer's own default rule. Goal for the trained scorer "
              "(avc): precision and recall at least 0.9."]
    if result.get("real"):
        lines += ["", f"### Real clips (../shared/data/{Path(result['real_dir']).name}): own audio vs own video", "",
                  "| clip | " + " | ".join(result["real"]) + " |", "|" + "---|" * (1 + len(result["real"]))]
        ids = sorted({c for v in result["real"].values() for c in list(v["scores"]) + list(v["excluded"])})
        for c in ids:
            cells = [fmt(v["scores"][c]) + (" (kept)" if c in v["kept"] else "") if c in v["scores"]
                     else f"excluded: {v['excluded'].get(c, '?')}" for v in result["real"].values()]
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        lines += ["", "Rules: " + "; ".join(f"{s}: `{v['rule']}`" for s, v in result["real"].items())
                  + ". Real clips are not in the goldens (the folder may be absent). AV-Align is not run on "
                  "them here (optical flow over 10 s of 720p costs ~2 CPU minutes): `foleybench curate --data "
                  "../shared/data/realclips --scorer av_align --out DIR`."]
    if png_name:
        lines += ["", f"![scores per scorer]({png_name})"]
    return "\n".join(lines)


def bar_chart(result: dict[str, Any], spec: BenchSpec, path: str | Path) -> Path:
    """Per scorer: the scores of clean and corrupted clips (strip plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result["rows"]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3))
    bad = set(result["corrupted"])
    for ax, r in zip(np.atleast_1d(axes), rows):
        for x, sel in enumerate((False, True)):  # clean, corrupted
            v = [s for c, s in r["scores"].items() if (c in bad) == sel]
            ax.scatter(x + np.linspace(-0.15, 0.15, len(v)), v, s=10)
        ax.set_xticks([0, 1], ["clean", "corrupted"])
        ax.set_title(r["title"], fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def flat_values(result: dict[str, Any], spec: BenchSpec) -> dict[str, dict[str, dict[str, float | None]]]:
    """``top|default -> scorer -> precision|recall``."""
    return {label: {r["scorer"]: {"precision": r[label]["precision"], "recall": r[label]["recall"]}
                    for r in result["rows"]} for label in ("top", "default")}
