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


def _load_audio(path: str, rate: int, clip_seconds: float | None) -> np.ndarray:
    """Decode ``path`` and preprocess it to mono float32 ``[N]`` at ``rate`` Hz; a file far
    longer than ``clip_seconds`` is not held whole (foleybench.media_long)."""
    from foleybench.media_long import load_preprocessed

    return load_preprocessed(path, rate, clip_seconds)


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

    # ------------------------------------------------------------------ contract
    def load_input(self, path: str, ctx: ScoreContext) -> np.ndarray:
        """float32 ``[N]`` samples at ``rate`` Hz; InputError naming ``path`` on bad input."""
        x = np.ascontiguousarray(_load_audio(path, int(self.rate), ctx.clip_seconds), dtype=np.float32)
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

    def _run(self, inputs: Sequence[np.ndarray], fn: Callable[[torch.Tensor], torch.Tensor]) -> list[np.ndarray]:
        # Group equal lengths so no clip is padded by its neighbours' lengths.
        groups: dict[int, list[int]] = defaultdict(list)
        for i, x in enumerate(inputs):
            groups[int(np.asarray(x).shape[-1])].append(i)
        out: list[np.ndarray | None] = [None] * len(inputs)
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
