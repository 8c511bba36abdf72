"""``foleybench curate``: keep the clips whose own sound belongs to their own picture.

A scorer rates every clip's own audio against its own video; a keep rule selects clips;
the output folder gets ``manifest.csv`` (the kept clips, media paths pointing at the
originals, plus a ``score`` column), ``report.json`` (scorer, provenance, rule, every
score, kept / dropped / excluded ids), ``report.md`` and ``scores.png`` (histogram with
the threshold). Clips a scorer cannot score (no audio track, no onsets for AV-Align) are
excluded with their reason: dropped, never given a made-up score.

Keep rules (``--keep``): ``above:T`` keeps score >= T; ``below:T`` keeps score <= T (the
seed also selects clips of low correspondence); ``top:F`` keeps the round(F * n) highest
scores (ties broken by clip id). Scorers are listed by ``foleybench list scorers``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from foleybench.api import FoleybenchError, ScoreContext

# name -> (entry point, description, default keep rule). An entry point returns
# ({clip id: score}, {clip id: why excluded}, provenance).
SCORERS: dict[str, tuple[str, str, str]] = {
    "avc": ("foleybench.baselines.correspondence:score_manifest",
            "our audio-visual correspondence model (trained on synthfoley), P(match)", "above:0.5"),
    "ib_score": ("foleybench.curate:score_ib", "ImageBind cosine x 100 (proxy weights unless pretrained)",
                 "top:0.8"),
    "av_align": ("foleybench.curate:score_av_align", "AV-Align: audio onsets vs optical-flow peaks, [0, 1]",
                 "top:0.8"),
}


def scorer_names() -> list[str]:
    return sorted(SCORERS)


def get_scorer(name: str) -> Callable[..., tuple[dict[str, float], dict[str, str], dict[str, Any]]]:
    from foleybench.registry import Entry, UnknownNameError

    if name not in SCORERS:
        raise UnknownNameError("scorer", name, scorer_names())
    return Entry(name, SCORERS[name][0]).load()


def _own_pairs(manifest: Any) -> list[Any]:
    from foleybench.api import ClipPair

    return [ClipPair(r.clip_id, "v2a", pred_audio=r.audio_source, ref_audio=r.audio_source, ref_video=r.video,
                     label=r.label) for r in manifest]


def _values(metric: Any) -> dict[str, float]:
    """{clip id: value} of a per-clip-mean metric (metrics/base.py PerClipMean)."""
    ids, values = metric.per_clip()
    return dict(zip(ids, values.tolist()))


def score_ib(manifest: Any, ctx: ScoreContext | None = None) -> tuple[dict[str, float], dict[str, str], dict]:
    """ImageBind score of each clip's own audio and video (metrics.ib_score, per clip)."""
    from foleybench.metrics.ib_score import IBScore

    m = IBScore(ctx or ScoreContext(proxy=True), n_boot=0)
    excluded = dict(m.update(_own_pairs(manifest)))
    return _values(m), excluded, {"scorer": "ib_score", "unit": "cosine x 100", **m.provenance()}


def score_av_align(manifest: Any, ctx: ScoreContext | None = None) -> tuple[dict[str, float], dict[str, str], dict]:
    """AV-Align of each clip's own audio and video (metrics.av_align, per clip)."""
    from foleybench.metrics.av_align import AVAlign

    m = AVAlign(ctx)
    excluded = dict(m.update(_own_pairs(manifest)))
    return _values(m), excluded, {"scorer": "av_align", "unit": "[0, 1]", "metric": m.name,
                                      "version": m.version}


@dataclass(frozen=True)
class KeepRule:
    kind: str   # above | below | top
    value: float

    @classmethod
    def parse(cls, text: str) -> "KeepRule":
        kind, _, val = text.partition(":")
        try:
            v = float(val)
        except ValueError:
            v = float("nan")
        if kind not in ("above", "below", "top") or v != v or (kind == "top" and not 0 <= v <= 1):
            raise FoleybenchError(f"--keep {text!r}: want above:T, below:T or top:F with F in [0, 1]")
        return cls(kind, v)

    def select(self, scores: dict[str, float]) -> tuple[list[str], float | None]:
        """(kept ids in input order, the threshold used: T, or the lowest kept score for top)."""
        if self.kind == "above":
            return [c for c, s in scores.items() if s >= self.value], self.value
        if self.kind == "below":
            return [c for c, s in scores.items() if s <= self.value], self.value
        n = int(round(self.value * len(scores)))
        best = sorted(scores, key=lambda c: (-scores[c], c))[:n]
        keep = set(best)
        return [c for c in scores if c in keep], (min(scores[c] for c in best) if best else None)


def curate(manifest: Any, scorer: str, out: str | Path, keep: str | None = None,
           ctx: ScoreContext | None = None, scored: tuple[dict, dict, dict] | None = None) -> dict[str, Any]:
    """Score, select and write the curated folder; returns the report (also report.json).

    scored: the scorer's output for this manifest when already computed (one scoring, several rules)."""
    from foleybench.datasets.base import Manifest

    fn = get_scorer(scorer)
    rule = KeepRule.parse(keep or SCORERS[scorer][2])
    scores, excluded, prov = scored if scored is not None else fn(manifest, ctx)
    scores = {r.clip_id: float(scores[r.clip_id]) for r in manifest if r.clip_id in scores}  # manifest order
    kept, threshold = rule.select(scores)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kept_set = set(kept)
    recs = [r for r in manifest if r.clip_id in kept_set]
    text = Manifest(recs, out.resolve()).to_csv_text()  # media outside out/ are written as absolute paths
    rows = list(csv.reader(io.StringIO(text)))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(rows[0] + ["score"])
    for row in rows[1:]:
        w.writerow(row + [repr(scores[row[0]])])
    (out / "manifest.csv").write_text(buf.getvalue())
    dropped = [c for c in scores if c not in kept_set]
    report = {"scorer": scorer, "provenance": prov, "keep": f"{rule.kind}:{rule.value:g}", "threshold": threshold,
              "n_clips": len(manifest), "n_kept": len(kept), "kept": kept, "dropped": dropped,
              "excluded": excluded, "scores": scores,
              "data_fingerprint": manifest.fingerprint()}
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    histogram(scores, threshold, out / "scores.png", f"{scorer} ({prov.get('unit', '')})")
    (out / "report.md").write_text(report_markdown(report))
    return report


def report_markdown(rep: dict[str, Any]) -> str:
    lines = [f"# curate: {rep['scorer']}, keep {rep['keep']}", "",
             f"{rep['n_kept']} of {rep['n_clips']} clips kept; {len(rep['dropped'])} dropped; "
             f"{len(rep['excluded'])} excluded (not scorable). Threshold: {rep['threshold']}.", "",
             "| clip | score | kept |", "|---|---|---|"]
    kept = set(rep["kept"])
    lines += [f"| {c} | {s:.4f} | {'yes' if c in kept else 'no'} |" for c, s in rep["scores"].items()]
    lines += [f"| {c} | — | excluded: {why} |" for c, why in rep["excluded"].items()]
    lines += ["", "![scores](scores.png)"]
    return "\n".join(lines) + "\n"


def histogram(scores: dict[str, float], threshold: float | None, path: Path, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(list(scores.values()), bins=20)
    if threshold is not None:
        ax.axvline(threshold, color="r", ls="--", label="threshold")
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("clips")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def cmd_curate(a: argparse.Namespace) -> int:
    from foleybench import weights
    from foleybench.runner import open_reference

    weights.set_weights_dir(a.weights_dir)
    if a.scorer not in SCORERS:
        get_scorer(a.scorer)  # did-you-mean error before any decoding
    manifest = open_reference(a.data, a.dataset, a.split)
    ctx = ScoreContext(device=a.device, proxy=not a.no_proxy, cache_dir=None, progress=False)
    rep = curate(manifest, a.scorer, a.out, a.keep, ctx)
    print(f"{a.scorer}: kept {rep['n_kept']} of {rep['n_clips']} ({rep['keep']}, threshold {rep['threshold']}); "
          f"{len(rep['excluded'])} excluded -> {Path(a.out) / 'manifest.csv'}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``foleybench curate`` on the CLI's subparsers."""
    p = sub.add_parser("curate", help="keep the clips whose own audio matches their own video (new manifest.csv)")
    p.add_argument("--data", required=True, help="what `score --ref` takes: a manifest folder or media folder")
    p.add_argument("--dataset", choices=["vggsound"], help="read --data as a VGGSound clip folder")
    p.add_argument("--split", default=None)
    p.add_argument("--scorer", required=True, help="see `foleybench list scorers`")
    p.add_argument("--out", required=True, help="output folder (manifest.csv, report.json/.md, scores.png)")
    p.add_argument("--keep", help="above:T, below:T or top:F (default: the scorer's, see `list scorers`)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-proxy", action="store_true", help="fail rather than use proxy ImageBind weights")
    p.add_argument("--weights-dir", help="folder of pretrained checkpoints (default $FOLEYBENCH_WEIGHTS)")
    p.set_defaults(fn=cmd_curate)
