"""Progress for long work: a bar on a terminal, plain lines everywhere else.

On a TTY this is tqdm. In a non-TTY run (CI, a log file, a pipe) a bar's carriage
returns would fill the log, so each stage instead prints one line when it ends, with
its count and time (``fd_panns: 4/4 batches in 2.1 s``), plus one line a minute while
a long stage is still running. Every stage of the harness goes through :func:`track`
or :class:`Stage`.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TextIO

HEARTBEAT_S = 60.0


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")


def is_tty(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Stage:
    """A counted stage: ``update(n)``, ``set_postfix(**kw)``, ``close()``; also a context manager.

    total: expected count (None when unknown); initial: count already done (a resumed
    run); unit: what is counted (plural gets an "s")."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "item", initial: int = 0,
                 enabled: bool = True, leave: bool = True, stream: TextIO | None = None):
        self.desc, self.total, self.unit, self.n = desc, total, unit, initial
        self.enabled, self.stream = enabled, stream or sys.stderr
        self.t0 = self.last = time.perf_counter()
        self.postfix: dict[str, Any] = {}
        self._bar = None
        self._closed = False
        if enabled and is_tty(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, file=self.stream)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.perf_counter() - self.last >= HEARTBEAT_S:
            self.last = time.perf_counter()
            self._line("running")

    def set_postfix(self, **kw: Any) -> None:
        self.postfix.update(kw)
        if self._bar is not None:
            self._bar.set_postfix(**kw)

    def _line(self, state: str) -> None:
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        unit = self.unit if self.n == 1 and self.total in (None, 1) else plural(self.unit)
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        took = time.perf_counter() - self.t0
        verb = "in" if state == "done" else "after"
        print(f"{self.desc}: {count} {unit} {verb} {took:.1f} s{extra}"
              + ("" if state == "done" else f" ({state})"), file=self.stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._line("done")

    def __enter__(self) -> "Stage":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(it: Iterable, total: int | None = None, desc: str = "", unit: str = "item", enabled: bool = True,
          leave: bool = True) -> Iterator:
    """Iterate ``it`` while reporting progress (see the module docstring)."""
    if not enabled:
        yield from it
        return
    if total is None and hasattr(it, "__len__"):
        total = len(it)  # type: ignore[arg-type]
    with Stage(desc, total, unit, enabled=True, leave=leave) as st:
        for x in it:
            yield x
            st.update(1)
