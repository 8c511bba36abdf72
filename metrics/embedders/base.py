"""What every network-backed embedder shares, audio and video alike.

- :class:`TorchEmbedder`: holds ``net`` (eval mode, on ``device``), the weights label
  (``pretrained`` / ``custom`` / ``proxy``), the checkpoint sha256 and ``amp``; runs a
  forward pass under :func:`foleybench.device.inference` (no autograd; the one precision
  policy: float32 on CPU, bf16 autocast on CUDA); adds the precision to the preprocess id
  (cache key) on GPU and to provenance.
- :func:`build_net`: the one way a network gets its weights. ``proxy``: built and
  re-initialised under ``seed`` (sha256 of the resulting state_dict). ``pretrained``:
  :func:`foleybench.weights.locate` finds, hashes and labels the file (``custom`` for a
  user's file that is not the upstream one), then a loader reads it through
  :func:`foleybench.weights.read_state_dict` / ``read_torchscript`` and loads it with
  :func:`foleybench.weights.load_strict` (every key and shape).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from foleybench import weights as W
from foleybench.api import Embedder, FoleybenchError
from foleybench.device import inference, precision

Factory = Callable[[], nn.Module]
# (checkpoint path, factory) -> (loaded module, extra constructor kwargs for the embedder)
Loader = Callable[[Path, Factory], "tuple[nn.Module, dict[str, Any]]"]


class TorchEmbedder(Embedder):
    """An :class:`~foleybench.api.Embedder` around one ``torch.nn.Module``.

    ``weights``: "pretrained" (the upstream file), "custom" (a user's checkpoint, loaded
    strictly) or "proxy" (seeded random init); ``checkpoint_sha256``: of the file, or of
    the proxy state_dict; ``amp``: allow the GPU precision policy (ignored on CPU).
    """

    net: Any = None
    amp: bool = True

    def __init__(self, net: nn.Module, *, weights: str, checkpoint_sha256: str, device: str = "cpu",
                 amp: bool = True):
        if weights not in ("pretrained", "custom", "proxy"):
            raise FoleybenchError(f"{self.name}: weights label must be pretrained, custom or proxy, not {weights!r}")
        self.net = net.to(device).eval()
        self.weights = weights
        self.checkpoint_sha256 = checkpoint_sha256
        self.device = device
        self.amp = amp

    @property
    def is_proxy(self) -> bool:
        """Only seeded random-init weights are a proxy; custom weights are real weights."""
        return self.weights == "proxy"

    @property
    def precision(self) -> str:
        """"fp32" or "bf16": what forward passes run at on this device (device.autocast)."""
        return precision(str(self.device), bool(self.amp))

    def precision_id(self) -> str:
        """Suffix for ``preprocess_id``: empty at float32 (so CPU cache keys never change),
        ``|amp-bf16`` under autocast."""
        return "" if self.precision == "fp32" else f"|amp-{self.precision}"

    def _forward(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``fn(x)`` with ``x`` moved to the device, under inference mode and the precision
        policy; returns float32 on CPU (same shape as ``fn``'s output)."""
        with inference(str(self.device), bool(self.amp)):
            y = fn(x.to(self.device))
        return y.float().cpu()

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "precision": self.precision}


@dataclass
class Built:
    """A network with its weights: label, sha256 and extra embedder kwargs from the loader."""

    net: nn.Module
    weights: str
    sha256: str
    extras: dict[str, Any] = field(default_factory=dict)


def strict_loader(path: Path, make: Factory) -> tuple[nn.Module, dict[str, Any]]:
    """The default loader: the file's state dict (one unwrap rule), then ``make()`` and a
    strict load (the file is read first, so a bad file fails before a big net is built)."""
    sd = W.read_state_dict(path)
    net = make()
    W.load_strict(net, sd, str(path))
    return net, {}


def _seeded(factory: Factory, seed: int) -> nn.Module:
    # Construction runs under the seed too: some modules (weight-normed convs,
    # nn.MultiheadAttention, bare Parameters) ignore reset_parameters.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def build_net(name: str, factory: Factory, *, mode: str, checkpoint: str | None = None, seed: int = 0,
              load: Loader = strict_loader, proxy_init: Callable[[nn.Module], Any] | None = None,
              verify: bool = True) -> Built:
    """``factory()`` with proxy, pretrained or custom weights.

    proxy: built and :func:`~foleybench.weights.seeded_init` under ``seed``, then
    ``proxy_init(net)`` under the same seed (e.g. He-normal re-init, analytic STFT/mel
    buffers restored); sha256 = :func:`~foleybench.weights.state_dict_sha256`.
    pretrained: :func:`~foleybench.weights.locate` (``checkpoint`` or the weights
    directory; label ``pretrained`` or ``custom``), then ``load(path, make)``.
    ``verify=False`` skips the checks of the weights directory's file (tests only).
    """
    if mode == "proxy":
        net = _seeded(factory, seed)
        W.seeded_init(net, seed)
        if proxy_init is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                proxy_init(net)
        net.eval()
        return Built(net, "proxy", W.state_dict_sha256(net.state_dict()))
    if mode != "pretrained":
        raise FoleybenchError(f"{name}: mode must be 'pretrained' or 'proxy', not {mode!r}")
    loc = W.locate(name, checkpoint, verify=verify)
    net, extras = load(loc.path, lambda: _seeded(factory, seed))
    return Built(net.eval(), loc.weights, loc.sha256, extras)
