"""Shared pieces of the video (and cross-modal) embedders.

- reading frames through :mod:`foleybench.media` (errors name the file);
- building networks deterministically (proxy weights) and loading checkpoints
  (plain state_dicts strictly, TorchScript archives through ``torch.jit.load``);
- running a batch on the embedder's device under ``no_grad``, autocast on GPU only.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from foleybench import media
from foleybench.api import Embedder, InputError, ScoreContext
from foleybench.device import inference
from foleybench.weights import seeded_init, state_dict_sha256


def is_torchscript_archive(path: str | Path) -> bool:
    """True for a ``torch.jit.save`` archive (it has a ``code/`` folder); a ``torch.save``
    zip holds only ``data.pkl`` and tensors, and legacy pickles are not zips at all."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: ``torch.load(weights_only=True)``, unwrapping a
    ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper; a TorchScript archive gives its
    module's state_dict."""
    if is_torchscript_archive(path):
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, Mapping) and wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = sd[wrapper]
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def build_seeded(factory: Callable[[], torch.nn.Module], seed: int,
                 post: Callable[[torch.nn.Module], None] | None = None) -> tuple[torch.nn.Module, str]:
    """Construct ``factory()`` and re-initialise it from ``seed`` (proxy weights).

    Construction itself runs under the seed too, because some modules (nn.MultiheadAttention,
    bare Parameters) have no public ``reset_parameters`` for :func:`seeded_init` to call.
    ``post(net)`` then runs under the seed as well (e.g. a variance-preserving re-init for
    deep BN-less-in-eval stacks whose activations would otherwise vanish).
    Returns the module (eval mode) and the sha256 of its state_dict.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = factory()
    seeded_init(net, seed)
    if post is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            post(net)
    net.eval()
    return net, state_dict_sha256(net.state_dict())


def read_frames(path: str, *, start_s: float = 0.0, duration_s: float | None = None,
                max_frames: int | None = None) -> media.VideoClip:
    """Decode a clip via :func:`foleybench.media.read_video` (InputError on bad files)."""
    try:
        return media.read_video(path, start_s=start_s, duration_s=duration_s, max_frames=max_frames)
    except InputError:
        raise
    except Exception as exc:  # a decoder error must name the file
        raise InputError(path, f"could not decode video ({type(exc).__name__}: {exc})") from exc


class VideoEmbedder(Embedder):
    """Base of the torch video embedders: holds ``net``, ``device``, ``amp``."""

    kind = "video"
    net: Any = None
    amp: bool = True
    proxy_config: str | None = None

    def _run(self, fn: Callable[[torch.Tensor], torch.Tensor], batch: Sequence[np.ndarray]) -> torch.Tensor:
        """Stack ``batch`` (numpy inputs of one shape), move it to ``self.device`` and apply
        ``fn`` under no_grad (+ autocast on GPU when ``amp``); float32 CPU output."""
        x = torch.from_numpy(np.stack([np.asarray(b) for b in batch])).to(self.device)
        with inference(self.device, self.amp):
            y = fn(x)
        return y.float().cpu()

    def _clip_span(self, ctx: ScoreContext) -> float | None:
        return ctx.clip_seconds

    def provenance(self) -> dict[str, Any]:
        p = super().provenance()
        if self.proxy_config is not None:
            p["proxy_config"] = self.proxy_config
        return p
