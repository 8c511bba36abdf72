"""Benchmark specs: benchmarks/NAME.yaml read into typed, validated dataclasses.

Two kinds of benchmark share one spec type:
- *generate-and-score* tables (``tasks``): each task ("v2a", "a2v") lists models and
  metrics; every model generates over the dataset and is scored; rows are models.
- *evaluate* tables (``evaluate`` + ``render``): a function computes plain data from the
  dataset (a paper's training-loss table), a render module turns it into markdown; its
  ``columns``, ``rows``, ``published`` and ``ablation`` come from the spec, not from code.

Every key of the YAML maps to a field below and every field is used; an unknown key
(anywhere, nested too) is an error naming the file and the key, so a typo cannot be
silently ignored. Metric directions come from the metrics themselves (the registry);
``higher_is_better`` in a spec is only for columns no registered metric computes
(published-only columns, evaluate tables' values).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from foleybench.api import FoleybenchError

TASKS = ("v2a", "a2v")


class SpecError(FoleybenchError):
    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class DatasetSpec:
    """name: a registered dataset; its other fields are passed to it (clips, seed, root);
    split: the split scored; train_split: the split models were trained on (evaluate tables);
    limit: score only the split's first ``limit`` clips (a table that would not fit
    ``make bench``'s budget whole says so in its description; ``--limit`` can lower it)."""

    name: str
    clips: int | None = None
    seed: int = 0
    split: str | None = None
    train_split: str | None = None
    root: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class TaskSpec:
    models: list[str]
    metrics: list[str]
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishedRow:
    """A published row shown beside ours: ``model`` is the row's name in the source (for an
    evaluate table, the row it belongs to); values as printed in the source."""

    model: str
    source: str
    values: dict[str, float]
    n: int | None = None


@dataclass(frozen=True)
class ColumnSpec:
    key: str
    title: str
    model: str | None = None


@dataclass(frozen=True)
class RowSpec:
    key: str
    title: str


@dataclass(frozen=True)
class AblationSpec:
    title: str
    conditions: dict[str, str]


@dataclass(frozen=True)
class BenchSpec:
    name: str
    title: str
    dataset: DatasetSpec
    description: str = ""
    seed: int = 0
    proxy: bool = False
    clip_seconds: float | None = None
    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    published: dict[str, list[PublishedRow]] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    # evaluate tables
    evaluate: str | None = None
    render: str | None = None
    units: str | None = None
    columns: list[ColumnSpec] = field(default_factory=list)
    rows: list[RowSpec] = field(default_factory=list)
    ablation: AblationSpec | None = None
    # false: left out of `foleybench bench --all` (make bench); run it by name
    make_bench: bool = True
    path: str = ""

    @property
    def kind(self) -> str:
        return "evaluate" if self.evaluate else "tables"

    def all_models(self) -> list[str]:
        """Every model the benchmark runs, in spec order, without repeats."""
        names = [c.model for c in self.columns if c.model] + [m for t in self.tasks.values() for m in t.models]
        return list(dict.fromkeys(names))

    def with_root(self, root: str | None) -> "BenchSpec":
        return self if not root else dataclasses.replace(self, dataset=dataclasses.replace(self.dataset, root=root))


def _build(tp: Any, value: Any, where: str, path: str) -> Any:
    """Convert YAML data to the annotated type ``tp``, checking keys and scalar types."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value, where, path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SpecError(path, f"{where}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.name != "path"}
        unknown = sorted(set(value) - names)
        if unknown:
            raise SpecError(path, f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
        missing = [f.name for f in dataclasses.fields(tp) if f.name not in value and f.name != "path"
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise SpecError(path, f"{where}: missing key {missing[0]!r}")
        return tp(**{k: _build(hints[k], v, f"{where}.{k}" if where else k, path) for k, v in value.items()})
    if origin is list:
        if not isinstance(value, list):
            raise SpecError(path, f"{where}: expected a list, got {value!r}")
        return [_build(args[0], v, f"{where}[{i}]", path) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(path, f"{where}: expected a mapping, got {value!r}")
        return {str(k): _build(args[1], v, f"{where}.{k}", path) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(path, f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp in (int, bool, str):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise SpecError(path, f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise SpecError(path, f"{where}: unsupported type {tp}")


def parse_spec(data: dict[str, Any], path: str | Path) -> BenchSpec:
    """Validate YAML data into a :class:`BenchSpec` (errors name ``path`` and the key)."""
    path = str(path)
    if not isinstance(data, dict):
        raise SpecError(path, "a benchmark spec is a YAML mapping")
    data = {"name": Path(path).stem, **data}
    spec = _build(BenchSpec, data, "", path)
    spec = dataclasses.replace(spec, path=path)
    bad = sorted(set(spec.tasks) - set(TASKS))
    if bad:
        raise SpecError(path, f"tasks: unknown task {bad[0]!r} (known: {', '.join(TASKS)})")
    bad = sorted(set(spec.published) - set(spec.tasks)) if spec.kind == "tables" else []
    if bad:
        raise SpecError(path, f"published: {bad[0]!r} is not one of this benchmark's tasks")
    if spec.kind == "evaluate" and not spec.render:
        raise SpecError(path, "an evaluate benchmark needs 'render' (the module that renders it)")
    if spec.kind == "evaluate" and spec.tasks:
        raise SpecError(path, "a benchmark has either 'tasks' or 'evaluate', not both")
    if spec.kind == "tables" and not spec.tasks:
        raise SpecError(path, "a benchmark needs 'tasks' (models and metrics per task) or 'evaluate'")
    return spec


def read_spec(path: str | Path) -> BenchSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(path, f"not valid YAML ({exc})") from None
    return parse_spec(data, path)
