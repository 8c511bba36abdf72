"""Metric options (``--opt METRIC.KEY=VALUE``, a spec's ``metric_options``) checked before any work.

A key the metric's constructor does not take, a value of the wrong type (``n_boot=abc``,
``fd_inf=3``) or a metric that does not serve the task is one error naming the metric,
the option and the problem, raised before a file is read. Types come from the
constructor's annotations (``int | None``...), else from its default value.
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

from foleybench.api import FoleybenchError

_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (float, int), "bool": (bool,), "str": (str,),
                                       "None": (type(None),)}


def _allowed(param: inspect.Parameter) -> tuple[tuple[type, ...], str] | None:
    """The types a parameter accepts and their spelling, or None when that is not simple to say."""
    ann = param.annotation
    names: list[str] = []
    if isinstance(ann, str):
        names = [t.strip() for t in ann.split("|")]
    elif isinstance(ann, type):
        names = [ann.__name__]
    if names and all(n in _TYPES for n in names):
        return tuple(t for n in names for t in _TYPES[n]), " or ".join(names)
    default = param.default
    if default is not inspect.Parameter.empty and default is not None and type(default).__name__ in _TYPES:
        n = type(default).__name__
        return _TYPES[n], n
    return None


def _fits(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int to Python, not to a user asking for n_boot
    return isinstance(value, types)


def check_metric_options(entries: Sequence[Any], metric_opts: dict[str, dict[str, Any]], task: str) -> None:
    """Raise :class:`FoleybenchError` for an option or task a metric cannot take (module docstring)."""
    for entry in entries:
        cls = entry.load()
        tasks = getattr(cls, "tasks", ("v2a", "a2v"))
        if task not in tasks:
            raise FoleybenchError(f"metric {entry.name!r} does not apply to {task} (it applies to {', '.join(tasks)})")
        opts = metric_opts.get(entry.name, {})
        params = inspect.signature(cls.__init__).parameters
        known = [k for k in params if k not in ("self", "ctx")]
        for key, value in opts.items():
            if key not in params or key in ("self", "ctx"):
                raise FoleybenchError(f"{entry.name}.{key}: metric {entry.name!r} has no option {key!r} "
                                      f"(options: {known})")
            allowed = _allowed(params[key])
            if allowed and not _fits(value, allowed[0]):
                raise FoleybenchError(f"{entry.name}.{key}: expected {allowed[1]}, got {value!r}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key.startswith("n_") and value < 0:
                # counts (n_boot, n_splits...) below 0 have no meaning; 0 switches a feature off
                raise FoleybenchError(f"{entry.name}.{key}: must be >= 0, got {value!r}")
    for name in metric_opts:
        if name not in {e.name for e in entries}:
            raise FoleybenchError(f"--opt {name}.*: metric {name!r} is not among the metrics {[e.name for e in entries]}")
