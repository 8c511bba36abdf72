"""Metric bases: per-clip state keyed by clip id, and the paired-embedding loop.

Every metric keeps two mappings: clip id -> row (what it keeps about one scored clip: a
float, a pair of embedding arrays, a logit vector) and clip id -> exclusion reason.
``compute`` reads the rows in sorted clip-id order. Why: a mapping merges by set union,
so ``a.merge(b)`` and ``b.merge(a)`` hold the same state; and every order-sensitive step
(a float64 running sum, a bootstrap resample by index, an inception-score shuffle) then
sees the clips in one canonical order, whatever the batching or the merge order was.

- :class:`ClipKeyedMetric`: that state, the duplicate checks, ``update`` and ``merge``.
- :class:`PerClipMean`: one float per clip; value = mean over clips, 95% interval = seeded
  percentile bootstrap over clips (KL, IB score, AV-Align, CLIPSIM).
- :class:`PairedEmbedding`: "embed both sides of each pair, exclude the clip when either
  side failed, keep a row", written once (FD, FVD, KL, IB score).

Which tasks a metric serves is the class attribute ``tasks`` of the class its registry
line names, never set on an instance; ``foleybench.runner.score`` checks it before any
work. A computation that serves different tasks depending on its embedder (inception
score) has one small subclass per task.
"""
from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from foleybench.api import ClipPair, FoleybenchError, InputError, Metric, MetricValue, ScoreContext
from foleybench.metrics.functional.bootstrap import bootstrap_ci


@dataclass(frozen=True)
class Excluded:
    """A clip a metric could not score: the reason reported to the user, and a kind
    (``"error"`` for unreadable or missing input; metrics may name others, e.g.
    AV-Align's ``"no_peaks"``) so that counts by kind survive a merge."""

    reason: str
    kind: str = "error"


class ClipKeyedMetric(Metric):
    """Streaming metric whose state is keyed by clip id (see the module docstring).

    Subclasses implement :meth:`score_batch` (rows or :class:`Excluded` per pair) and
    ``compute`` (reading :meth:`sorted_rows`). State: ``rows`` {clip_id: row},
    ``excluded`` {clip_id: :class:`Excluded`}. A clip id may enter a metric once: scoring it twice,
    or merging shards that share a clip, is an error rather than a silent overwrite.
    """

    def __init__(self, ctx: ScoreContext | None = None):
        self.ctx = ctx if ctx is not None else ScoreContext()
        self.rows: dict[str, Any] = {}
        self.excluded: dict[str, Excluded] = {}

    @abstractmethod
    def score_batch(self, pairs: Sequence[ClipPair]) -> list[Any]:
        """One row (kept) or :class:`Excluded` (reported) per pair, in pair order."""

    def _seen(self) -> set[str]:
        return set(self.rows) | set(self.excluded)

    def update(self, pairs: Sequence[ClipPair]) -> list[tuple[str, str]]:
        """Score a batch; returns the (clip_id, reason) pairs excluded from it."""
        ids = [p.clip_id for p in pairs]
        again = sorted({i for i, k in Counter(ids).items() if k > 1} | (set(ids) & self._seen()))
        if again:  # checked before any work: a repeated clip would be counted twice
            raise FoleybenchError(f"metric {self.name!r}: clip ids given more than once: {again[:5]}")
        results = self.score_batch(pairs)
        if len(results) != len(pairs):
            raise FoleybenchError(f"metric {self.name!r} scored {len(results)} of {len(pairs)} pairs")
        newly: list[tuple[str, str]] = []
        for cid, res in zip(ids, results):
            if isinstance(res, Excluded):
                self.excluded[cid] = res
                newly.append((cid, res.reason))
            else:
                self.rows[cid] = res
        return newly

    def merge(self, other: Metric) -> "ClipKeyedMetric":
        """Union another shard's clips into this one; returns self.

        Both shards must be the same metric with the same provenance (embedder,
        weights, protocol options) and hold disjoint clip ids.
        """
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        assert isinstance(other, ClipKeyedMetric)
        if other.provenance() != self.provenance():
            raise FoleybenchError(f"metric {self.name!r}: shards were scored with different settings")
        shared = sorted(self._seen() & other._seen())
        if shared:
            raise FoleybenchError(f"metric {self.name!r}: shards share clip ids {shared[:5]}")
        self.rows.update(other.rows)
        self.excluded.update(other.excluded)
        return self

    def sorted_rows(self) -> tuple[list[str], list[Any]]:
        """(clip ids sorted, their rows in that order): the only order compute uses."""
        ids = sorted(self.rows)
        return ids, [self.rows[i] for i in ids]

    def sorted_excluded(self) -> list[list[str]]:
        """[[clip_id, reason], ...] sorted by clip id (JSON-ready)."""
        return [[cid, self.excluded[cid].reason] for cid in sorted(self.excluded)]

    def n_excluded(self, kind: str) -> int:
        """How many clips were excluded with this kind."""
        return sum(e.kind == kind for e in self.excluded.values())


class PerClipMean(ClipKeyedMetric):
    """Mean over clips of one float per clip, with a seeded bootstrap interval.

    Subclasses give ``score_batch`` and :meth:`extras`; :meth:`clip_value` maps a row to
    its float (override it when a row holds more, e.g. CLIPSIM's frame count).
    ``n_boot`` draws (0: no interval); ``ci_min_n``: fewest clips that get an interval.
    """

    ci_min_n: ClassVar[int] = 1
    n_boot: int = 1000

    def clip_value(self, row: Any) -> float:
        return float(row)

    def per_clip(self) -> tuple[list[str], np.ndarray]:
        """(sorted clip ids, float64 values ``[N]`` in that order)."""
        ids, rows = self.sorted_rows()
        return ids, np.array([self.clip_value(r) for r in rows], dtype=np.float64)

    @abstractmethod
    def extras(self, ids: list[str], values: np.ndarray) -> dict[str, Any]:
        """The result's extras for these sorted ids and values (values may be empty)."""

    def compute(self) -> MetricValue:
        """Mean over scored clips; 95% percentile-bootstrap interval over clips."""
        ids, values = self.per_clip()
        extras = self.extras(ids, values)
        n = int(values.size)
        if n == 0:
            return MetricValue(None, 0, None, extras)
        ci = (bootstrap_ci(values, n_boot=self.n_boot, seed=self.ctx.seed)
              if self.n_boot and n >= self.ci_min_n else None)
        return MetricValue(float(values.mean()), n, ci, extras)


class PairedEmbedding(ClipKeyedMetric):
    """The paired-embedding loop: two sides per clip, both must embed, then a row.

    Subclasses give :meth:`sides` (the two files of a pair, e.g. generated and
    reference audio), :meth:`embed_sides` (one cached embedding call per side, each
    returning an array or the :class:`InputError` per file, in order) and :meth:`row`
    (the row kept from the two arrays, or :class:`Excluded`); :meth:`batch_rows` may replace
    ``row`` with one vectorised call per batch. A pair with a side missing is excluded
    without embedding; a side that fails to load excludes the clip with its message.
    """

    side_names: ClassVar[tuple[str, str]] = ("generated", "reference")

    @abstractmethod
    def sides(self, pair: ClipPair) -> tuple[str | None, str | None]:
        """The two files of ``pair`` this metric compares."""

    @abstractmethod
    def embed_sides(self, first: list[str], second: list[str]) -> tuple[list[Any], list[Any]]:
        """Embeddings (or InputError) of each side's files, in the given order."""

    def row(self, pair: ClipPair, a: np.ndarray, b: np.ndarray) -> Any:
        raise NotImplementedError

    def batch_rows(self, pairs: list[ClipPair], a: list[np.ndarray], b: list[np.ndarray]) -> list[Any]:
        """Rows of pairs whose two sides embedded; default: :meth:`row` per pair."""
        return [self.row(p, x, y) for p, x, y in zip(pairs, a, b)]

    def score_batch(self, pairs: Sequence[ClipPair]) -> list[Any]:
        out: list[Any] = [None] * len(pairs)
        todo: list[int] = []
        for i, p in enumerate(pairs):
            a, b = self.sides(p)
            if not a or not b:
                missing = self.side_names[0] if not a else self.side_names[1]
                out[i] = Excluded(f"no {missing} file for task {p.task!r}")
            else:
                todo.append(i)
        sides = [self.sides(pairs[i]) for i in todo]
        first, second = self.embed_sides([s[0] or "" for s in sides], [s[1] or "" for s in sides])
        good: list[int] = []
        for i, x, y in zip(todo, first, second):
            bad = x if isinstance(x, InputError) else y if isinstance(y, InputError) else None
            if bad is not None:
                out[i] = Excluded(str(bad))
            else:
                good.append(i)
        pos = {i: k for k, i in enumerate(todo)}
        kept = self.batch_rows([pairs[i] for i in good], [first[pos[i]] for i in good], [second[pos[i]] for i in good])
        for i, r in zip(good, kept):
            out[i] = r
        return out
