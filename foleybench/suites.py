"""Named metric suites: ``--metrics @av-benchmark`` scores a paper's set of columns under its protocol.

A suite names the metrics one published protocol reports, the task, the clip length it
scores (``clip_seconds``, applied to the run: ``--clip-seconds`` may repeat it, not change
it) and, for the record, the rate and input each metric sees there. ``foleybench list
suites`` prints them. The suite and its protocol are written into the results document
(``suite``).

A suite may name a metric foleybench does not implement yet (``PLANNED``; DeSync was one):
such a metric is not an unknown name but an honest gap. A run scores the rest and
reports it in ``metrics`` as ``{"value": null, "available": false, "extras": {"reason":
"not available: ..."}}``; nothing crashes and nothing is filled in. Once the metric is
registered it is scored like any other, with no change here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from foleybench.api import FoleybenchError

PREFIX = "@"


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    task: str
    metrics: tuple[str, ...]
    clip_seconds: float | None     # None: whole clips
    inputs: dict[str, str]         # metric -> the rate and input it takes under this protocol
    source: str

    def describe(self) -> dict[str, Any]:
        """What the results document records about the suite."""
        return {"name": self.name, "task": self.task, "metrics": list(self.metrics),
                "clip_seconds": self.clip_seconds, "inputs": dict(self.inputs), "source": self.source}

    def line(self) -> str:
        """One line of ``foleybench list suites``."""
        length = "whole clips" if self.clip_seconds is None else f"{self.clip_seconds:g} s clips"
        return f"{PREFIX}{self.name:14s} {self.task}  {length:12s} {','.join(self.metrics)}"


# Metrics a suite names that are not implemented: direction and why (see the module doc).
# Empty since DeSync was built; the mechanism stays for the next paper's gap.
PLANNED: dict[str, dict[str, Any]] = {}

SUITES: dict[str, Suite] = {s.name: s for s in [
    Suite("av-benchmark", "MMAudio Table 1 (hkchengrex/av-benchmark)", "v2a",
          ("fd_passt", "fd_panns", "fd_vggish", "kl_panns", "kl_passt", "is_panns", "ib_score", "desync"),
          8.0,
          {"fd_passt": "PaSST, 32 kHz, 8 s zero-padded to 10 s", "kl_passt": "PaSST, 32 kHz, 8 s zero-padded to 10 s",
           "fd_panns": "PANNs Cnn14, 16 kHz, 8 s", "kl_panns": "PANNs Cnn14, 16 kHz, 8 s",
           "is_panns": "PANNs Cnn14, 16 kHz, 8 s; 10 splits, seed 2020", "fd_vggish": "VGGish, 16 kHz, 0.96 s frames",
           "ib_score": "ImageBind: audio 16 kHz (3 x 2 s), video frames at 0.5 fps",
           "desync": "Synchformer: audio 16 kHz log-mel, video 25 fps 224 px, first and last 4.8 s windows"},
          "hkchengrex/av-benchmark (evaluate.py, extract.py), as MMAudio (Cheng et al. 2024) Table 1"),
    Suite("tempotokens", "TempoTokens Table 1 (audio to video)", "a2v",
          ("fvd", "clipsim", "is_c3d", "av_align"),
          None,
          {"fvd": "I3D, 16 frames from the start at native fps, 224x224", "clipsim": "CLIP ViT-B/32, 8 frames",
           "is_c3d": "C3D, 16 frames, 112x112; 10 splits, seed 42",
           "av_align": "audio onsets at 22050 Hz, video flow at native fps"},
          "Yariv et al., TempoTokens (arXiv 2309.16429) Table 1; av_align.py (2025 revision)"),
    Suite("foleygen", "FoleyGen Table 1 (FAD, KLD, ImageBind score)", "v2a",
          ("fd_vggish", "kl_panns", "ib_score"),
          10.0,
          {"fd_vggish": "VGGish, 16 kHz, 0.96 s frames", "kl_panns": "PANNs Cnn14, 16 kHz",
           "ib_score": "ImageBind: audio 16 kHz (3 x 2 s), video frames at 0.5 fps"},
          "Mei et al., FoleyGen (arXiv 2309.10537) Table 1: FAD as fd_vggish, KLD as kl_panns; 10 s VGGSound "
          "clips (assumed: the paper generates 10 s and names no shorter cut)"),
]}


def get(name: str) -> Suite:
    """The suite ``name`` (with or without the leading ``@``); unknown: did-you-mean error."""
    key = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if key not in SUITES:
        from foleybench.registry import UnknownNameError

        raise UnknownNameError("suite", key, sorted(SUITES))
    return SUITES[key]


def names() -> list[str]:
    return sorted(SUITES)


def is_planned(metric: str) -> bool:
    """A metric a suite names that foleybench does not implement (and that is not registered)."""
    from foleybench.registry import METRICS

    return metric in PLANNED and metric not in METRICS


def expand(items: Sequence[str], task: str | None = None) -> tuple[list[str], Suite | None]:
    """``["@av-benchmark", "fd_melstat"]`` -> (metric names in order without repeats, the suite).

    At most one suite per run (one protocol); ``task``, when given, must be the suite's.
    """
    out: list[str] = []
    suite: Suite | None = None
    for item in items:
        if not item.startswith(PREFIX):
            out.append(item)
            continue
        s = get(item)
        if suite is not None and s.name != suite.name:
            raise FoleybenchError(f"--metrics: one suite per run ({PREFIX}{suite.name} and {PREFIX}{s.name} have "
                                  "their own protocols); score them separately")
        if task is not None and s.task != task:
            raise FoleybenchError(f"--metrics {PREFIX}{s.name}: the suite scores {s.task}, not {task}")
        suite = s
        out += s.metrics
    return list(dict.fromkeys(out)), suite


def clip_seconds(suite: Suite | None, given: float | None) -> float | None:
    """The run's clip length: the suite's, which an explicit ``--clip-seconds`` may repeat
    but not change (a different length is another protocol)."""
    if suite is None:
        return given
    if given is not None and given != suite.clip_seconds:
        length = "whole clips" if suite.clip_seconds is None else f"{suite.clip_seconds:g} s"
        raise FoleybenchError(f"--clip-seconds {given:g}: suite {PREFIX}{suite.name} scores {length}; drop "
                              "--clip-seconds, or name the metrics instead of the suite to use another length")
    return suite.clip_seconds


def split_planned(metrics: Sequence[str]) -> tuple[list[str], list[str]]:
    """(metrics to score, planned metrics to report as not available), each in order."""
    planned = [m for m in metrics if is_planned(m)]
    return [m for m in metrics if m not in planned], planned


def unavailable_result(metric: str) -> dict[str, Any]:
    """The results entry of a planned metric (same keys as a scored one)."""
    info = PLANNED[metric]
    return {"value": None, "n": 0, "ci": None, "extras": {"reason": f"not available: {info['why']}"},
            "available": False, "higher_is_better": info["higher_is_better"], "proxy": False, "custom": False,
            "provenance": {"metric": metric, "available": False}, "excluded": [], "options": {},
            "seconds": 0.0}


def expand_spec_metrics(spec: Any) -> Any:
    """A benchmark spec whose task metrics may name a suite (``metrics: ["@av-benchmark"]``):
    the suite expanded, its clip length applied (a spec's own different length is an error),
    and planned metrics' directions added for the table's arrows."""
    from foleybench.spec import SpecError

    tasks, length, higher = {}, spec.clip_seconds, dict(spec.higher_is_better)
    for task, t in spec.tasks.items():
        try:
            metrics, suite = expand(t.metrics, task)
            length = clip_seconds(suite, length) if suite else length
        except FoleybenchError as exc:
            raise SpecError(spec.path, f"tasks.{task}.metrics: {exc}") from None
        tasks[task] = dataclasses.replace(t, metrics=metrics)
        higher.update({m: PLANNED[m]["higher_is_better"] for m in metrics if is_planned(m)})
    return dataclasses.replace(spec, tasks=tasks, clip_seconds=length, higher_is_better=higher)
