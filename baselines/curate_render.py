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
    if result["rows"] and "draws" in result["rows"][0]:
        lines += draws_markdown(result)
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


def _stat(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "—"
    undefined = f"; {s['n_undefined']} undefined" if s["n_undefined"] else ""
    return (f"{s['mean']:.3f} ± {s['sd']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] "
            f"({s['min']:.2f}–{s['max']:.2f}{undefined})")


def draws_markdown(result: dict[str, Any]) -> list[str]:
    """Mean precision and recall over the corruption draws, per scorer and rule."""
    n, seeds = result["n_draws"], result["draw_seeds"]
    lines = ["", f"## Over {n} corruption draws (seeds {seeds[0]}–{seeds[-1]}, {len(result['corrupted'])} of "
             f"{result['n']} clips each)", "",
             f"Each draw swaps the audio of another {len(result['corrupted'])} test clips in a cycle; "
             f"{result['same_class_swaps_all']} of the {result['n_swaps_all']} swaps over all draws are between "
             "clips of the same class (the video's kind of sound is right, its timing is not). Cells: mean ± sd "
             "over draws [95% bootstrap interval of the mean] (min–max). The draws share the same test clips, "
             "so the interval describes the draws, not new data.", "",
             "| scorer | rule | precision ↑ | recall ↑ |", "|---|---|---|---|"]
    for r in result["rows"]:
        proxy = " (proxy weights)" if "proxy" in str(r["provenance"]).lower() else ""
        for label in ("top", "default"):
            d = r["draws"][label]
            if label == "default" and d["rule"] == r["draws"]["top"]["rule"]:
                continue  # its default rule is top:0.8, the row above
            default = " (default)" if label == "default" or d["rule"] == r["default"]["rule"] else ""
            lines.append(f"| {r['title']}{proxy} | `{d['rule']}`{default} | {_stat(d['precision'])} | "
                         f"{_stat(d['recall'])} |")
    for r in result["rows"]:
        if r["scorer"] == "avc":
            d = r["draws"]["default"]
            miss = ", ".join(f"{c} ({n}x)" for c, n in d["missed"].items()) or "none"
            lines += ["", f"Corrupted clips {r['title']} kept under `{d['rule']}` over the draws: {miss}."]
    return lines


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
    """``top|default[_mean_over_draws] -> scorer -> precision|recall`` (the seed-0 draw, and
    the mean over all draws)."""
    out = {label: {r["scorer"]: {"precision": r[label]["precision"], "recall": r[label]["recall"]}
                   for r in result["rows"]} for label in ("top", "default")}
    for label in ("top", "default"):
        out[f"{label}_mean_over_draws"] = {r["scorer"]: {k: r["draws"][label][k]["mean"] for k in
                                                          ("precision", "recall")}
                                           for r in result["rows"] if "draws" in r}
    return out
