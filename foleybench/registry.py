"""Lazy registries of models, metrics, embedders and datasets.

Entries are recorded as ``"module:attribute"`` strings, so listing names imports
nothing heavy and a broken optional model cannot break ``foleybench list``. Unknown
names raise :class:`UnknownNameError` with close matches ("did you mean").

Model names follow timm's ``family.tag`` habit (``wavenet_video.tiny``) and come from the
family records (``foleybench.family``); the reference baselines keep one plain name each
and serve both tasks.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from foleybench.api import FoleybenchError


class UnknownNameError(FoleybenchError, KeyError):
    def __init__(self, kind: str, name: str, known: list[str]):
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        msg = f"unknown {kind} {name!r}{hint} (`foleybench list {kind}s` shows all {len(known)})"
        self.message = msg
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


@dataclass
class Entry:
    name: str
    target: str  # "module:attribute"
    kwargs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., Any]:
        module, _, attr = self.target.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def build(self, **kwargs: Any) -> Any:
        return self.load()(**{**self.kwargs, **kwargs})


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._pending: list[Callable[[], None]] = []

    def defer(self, fill: Callable[[], None]) -> None:
        """Run ``fill()`` (which adds entries) the first time this registry is read, not now."""
        self._pending.append(fill)

    def _settle(self) -> None:
        while self._pending:
            self._pending.pop(0)()

    def add(self, name: str, target: str, kwargs: dict | None = None, **meta: Any) -> None:
        if name in self._entries and self._entries[name].target != target:
            raise FoleybenchError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = Entry(name, target, dict(kwargs or {}), meta)

    def names(self, pattern: str = "*") -> list[str]:
        self._settle()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def entry(self, name: str) -> Entry:
        self._settle()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.entry(name).build(**kwargs)

    def __contains__(self, name: str) -> bool:
        self._settle()
        return name in self._entries


MODELS = Registry("model")
METRICS = Registry("metric")
EMBEDDERS = Registry("embedder")
DATASETS = Registry("dataset")

_B = "foleybench.baselines"
_M = "foleybench.metrics"

# Reference baselines: one name, both tasks.
for _name, _cls in [("oracle", "Oracle"), ("shuffled", "Shuffled"), ("silence", "Silence"),
                    ("noise", "Noise")]:
    MODELS.add(_name, f"{_B}.reference:{_cls}", tasks=("v2a", "a2v"), family="reference")

# Metrics. Each is built as ``cls(ctx=ScoreContext, **kwargs)``; the tasks it serves are
# the class's ``tasks`` (declared on the class, checked by the runner before any work).
METRICS.add("av_align", f"{_M}.av_align:AVAlign")
for _emb in ["melstat", "vggish", "panns", "clap", "encodec"]:
    METRICS.add(f"fd_{_emb}", f"{_M}.fd:FDMetric", {"embedder": _emb}, modality="audio")
METRICS.add("kl_panns", f"{_M}.kl:KLMetric", {"embedder": "panns"}, modality="audio")
METRICS.add("is_panns", f"{_M}.inception_score:InceptionScore", {"embedder": "panns"}, modality="audio")
METRICS.add("fd_passt", f"{_M}.passt_metrics:PasstFD", modality="audio")
METRICS.add("kl_passt", f"{_M}.passt_metrics:PasstKL", modality="audio")
METRICS.add("is_passt", f"{_M}.inception_score:InceptionScore", {"embedder": "passt"}, modality="audio")
METRICS.add("fvd", f"{_M}.fvd:FVD", modality="video")
METRICS.add("clipsim", f"{_M}.clipsim:CLIPSim", modality="video")
# CLIPScore's scale (2.5 x max(cos, 0)): a hypothesis about TempoTokens' published CLIPSIM (docs/PROTOCOL.md)
METRICS.add("clipsim_clipscore", f"{_M}.clipsim:CLIPSim", {"scale": "clipscore"}, modality="video")
METRICS.add("is_c3d", f"{_M}.inception_score:VideoInceptionScore", {"embedder": "c3d"}, modality="video")
METRICS.add("ib_score", f"{_M}.ib_score:IBScore", modality="cross")
METRICS.add("desync", f"{_M}.desync:DeSync", modality="cross")

# Embedders. Each module exposes ``build(mode="pretrained"|"proxy", checkpoint=None,
# device="cpu", seed=0) -> Embedder``.
for _emb in ["melstat", "vggish", "panns", "passt", "clap", "encodec", "i3d", "c3d", "clip", "imagebind",
             "synchformer"]:
    # vggish and panns: the module without the network (no torch import), so a fully
    # cached re-score builds these embedders without importing their networks.
    _mod = f"{_emb}_embedder" if _emb in ("vggish", "panns") else _emb
    EMBEDDERS.add(_emb, f"{_M}.embedders.{_mod}:build")

# Datasets.
DATASETS.add("synthfoley", "foleybench.datasets.synthfoley:SynthFoley")
DATASETS.add("vggsound", "foleybench.datasets.vggsound:VGGSound")
DATASETS.add("folder", "foleybench.datasets.folder:FolderDataset")


def plugin_modules() -> list[str]:
    """Modules that register more entries when imported (embedders). Model families are
    not listed: :func:`foleybench.family.discover` finds them in ``foleybench.baselines``."""
    return [f"{_M}.zoo"]


def load_plugins() -> None:
    """Import plugin modules; every discovered family's model names join MODELS when
    MODELS is first read (:func:`load_families`). Discovering families imports every
    baseline module (torch among them), which a ``score`` run never needs."""
    for mod in plugin_modules():
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    if load_families not in MODELS._pending:  # as before: each call picks up new families
        MODELS.defer(load_families)


def load_families() -> None:
    """Register every discovered family's model names (and, through discovery, the
    families' weight records). Safe to call more than once."""
    from foleybench import family

    for fam in family.families():
        for name in fam.model_names():
            MODELS.add(name, "foleybench.family:build_model", {"name": name}, tasks=(fam.task,),
                       family=fam.name, paper=fam.paper)
