"""Drift check: today's numbers against stored goldens, with per-metric tolerances.

Goldens live in ``benchmarks/expected/NAME.json``, values nested the way results are
(task -> model -> metric, or for an evaluate table section -> row -> column)::

    {"tolerances": {"default": {"abs": 1e-6, "rel": 1e-4}, "av_align": {"abs": 1e-3, "rel": 0}},
     "values": {"v2a": {"oracle": {"av_align": 0.61, ...}, ...}, ...}}

Tolerances are looked up by the innermost key (the metric). A value drifts when
``|got - want| > abs + rel * |want|``, when it is missing from today's results, or when
exactly one of the two is None. The verdict prints as a table and ``check`` returns the
exit code (0: no drift, 1: drift).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

from tabulate import tabulate

from foleybench.results import read_json, write_json

DEFAULT_TOL = {"abs": 1e-6, "rel": 1e-4}
Key = tuple[str, ...]


def leaves(tree: dict[str, Any], prefix: Key = ()) -> Iterator[tuple[Key, Any]]:
    """(path, value) for every non-mapping value of a nested mapping, in sorted order."""
    for k in sorted(tree):
        v = tree[k]
        if isinstance(v, dict):
            yield from leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def lookup(tree: dict[str, Any], key: Key) -> Any:
    node: Any = tree
    for part in key:
        if not isinstance(node, dict) or part not in node:
            return "missing"
        node = node[part]
    return node


def tolerance(tols: dict[str, dict[str, float]], key: Key) -> dict[str, float]:
    return {**DEFAULT_TOL, **tols.get("default", {}), **tols.get(key[-1], {})}


def compare(golden: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    tols = golden.get("tolerances", {})
    for key, want in leaves(golden["values"]):
        got = lookup(current, key)
        tol = tolerance(tols, key)
        if got == "missing" or isinstance(got, dict):
            ok, diff, got = False, None, "missing"
        elif want is None or got is None:
            ok, diff = want is None and got is None, None
        else:
            diff = got - want
            ok = math.isfinite(got) and abs(diff) <= tol["abs"] + tol["rel"] * abs(want)
        rows.append({"key": "/".join(key), "expected": want, "got": got, "diff": diff,
                     "tolerance": f"abs {tol['abs']:g} + rel {tol['rel']:g}", "ok": ok})
    return rows


def report(rows: list[dict[str, Any]], only_failures: bool = False) -> str:
    shown = [r for r in rows if not (only_failures and r["ok"])]
    table = [[r["key"], r["expected"], r["got"], "" if r["diff"] is None else f"{r['diff']:+.3e}",
              r["tolerance"], "ok" if r["ok"] else "DRIFT"] for r in shown]
    bad = sum(not r["ok"] for r in rows)
    head = f"drift check: {len(rows) - bad} of {len(rows)} values within tolerance"
    if not shown:
        return head
    return head + "\n" + tabulate(table, headers=["key", "expected", "got", "diff", "tolerance", "status"])


def check(golden_path: str | Path, current: dict[str, Any], only_failures: bool = False) -> tuple[int, str]:
    golden = read_json(golden_path)
    rows = compare(golden, current)
    return (0 if all(r["ok"] for r in rows) else 1), report(rows, only_failures)


def update(golden_path: str | Path, current: dict[str, Any], tolerances: dict | None = None) -> Path:
    """Write today's values as the goldens, keeping existing tolerances."""
    golden_path = Path(golden_path)
    tols = tolerances or (read_json(golden_path).get("tolerances") if golden_path.is_file() else None) or {
        "default": DEFAULT_TOL}
    return write_json(golden_path, {"tolerances": tols, "values": current})
