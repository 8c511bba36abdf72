"""Shared pieces of the video (and cross-modal) embedders.

- reading frames through :mod:`foleybench.media` (errors name the file);
- weights come from :func:`~foleybench.metrics.embedders.base.build_net` (proxy, or a
  checkpoint located, labelled and loaded strictly; TorchScript archives through
  :func:`foleybench.weights.read_torchscript`);
- running a batch on the embedder's device: :class:`~foleybench.metrics.embedders.base.TorchEmbedder`
  (inference mode, float32 on CPU, bf16 autocast on CUDA).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from foleybench import media
from foleybench.api import InputError, ScoreContext
from foleybench.metrics.embedders.base import TorchEmbedder
from foleybench.weights import is_torchscript_archive  # noqa: F401  (re-export for older imports)

if TYPE_CHECKING:  # torch is imported where a batch runs (a cached re-score never does)
    import torch


def read_frames(path: str, *, start_s: float = 0.0, duration_s: float | None = None,
                max_frames: int | None = None,
                pick: Callable[[int, float], np.ndarray] | None = None) -> media.VideoClip:
    """Decode a clip via :func:`foleybench.media.read_video` (InputError on bad files);
    ``pick(n, fps)`` selects frames of the span without holding the others."""
    try:
        return media.read_video(path, start_s=start_s, duration_s=duration_s, max_frames=max_frames, pick=pick)
    except InputError:
        raise
    except Exception as exc:  # a decoder error must name the file
        raise InputError(path, f"could not decode video ({type(exc).__name__}: {exc})") from exc


class VideoEmbedder(TorchEmbedder):
    """Base of the torch video embedders; ``proxy_config`` names a proxy's size."""

    kind = "video"
    proxy_config: str | None = None

    def _run(self, fn: Callable[[torch.Tensor], torch.Tensor], batch: Sequence[np.ndarray]) -> torch.Tensor:
        """Stack ``batch`` (numpy inputs of one shape) into ``[B, ...]`` and apply ``fn`` on
        the device under the precision policy; float32 CPU output."""
        import torch

        return self._forward(fn, torch.from_numpy(np.stack([np.asarray(b) for b in batch])))

    def _clip_span(self, ctx: ScoreContext) -> float | None:
        return ctx.clip_seconds

    def provenance(self) -> dict[str, Any]:
        p = super().provenance()
        if self.proxy_config is not None:
            p["proxy_config"] = self.proxy_config
        return p
