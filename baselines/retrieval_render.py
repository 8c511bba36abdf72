"""Leaderboard markdown, charts and drift values of the likelihood-retrieval benchmark.

One row per model with the true video and one with zeroed frames, recall@1, recall@5,
median rank and MRR with their 95% bootstrap intervals (over queries), the chance level
beside them, and a plain verdict per model: beats chance when the MRR interval lies
wholly above chance MRR. A second table ranks by column-centred likelihood. One heat map
per model (``NAME-MODEL.png``): raw and column-centred matrices, diagonal = targets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from foleybench.baselines.retrieval import beats_chance
from foleybench.spec import BenchSpec

COLS = (("recall@1", "R@1 ↑"), ("recall@5", "R@5 ↑"), ("median_rank", "median rank ↓"), ("mrr", "MRR ↑"))


def _cell(s: dict[str, Any]) -> str:
    return f"{s['value']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"


def heatmap_name(png_name: str, model: str) -> str:
    return f"{Path(png_name).stem}-{model}.png"


def _table(result: dict[str, Any], kind: str) -> list[str]:
    n, ch = result["n"], result["chance"]
    lines = ["| model | video | " + " | ".join(t for _, t in COLS) + " | beats chance |",
             "|" + "---|" * (len(COLS) + 3)]
    for m in result["models"]:
        for cond in ("true", "zeroed"):
            s = m[cond][kind]
            verdict = "**yes**" if beats_chance(s, n) else "no"
            lines.append(f"| {m['title']} | {cond} | " + " | ".join(_cell(s[k]) for k, _ in COLS) + f" | {verdict} |")
    lines.append("| chance | — | " + " | ".join(f"{ch[k]:.3f}" for k, _ in COLS) + " | — |")
    return lines


def render_markdown(result: dict[str, Any], spec: BenchSpec, png_name: str | None) -> str:
    n = result["n"]
    lines = [f"## Retrieval by likelihood ({spec.units})", "",
             f"Subset: **{n} test clips** (round-robin over the classes), the first {result['window_s']:g} s "
             f"of each: {n} x {n} likelihoods per model and condition (N x N over all test clips would not fit "
             f"`make bench`'s budget). Intervals: 95% bootstrap over the {n} query clips ({result['n_boot']} "
             "resamples, seeded). Ties count as broken at random (expected rank).", ""]
    lines += _table(result, "raw")
    wins = [m["title"] for m in result["models"] if beats_chance(m["true"]["raw"], n)]
    lines += ["", f"Beat chance (MRR interval above {result['chance']['mrr']:.3f}) with the raw likelihood: "
              + (", ".join(wins) if wins else "none") + "."]
    lines += ["", "### Column-centred likelihood (each candidate's mean over queries subtracted)", ""]
    lines += _table(result, "centred")
    wins = [m["title"] for m in result["models"] if beats_chance(m["true"]["centred"], n)]
    lines += ["", "Beat chance with the centred likelihood: " + (", ".join(wins) if wins else "none") + "."]
    if png_name:
        lines += ["", f"![MRR per model]({png_name})", ""]
        lines += [f"![{m['title']}]({heatmap_name(png_name, m['model'])})" for m in result["models"]]
    lines += ["", "Checkpoints: " + "; ".join(
        f"{m['model']} sha256 `{str(m['meta'].get('checkpoint_sha256', ''))[:12]}`" for m in result["models"])]
    return "\n".join(lines)


def heatmap(m: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from foleybench.baselines.retrieval import centred

    L = np.asarray(m["matrix"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, (mat, title) in zip(axes, ((L, "log-likelihood (nats/clip)"), (centred(L), "column-centred (nats)"))):
        im = ax.imshow(mat, cmap="viridis")
        ax.scatter(range(len(L)), range(len(L)), marker="s", s=8, facecolors="none", edgecolors="red", lw=0.6)
        ax.set_xlabel("candidate audio")
        ax.set_ylabel("query video")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{m['title']}: row = query, red = matching audio", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def bar_chart(result: dict[str, Any], spec: BenchSpec, path: str | Path) -> Path:
    """MRR per model and condition with intervals and the chance line; plus one heat map per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    x = np.arange(len(result["models"]))
    for cond, off in (("true", -0.2), ("zeroed", 0.2)):
        s = [m[cond]["raw"]["mrr"] for m in result["models"]]
        v = np.array([e["value"] for e in s])
        err = np.array([[e["value"] - e["ci"][0], e["ci"][1] - e["value"]] for e in s]).T
        ax.bar(x + off, v, 0.4, yerr=err, capsize=3, label=f"{cond} video")
    ax.axhline(result["chance"]["mrr"], color="k", ls="--", lw=1, label="chance")
    ax.set_xticks(x, [m["title"] for m in result["models"]], fontsize=8)
    ax.set_ylabel("MRR ↑")
    ax.set_title(f"likelihood retrieval, {result['n']} clips", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    for m in result["models"]:
        heatmap(m, path.parent / heatmap_name(path.name, m["model"]))
    return path


def flat_values(result: dict[str, Any], spec: BenchSpec) -> dict[str, dict[str, dict[str, float]]]:
    """``raw|centred|zeroed -> model -> column``, for the drift check."""
    out: dict[str, dict[str, dict[str, float]]] = {"raw": {}, "centred": {}, "zeroed": {}}
    for m in result["models"]:
        for sect, s in (("raw", m["true"]["raw"]), ("centred", m["true"]["centred"]), ("zeroed", m["zeroed"]["raw"])):
            out[sect][m["model"]] = {k: s[k]["value"] for k, _ in COLS}
    return out
