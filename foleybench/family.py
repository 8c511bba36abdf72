"""Model family records: each family declares itself once, and the core finds it.

A family module under ``baselines/`` calls :func:`register_family` at import time with
a :class:`Family`: its name and task, its configs by tag, its builder, its trainer (if
any), how its checkpoints are read and hashed, and one :class:`CheckpointRecord` per
checkpoint. :func:`discover` imports every module of the ``foleybench.baselines``
package, so the core names no family; ``foleybench list models``, ``generate``,
``train``, ``make train`` and the stale check all work from these records.

A tag's kind is its last ``_``-separated word:
- ``debug``: seeded random init (``weights: random-init`` in params), seconds on CPU;
- ``tiny``: trained on synthfoley on a CPU; a model name only when its checkpoint
  record exists (the file ships in the family's ``checkpoint_dir``);
- ``paper``: the published size, weights from the weights directory; its record gives
  the file and URL, and a missing file raises ``weights.MissingWeightsError``.
Any tag can be trained (``foleybench train --model FAMILY.TAG``); that is how a tiny
checkpoint or paper weights come to exist before their record does.

The recipe hash (``Family.recipe_hash``) is sha256 over the config as the family stores
it (``recipe_config``), the steps, the seed and the declaring module's ``CODE_VERSION``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import pkgutil
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from foleybench.api import FoleybenchError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from foleybench.datasets.base import Manifest

log = logging.getLogger("foleybench")
PACKAGE = "foleybench.baselines"
TASKS = ("v2a", "a2v")
KINDS = ("debug", "tiny", "paper")
NO_RELEASE = "none: no public release"


@dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint of a family config.

    tiny: ``file`` ships in the family's checkpoint_dir; ``sha256`` is the file's,
    ``recipe_hash`` the recipe it was trained under (today's config of the tag must hash
    to it) and ``data_fingerprint`` the content fingerprint of the train split it saw.
    paper: ``file`` lives in the weights directory and ``url`` says where it comes from;
    sha256 is None until a file is published.
    """

    tag: str
    file: str
    sha256: str | None = None
    recipe_hash: str | None = None
    data_fingerprint: str | None = None
    url: str = ""


class Trainer(ABC):
    """A family's hooks for the seeded, resumable driver in ``foleybench.train``.

    The driver owns seeding, Adam at ``cfg.lr`` with cosine decay to 10% over
    ``cfg.steps``, gradient clipping, resumable checkpoints and the loss plot; batch t is
    drawn with ``rng = default_rng([seed, t])``.
    """

    @abstractmethod
    def build_net(self, cfg: Any) -> torch.nn.Module:
        """The trainable network for ``cfg`` (initialised from the global torch seed)."""

    @abstractmethod
    def load_data(self, train_split: Manifest, cfg: Any) -> Sequence[Any]:
        """Training examples decoded once from the train split (empty: nothing usable)."""

    @abstractmethod
    def batch(self, data: Sequence[Any], cfg: Any, rng: np.random.Generator) -> Any:
        """One training batch drawn with ``rng`` only."""

    @abstractmethod
    def loss(self, net: torch.nn.Module, batch: Any, cfg: Any) -> torch.Tensor:
        """Scalar training loss of ``net`` on ``batch``."""

    def loss_label(self, cfg: Any) -> str:
        """Y axis label of the loss plot (units)."""
        return "training loss"


@dataclass(frozen=True)
class Family:
    """One model family: ``name.tag`` names, how to build, train and check them.

    builder: ``builder(config, *, name, checkpoint, device, **options) -> Generator``;
    ``checkpoint`` is None for random init, else a file ``load_checkpoint`` reads.
    load_checkpoint: path -> the checkpoint dict the driver writes (``state_dict``,
    ``config``, ``recipe_hash``, ``data_fingerprint``, ``steps_done``, ...).
    recipe_config: config -> plain data, stored in checkpoints and hashed.
    """

    name: str
    task: str
    module: str
    configs: Mapping[str, Any]
    builder: Callable[..., Any]
    load_checkpoint: Callable[[Path], dict[str, Any]]
    checkpoint_dir: Path
    checkpoints: Mapping[str, CheckpointRecord] = field(default_factory=dict)
    trainer: Trainer | None = None
    recipe_config: Callable[[Any], dict[str, Any]] = dataclasses.asdict
    paper: str = ""

    def code_version(self) -> str:
        """The declaring module's ``CODE_VERSION``, read now (bumping it stales checkpoints)."""
        mod = sys.modules.get(self.module) or importlib.import_module(self.module)
        return str(getattr(mod, "CODE_VERSION", "0"))

    def recipe_hash(self, cfg: Any, steps: int | None = None, seed: int = 0) -> str:
        """sha256 of (recipe config, steps (default ``cfg.steps``), seed, code version)."""
        blob = json.dumps({"config": self.recipe_config(cfg), "steps": int(cfg.steps if steps is None else steps),
                           "seed": int(seed), "code_version": self.code_version()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def model_names(self) -> list[str]:
        """Names that can be generated with: debug and paper tags, tiny tags with a record."""
        return [f"{self.name}.{t}" for t in self.configs if tag_kind(t) != "tiny" or t in self.checkpoints]

    def shipped(self) -> list[str]:
        """Tags whose trained checkpoint ships with the code (tiny tags with a record)."""
        return [t for t in self.checkpoints if tag_kind(t) == "tiny"]

    def checkpoint_path(self, tag: str) -> Path:
        """Where ``tag``'s checkpoint is (shipped: checkpoint_dir; paper: weights dir)."""
        rec = self.checkpoints.get(tag)
        fname = rec.file if rec else f"{self.name}.{tag}.pt"
        if tag_kind(tag) == "paper":
            from foleybench.weights import weights_dir

            return weights_dir() / fname
        return self.checkpoint_dir / fname


def tag_kind(tag: str) -> str:
    """``debug``, ``tiny`` or ``paper``: the last ``_``-separated word of the tag."""
    kind = tag.rsplit("_", 1)[-1]
    if kind not in KINDS:
        raise FoleybenchError(f"config tag {tag!r} must end in one of {KINDS}")
    return kind


_FAMILIES: dict[str, Family] = {}
_discovered = False


def register_family(fam: Family) -> Family:
    """Record ``fam`` (called by its module at import). Checks the record's consistency;
    a paper record becomes a weights record (``foleybench weights list`` shows it)."""
    if fam.task not in TASKS:
        raise FoleybenchError(f"family {fam.name!r}: task {fam.task!r} is not one of {TASKS}")
    for tag in fam.configs:
        if tag_kind(tag) == "paper" and tag not in fam.checkpoints:
            raise FoleybenchError(f"family {fam.name!r}: paper config {tag!r} needs a checkpoint record (file, url)")
    for tag, rec in fam.checkpoints.items():
        if tag != rec.tag or tag not in fam.configs:
            raise FoleybenchError(f"family {fam.name!r}: checkpoint record {tag!r} names no config of the family")
        if tag_kind(tag) == "tiny" and not (rec.sha256 and rec.recipe_hash and rec.data_fingerprint):
            raise FoleybenchError(f"family {fam.name!r}: shipped record {tag!r} needs sha256, recipe hash and "
                                  "data fingerprint (`python -m foleybench.train --model` prints them)")
    old = _FAMILIES.get(fam.name)
    if old is not None and old.module.rsplit(".", 1)[-1] != fam.module.rsplit(".", 1)[-1]:
        raise FoleybenchError(f"family {fam.name!r} declared in {old.module} and in {fam.module}")
    if old is None:  # the same module imported under a second name (baselines.x) keeps the first
        _FAMILIES[fam.name] = fam
        from foleybench.weights import WeightRecord, register

        for tag, rec in fam.checkpoints.items():
            if tag_kind(tag) == "paper":
                register(WeightRecord(f"{fam.name}.{tag}", rec.file, rec.url or NO_RELEASE, rec.sha256,
                                      "as the family's code", fam.paper,
                                      f"make it with `foleybench train --model {fam.name}.{tag} --data DIR` "
                                      "(written to the weights directory)"))
    return _FAMILIES[fam.name]


def discover() -> dict[str, Family]:
    """Import every module of ``foleybench.baselines`` once; {name: Family} of those declared."""
    global _discovered
    if not _discovered:
        _discovered = True  # a module that calls discover() while imported must not recurse
        pkg = importlib.import_module(PACKAGE)
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            try:
                importlib.import_module(f"{PACKAGE}.{info.name}")
            except ModuleNotFoundError as exc:  # an optional dependency of one module
                log.warning("%s.%s not loaded: %s", PACKAGE, info.name, exc)
        from foleybench import registry

        if registry.load_families not in registry.MODELS._pending:
            # a module read MODELS while being imported (foleygen's `in MODELS`), which ran
            # the deferred registration with the families found so far: add the rest now
            registry.load_families()
    return dict(_FAMILIES)


def families() -> list[Family]:
    """Every registered family, by name."""
    return [f for _, f in sorted(discover().items())]


def split_name(name: str, configs_only: bool = True) -> tuple[Family, str]:
    """``family.tag`` -> (Family, tag). Any config tag when ``configs_only`` (training),
    else only model names (:meth:`Family.model_names`)."""
    from foleybench.registry import UnknownNameError

    fams = discover()
    fam_name, _, tag = name.partition(".")
    fam = fams.get(fam_name)
    known = [f"{f.name}.{t}" for f in fams.values() for t in f.configs] if configs_only else \
        [n for f in fams.values() for n in f.model_names()]
    if fam is None or name not in known:
        raise UnknownNameError("model", name, known)
    return fam, tag


def build_model(name: str, task: str | None = None, device: str = "cpu", checkpoint: str | Path | None = None,
                **options: Any) -> Any:
    """Registry constructor of every family model: weights by the tag's kind (debug: seeded
    random init; tiny: the shipped file; paper: the weights dir), then the family builder."""
    fam, tag = split_name(name, configs_only=False)
    if task is not None and task != fam.task:
        raise FoleybenchError(f"{name} does {fam.task}, not {task}")
    kind = tag_kind(tag)
    if checkpoint is None and kind == "tiny":
        checkpoint = fam.checkpoint_path(tag)
        if not checkpoint.is_file():
            raise FoleybenchError(f"{name}: shipped checkpoint {checkpoint} is missing (`make train` makes it)")
    elif checkpoint is None and kind == "paper":
        from foleybench.weights import resolve

        checkpoint, _ = resolve(name)  # a missing file: the error names file, URL and how to make it
    return fam.builder(fam.configs[tag], name=name, checkpoint=checkpoint, device=device, **options)
