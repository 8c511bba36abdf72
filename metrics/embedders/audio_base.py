"""Shared machinery of the audio embedders: decoding, batching, devices, checkpoints.

Every audio embedder is an :class:`AudioEmbedder` around one ``torch.nn.Module``:

- ``load_input`` decodes with :mod:`foleybench.media` (mono, DC removed, torchaudio's
  windowed-sinc resampler to ``rate``, truncated to the protocol clip length; the
  av-benchmark convention in METRICS.md) and returns float32 ``[N]`` samples at ``rate`` Hz;
- ``embed_inputs`` / ``logits_inputs`` group inputs of equal length into one batch each
  (no padding, so a clip's embedding never depends on its neighbours), run on ``device``
  through :class:`~foleybench.metrics.embedders.base.TorchEmbedder` (inference mode, the
  one precision policy: float32 on CPU, bf16 autocast on CUDA);
- weights, labels and checkpoint reading are :func:`~foleybench.metrics.embedders.base.build_net`'s.
"""
from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np

from foleybench.api import FoleybenchError, InputError, ScoreContext
from foleybench.metrics.embedders.base import TorchEmbedder

if TYPE_CHECKING:  # torch is imported where a batch runs (a cached re-score never does)
    import torch

RESAMPLER_ID = "torchaudio-sinc"


def _load_audio(path: str, rate: int, clip_seconds: float | None, lazy: bool = False) -> Any:
    """Decode ``path`` and preprocess it to mono float32 ``[N]`` at ``rate`` Hz; a file far
    longer than ``clip_seconds`` is not held whole (foleybench.media_long). ``lazy``: a long
    file comes back as a :class:`~foleybench.media_long.LongAudio`, read block by block."""
    from foleybench.media_long import load_preprocessed

    return load_preprocessed(path, rate, clip_seconds, lazy=lazy)


def is_long(x: Any) -> bool:
    """True for a :class:`~foleybench.media_long.LongAudio` (checked without importing it)."""
    return type(x).__name__ == "LongAudio"


def reflect_window(get: Callable[[int, int], np.ndarray], lo: int, hi: int, n: int) -> np.ndarray:
    """Samples ``[lo, hi)`` of a signal of length ``n`` extended by reflection at both ends
    (``numpy.pad(mode="reflect")`` / torch's reflect padding: index -k is sample k, index
    n - 1 + k is sample n - 1 - k), read through ``get(a, b)`` (samples ``[a, b)``, a
    forward-moving reader). The reflected part must come from within the window's real part."""
    a, b = max(lo, 0), min(hi, n)
    core = np.asarray(get(a, b), dtype=np.float32)
    left, right = max(0, -lo), max(0, hi - n)
    if left or right:
        core = np.pad(core, (left, right), mode="reflect")
    return core


class AudioEmbedder(TorchEmbedder):
    """An audio network behind the :class:`~foleybench.api.Embedder` contract.

    Subclasses set ``name``, ``rate`` (Hz), ``dim``, ``frames_level`` and ``min_seconds``
    (shortest clip the network accepts), and implement ``_embed(x)`` (``x``: float32
    Tensor ``[B, N]`` at ``rate`` Hz -> ``[B, F, dim]``) and, for classifiers,
    ``_logits(x)`` (-> ``[B, K]`` pre-activation logits).
    """

    kind: ClassVar[str] = "audio"
    min_seconds: ClassVar[float] = 0.0
    n_classes: ClassVar[int | None] = None
    # True: a long input (foleybench.media_long.LongAudio) is read block by block by
    # ``_embed_long`` / ``_logits_long`` and never held whole; they give exactly what
    # ``_embed`` / ``_logits`` give on the whole array. False: it is materialised first.
    streams_long: ClassVar[bool] = False
    # Seconds of the (preprocessed) signal the network ever reads, when it reads only the
    # start (CLAP's first 10 s, PaSST's av-benchmark 10 s): decoding stops there, whatever
    # the file's length (the DC mean still comes from the whole file, so values are unchanged).
    max_input_seconds: float | None = None

    # ------------------------------------------------------------------ contract
    def load_input(self, path: str, ctx: ScoreContext) -> Any:
        """float32 ``[N]`` samples at ``rate`` Hz (a streamed long file: a LongAudio whose
        samples are read when embedded; its decoder has checked them for NaN/inf);
        InputError naming ``path`` on bad input."""
        cut = ctx.clip_seconds
        if self.max_input_seconds is not None:
            cut = self.max_input_seconds if cut is None else min(cut, self.max_input_seconds)
        x = _load_audio(path, int(self.rate), cut, lazy=self.streams_long)
        if is_long(x):
            if len(x) < self.min_samples:
                raise InputError(path, f"{len(x) / self.rate:.3f} s of audio is shorter than the "
                                       f"{self.min_seconds} s {self.name} needs")
            return x
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 1:
            raise InputError(path, f"expected mono samples [N] after preprocessing, got shape {x.shape}")
        if x.shape[0] < self.min_samples:
            raise InputError(path, f"{x.shape[0] / self.rate:.3f} s of audio is shorter than the "
                                   f"{self.min_seconds} s {self.name} needs")
        if not np.isfinite(x).all():
            raise InputError(path, "audio contains NaN or Inf samples")
        return x

    def embed_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One float32 ``[F, dim]`` array per input, in input order."""
        return self._run(inputs, self._embed)

    def embed_stats_inputs(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        """:meth:`embed_inputs` for callers that need only the rows' statistics (Frechet
        distances): a long input (:meth:`wants_stats`) comes back as its rows' packed
        statistics (float64 ``[D + 2, D]``, foleybench.metrics.frechet_state.RowStats),
        reduced while the rows stream, so they are never held; every other input as rows."""
        out: list[np.ndarray | None] = [None] * len(inputs)
        rest: list[int] = []
        for i, x in enumerate(inputs):
            if self.wants_stats(x):
                out[i] = self._run_long_stats(x)
            else:
                rest.append(i)
        if rest:
            for i, y in zip(rest, self.embed_inputs([inputs[i] for i in rest])):
                out[i] = y
        return out  # type: ignore[return-value]

    def wants_stats(self, x: Any) -> bool:
        """True for an input whose rows are reduced to statistics as they stream: a streamed
        long input (a LongAudio) whose preprocessed length is above
        ``media_long.LEAN_ABOVE_S`` and whose rows would outnumber the statistics' memory
        (``frechet_state.stats_rows_cost``), for an embedder that streams them
        (``_embed_long_stats``). Shorter inputs (every benchmark clip) stay rows, so their
        values are unchanged bit for bit."""
        if not (is_long(x) and self.streams_long and self.frames_level and self.stats_streams):
            return False
        from foleybench import media_long
        from foleybench.metrics.frechet_state import stats_rows_cost

        rows = self.rows_for(len(x))
        return len(x) > media_long.LEAN_ABOVE_S * self.rate and rows is not None and rows > stats_rows_cost(self.dim)

    # True where ``_embed_long_stats`` exists (frame-level embedders whose long rows matter)
    stats_streams: ClassVar[bool] = False

    def rows_for(self, n: int) -> int | None:
        """About how many rows the embedder makes of ``n`` samples (the statistics threshold;
        None: not known beforehand)."""
        return None

    def _embed_long_stats(self, x: Any) -> np.ndarray:
        """Packed statistics of ``_embed_long(x)``'s rows, made while they stream."""
        raise NotImplementedError

    def _run_long_stats(self, x: Any) -> np.ndarray:
        from foleybench.device import inference

        with inference(str(self.device), bool(self.amp)):
            return self._embed_long_stats(x)

    def logits_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One float32 ``[K]`` array of pre-activation class logits per input."""
        if self.n_classes is None:
            raise FoleybenchError(f"embedder {self.name!r} is not a classifier: it has no logits")
        return [a.reshape(-1) for a in self._run(inputs, self._logits)]

    def preprocess_id(self) -> str:
        """E.g. ``16000Hz|torchaudio-sinc|mono|dc``. The protocol clip length comes from
        ``ctx.clip_seconds`` at load time; foleybench.cache adds it to the key itself."""
        return f"{int(self.rate)}Hz|{RESAMPLER_ID}|mono|dc{self._extra_id()}{self.precision_id()}"

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "dim": self.dim, "frames_level": self.frames_level}

    # ------------------------------------------------------------------ internals
    @property
    def min_samples(self) -> int:
        return max(1, int(np.ceil(self.min_seconds * self.rate)))

    def _extra_id(self) -> str:
        """Embedder-specific preprocessing beyond the shared steps (e.g. padding)."""
        return ""

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _embed_long(self, x: Any) -> torch.Tensor:
        """``_embed`` of a LongAudio's samples (``[1, F, dim]``), read block by block."""
        raise NotImplementedError

    def _logits_long(self, x: Any) -> torch.Tensor:
        """``_logits`` of a LongAudio's samples (``[1, K]``), read block by block."""
        raise NotImplementedError

    def _run_long(self, x: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        """One long input through ``fn``: streamed when the embedder can (``streams_long``),
        else materialised and run as one batch."""
        import torch

        from foleybench.device import inference

        stream = None
        if self.streams_long:
            stream = self._embed_long if fn == self._embed else self._logits_long if fn == self._logits else None
        if stream is None:
            y = self._forward(fn, torch.from_numpy(np.asarray(x.materialise(), np.float32)[None]))
        else:
            with inference(str(self.device), bool(self.amp)):
                y = stream(x).float().cpu()
        return np.ascontiguousarray(y.numpy()[0], dtype=np.float32)

    def _window_getter(self, x: Any) -> Callable[[int, int], torch.Tensor]:
        """``get(lo, hi)``: ``[1, hi - lo]`` float32 samples of a LongAudio on the device,
        for windows that move forward (overlaps allowed)."""
        import torch

        r = x.reader()
        return lambda lo, hi: torch.from_numpy(np.array(r.get(lo, hi), np.float32))[None].to(self.device)

    def _run(self, inputs: Sequence[np.ndarray], fn: Callable[[torch.Tensor], torch.Tensor]) -> list[np.ndarray]:
        # Group equal lengths so no clip is padded by its neighbours' lengths.
        groups: dict[int, list[int]] = defaultdict(list)
        out: list[np.ndarray | None] = [None] * len(inputs)
        for i, x in enumerate(inputs):
            if is_long(x):  # alone, read block by block
                out[i] = self._run_long(x, fn)
            else:
                groups[int(np.asarray(x).shape[-1])].append(i)
        import torch

        for idx in groups.values():
            if len(idx) == 1:  # a view, not a copy: a long input is not held twice
                batch = torch.from_numpy(np.ascontiguousarray(inputs[idx[0]], dtype=np.float32)[None])
            else:
                batch = torch.from_numpy(np.stack([np.asarray(inputs[i], dtype=np.float32) for i in idx]))
            y = self._forward(fn, batch).numpy()
            for j, i in enumerate(idx):
                out[i] = np.ascontiguousarray(y[j], dtype=np.float32)
        return out  # type: ignore[return-value]
