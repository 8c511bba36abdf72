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


MAX_COUNT = 100_000  # n_boot, n_frames...: more is a typo, and would run for days, not fail
# Counts for which 0 has no "off" meaning: at least one.
_AT_LEAST_ONE = ("n_frames", "n_splits", "workers")
_RANGES = {"ddof": (0, 1)}  # covariance normalisation: N - 0 or N - 1, nothing else


def _value_problem(key: str, value: Any) -> str | None:
    """Why a well-typed option value still cannot be meant, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return f"must be finite, got {value!r}"
    if key in _RANGES and not _RANGES[key][0] <= value <= _RANGES[key][1]:
        lo, hi = _RANGES[key]
        return f"must be {lo} or {hi}, got {value!r}" if hi - lo == 1 else f"must be in [{lo}, {hi}], got {value!r}"
    if key in _AT_LEAST_ONE and value < 1:
        return f"must be >= 1, got {value!r}"
    if key.startswith("n_") and value < 0:
        # counts (n_boot...) below 0 have no meaning; 0 switches a feature off
        return f"must be >= 0, got {value!r}"
    if key.startswith("n_") and value > MAX_COUNT:
        return f"must be <= {MAX_COUNT}, got {value!r}"
    if key.endswith("_s") and value < 0:
        return f"must be >= 0 seconds, got {value!r}"
    return None


def check_metric(name: str, task: str, opts: dict[str, Any] | None = None) -> type:
    """The class of registered metric ``name``, once it is known to serve ``task`` (its
    class attribute ``tasks``) and to accept ``opts`` (keys, types, signs); raises
    :class:`FoleybenchError` otherwise. Imports the metric's module, builds nothing."""
    from foleybench.registry import METRICS

    entry = METRICS.entry(name)
    cls = entry.load()
    tasks = getattr(cls, "tasks", None)
    if not tasks:
        raise FoleybenchError(f"metric {name!r}: its class {cls.__name__} declares no tasks")
    if task not in tasks:
        raise FoleybenchError(f"metric {name!r} does not apply to {task} (it applies to {', '.join(tasks)})")
    params = inspect.signature(cls.__init__).parameters
    known = [k for k in params if k not in ("self", "ctx")]
    for key, value in (opts or {}).items():
        if key in entry.kwargs:  # fd_melstat.embedder=panns would score PANNs under melstat's name
            raise FoleybenchError(f"{name}.{key}: fixed by the metric's name ({key}={entry.kwargs[key]!r}); "
                                  f"ask for the metric you mean (`foleybench list metrics`)")
        if key not in known:
            raise FoleybenchError(f"{name}.{key}: metric {name!r} has no option {key!r} (options: {known})")
        allowed = _allowed(params[key])
        if allowed and not _fits(value, allowed[0]):
            raise FoleybenchError(f"{name}.{key}: expected {allowed[1]}, got {value!r}")
        problem = _value_problem(key, value)
        if problem:
            raise FoleybenchError(f"{name}.{key}: {problem}")
    return cls


def check_metric_options(names: Sequence[str], metric_opts: dict[str, dict[str, Any]], task: str) -> list[type]:
    """:func:`check_metric` for every name, and no options for a metric not asked for."""
    for name in metric_opts:
        if name not in names:
            raise FoleybenchError(f"--opt {name}.*: metric {name!r} is not among the metrics {list(names)}")
    return [check_metric(n, task, metric_opts.get(n, {})) for n in names]
