"""Leaderboard markdown and chart for the Martel & Wagner Table I benchmark.

Rows are the three synthfoley classes standing for their test videos, columns the three
families' validation cross-entropy (lower is better; the best of each row in bold); the
published Table I follows as its own block (their scale differs: see the description).
The ablation table gives each family's CE with true, zeroed and shuffled video context
and the differences, so whether video helps is read off directly, either way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from foleybench.baselines import martel_wagner as mw
from foleybench.leaderboard import fmt

TITLES = {"deepfusion": "Deep fusion", "wavenet_video": "WaveNet-based", "av_transformer": "Aud & Vid Transformer"}


def _bold_min(vals: list[float | None]) -> list[str]:
    finite = [v for v in vals if v is not None]
    best = min(finite) if finite else None
    return [f"**{fmt(v)}**" if v is not None and v == best else fmt(v) for v in vals]


def render_markdown(result: dict[str, Any], spec: dict[str, Any], png_name: str | None) -> str:
    fams = list(mw.FAMILIES)
    head = "| test video (synthfoley class) | " + " | ".join(f"{TITLES[f]} ↓" for f in fams) + " | N clips |"
    lines = [f"## Table I: validation cross-entropy ({result['units']})", "", head, "|" + "---|" * (len(fams) + 2)]
    for r in result["rows"]:
        cells = _bold_min([r.get(f) for f in fams])
        lines.append(f"| {r['stands_for']} ({r['class']}) | " + " | ".join(cells) + f" | {r['n_clips']} |")
    lines += ["", f"Published ({result['source']}; their values, not on our scale):", "",
              "| test video | " + " | ".join(TITLES[f] for f in fams) + " |", "|" + "---|" * (len(fams) + 1)]
    for r in result["rows"]:
        lines.append(f"| {r['stands_for']} | " + " | ".join(fmt(r[f"published.{f}"]) for f in fams) + " |")
    lines += ["", "## Does the video help? Cross-entropy of the same trained model", "",
              "| model | true video ↓ | zeroed video | shuffled video | zeroed − true | shuffled − true |",
              "|---|---|---|---|---|---|"]
    for a in result["ablation"]:
        lines.append(f"| {TITLES[a['model']]} | {fmt(a['true'])} | {fmt(a['zeroed'])} | {fmt(a['shuffled'])} | "
                     f"{a['zeroed'] - a['true']:+.4f} | {a['shuffled'] - a['true']:+.4f} |")
    helps = [TITLES[a["model"]] for a in result["ablation"] if a["true"] < min(a["zeroed"], a["shuffled"])]
    lines += ["", f"Video context lowers the cross-entropy for {len(helps)} of {len(result['ablation'])} models"
              + (f" ({', '.join(helps)})." if helps else ".")]
    if png_name:
        lines += ["", f"![Table I and ablation]({png_name})"]
    lines += ["", "Checkpoints: " + "; ".join(
        f"{m['model']} sha256 `{str(m.get('checkpoint_sha256', ''))[:12]}` data `{str(m.get('data_fingerprint', ''))[:12]}`"
        for m in result["models"].values())]
    return "\n".join(lines)


def bar_chart(result: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fams = list(mw.FAMILIES)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    x = np.arange(len(result["rows"]))
    for i, f in enumerate(fams):
        ax1.bar(x + (i - 1) * 0.27, [r.get(f) or 0 for r in result["rows"]], 0.27, label=TITLES[f])
    ax1.set_xticks(x, [r["stands_for"] for r in result["rows"]])
    ax1.set_ylabel("CE, nats/sample ↓")
    ax1.set_title("Table I on synthfoley")
    ax1.legend(fontsize=7)
    conds = ["true", "zeroed", "shuffled"]
    x = np.arange(len(result["ablation"]))
    for i, c in enumerate(conds):
        ax2.bar(x + (i - 1) * 0.27, [a[c] for a in result["ablation"]], 0.27, label=f"{c} video")
    ax2.set_xticks(x, [TITLES[a["model"]] for a in result["ablation"]], fontsize=8)
    ax2.set_title("video-context ablation")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def flat_values(result: dict[str, Any]) -> dict[str, float | None]:
    """``table1/<class>/<family>`` and ``ablation/<family>/<condition>`` for the drift check."""
    out: dict[str, float | None] = {}
    for r in result["rows"]:
        for f in mw.FAMILIES:
            out[f"table1/{r['class']}/{f}"] = r.get(f)
    for a in result["ablation"]:
        for c in ("true", "zeroed", "shuffled"):
            out[f"ablation/{a['model']}/{c}"] = a[c]
    return out
