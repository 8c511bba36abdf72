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

Lazy proxies: a proxy network's sha256 (part of every cache key) is memoised per
architecture source, seed and torch version in ``<foleybench cache>/proxy-sha256.json``.
When the memo knows it, :func:`build_net` returns a :class:`LazyNet` and the embedder
builds the network on first use of ``.net`` (the first cache miss), so a fully cached
re-score never builds it; the build then checks its digest against the memo.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from foleybench import weights as W
from foleybench.api import Embedder, FoleybenchError
from foleybench.device import inference, precision

if TYPE_CHECKING:  # torch is imported where a network is built or run, never at import
    import torch
    from torch import nn

Factory = Callable[[], "nn.Module"]
# (checkpoint path, factory) -> (loaded module, extra constructor kwargs for the embedder)
Loader = Callable[[Path, Factory], "tuple[nn.Module, dict[str, Any]]"]


class Deferred:
    """A network class named by ``"package.module:QualName"``, imported when first called.

    An embedder's light module passes one to :func:`build_net` as the factory, so building
    the embedder of a fully cached re-score imports neither the network's module nor torch.
    ``__module__`` / ``__qualname__`` are the target's (the proxy memo key reads them), and
    ``Deferred(...)(*args)`` is ``QualName(*args)``.
    """

    def __init__(self, target: str):
        module, _, qualname = target.partition(":")
        if not module or not qualname:
            raise FoleybenchError(f"Deferred: {target!r} is not 'package.module:QualName'")
        self.__module__, self.__qualname__, self.__name__ = module, qualname, qualname.rpartition(".")[2]

    def resolve(self) -> Any:
        obj: Any = importlib.import_module(self.__module__)
        for part in self.__qualname__.split("."):
            obj = getattr(obj, part)
        return obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Deferred({self.__module__}:{self.__qualname__})"


class LazyNet:
    """A proxy network not built yet: ``build()`` makes it (once) and checks its sha256."""

    def __init__(self, name: str, make: Callable[[], nn.Module], sha256: str, memo_key: str):
        self.name, self._make, self.sha256, self.memo_key = name, make, sha256, memo_key
        self._lock = threading.Lock()
        self._net: nn.Module | None = None

    def build(self) -> nn.Module:
        with self._lock:
            if self._net is None:
                net = self._make()
                got = W.state_dict_sha256(net.state_dict())
                if got != self.sha256:  # memo stale (should not happen: key has source + torch)
                    _memo_store(self.memo_key, got)
                    raise FoleybenchError(
                        f"{self.name}: proxy weights digest {got[:12]} differs from the memoised "
                        f"{self.sha256[:12]} ({_memo_path()}); the memo is corrected, run again")
                self._net = net
            return self._net


class TorchEmbedder(Embedder):
    """An :class:`~foleybench.api.Embedder` around one ``torch.nn.Module``.

    ``weights``: "pretrained" (the upstream file), "custom" (a user's checkpoint, loaded
    strictly) or "proxy" (seeded random init); ``checkpoint_sha256``: of the file, or of
    the proxy state_dict; ``amp``: allow the GPU precision policy (ignored on CPU).
    """

    _net: Any = None
    _lazy: LazyNet | None = None
    amp: bool = True

    def __init__(self, net: "nn.Module | LazyNet", *, weights: str, checkpoint_sha256: str,
                 device: str = "cpu", amp: bool = True):
        if weights not in ("pretrained", "custom", "proxy"):
            raise FoleybenchError(f"{self.name}: weights label must be pretrained, custom or proxy, not {weights!r}")
        if isinstance(net, LazyNet):
            self._lazy = net
        else:
            self._net = net.to(device).eval()
        self.weights = weights
        self.checkpoint_sha256 = checkpoint_sha256
        self.device = device
        self.amp = amp

    @property
    def net(self) -> Any:
        """The network (eval mode, on ``device``); a lazy proxy is built here, on first use."""
        if self._net is None and self._lazy is not None:
            self._net = self._lazy.build().to(self.device).eval()
        return self._net

    @net.setter
    def net(self, value: Any) -> None:
        self._net, self._lazy = value, None

    @property
    def built(self) -> bool:
        """Whether the network exists yet (False only for a lazy proxy not used so far)."""
        return self._net is not None

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
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def build_net(name: str, factory: Factory, *, mode: str, checkpoint: str | None = None, seed: int = 0,
              load: Loader = strict_loader, proxy_init: Callable[[nn.Module], Any] | None = None,
              verify: bool = True, lazy: bool = False) -> Built:
    """``factory()`` with proxy, pretrained or custom weights.

    proxy: built and :func:`~foleybench.weights.seeded_init` under ``seed``, then
    ``proxy_init(net)`` under the same seed (e.g. He-normal re-init, analytic STFT/mel
    buffers restored); sha256 = :func:`~foleybench.weights.state_dict_sha256`.
    pretrained: :func:`~foleybench.weights.locate` (``checkpoint`` or the weights
    directory; label ``pretrained`` or ``custom``), then ``load(path, make)``.
    ``verify=False`` skips the checks of the weights directory's file (tests only).
    ``lazy=True`` (callers that hand ``net`` to a :class:`TorchEmbedder`, which builds a
    :class:`LazyNet` on first use): a proxy whose digest is memoised comes back unbuilt.
    Other callers (the FoleyGen codec, say) always get a module.
    """
    if mode == "proxy":
        def make() -> nn.Module:
            import torch

            net = _seeded(factory, seed)
            W.seeded_init(net, seed)
            if proxy_init is not None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    proxy_init(net)
            return net.eval()

        key = _memo_key(name, factory, seed) if lazy else None
        known = _memo_load().get(key) if key else None
        if known:
            return Built(LazyNet(name, make, known, key), "proxy", known)  # type: ignore[arg-type]
        net = make()
        sha = W.state_dict_sha256(net.state_dict())
        if key:
            _memo_store(key, sha)
        return Built(net, "proxy", sha)
    if mode != "pretrained":
        raise FoleybenchError(f"{name}: mode must be 'pretrained' or 'proxy', not {mode!r}")
    loc = W.locate(name, checkpoint, verify=verify)
    net, extras = load(loc.path, lambda: _seeded(factory, seed))
    return Built(net.eval(), loc.weights, loc.sha256, extras)


# ---------------------------------------------------------------- proxy sha256 memo
_SOURCES: str | None = None


def _source_digest() -> str:
    """sha256 of every source file that can shape a proxy network: this package's
    embedder modules and foleybench/weights.py (init helpers)."""
    global _SOURCES
    if _SOURCES is None:
        h = hashlib.sha256()
        files = sorted(Path(__file__).resolve().parent.glob("*.py")) + [Path(W.__file__).resolve()]
        for f in files:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        _SOURCES = h.hexdigest()
    return _SOURCES


def _memo_key(name: str, factory: Factory, seed: int) -> str | None:
    if os.environ.get("FOLEYBENCH_EAGER_PROXY"):  # opt out: always build at construction
        return None
    fq = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"
    if "<lambda>" in fq or "<locals>" in fq:  # closures may capture state the source does not show
        return None
    return f"{name}|{fq}|seed={seed}|torch={_torch_version()}|src={_source_digest()[:16]}"


def _torch_version() -> str:
    """``torch.__version__`` (e.g. ``2.11.0+cu130``, the local tag included), read from
    torch/version.py when torch is not imported yet: importing torch costs seconds and a
    fully cached re-score needs nothing else from it (package metadata drops the tag)."""
    mod = sys.modules.get("torch")
    if mod is not None:
        return str(mod.__version__)
    try:
        spec = importlib.util.find_spec("torch")
        locs = list(spec.submodule_search_locations or []) if spec else []
        text = (Path(locs[0]) / "version.py").read_text() if locs else ""
    except (ImportError, OSError, ValueError):
        text = ""
    m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
    if m:
        return m.group(1)
    import torch

    return str(torch.__version__)


def _memo_path() -> Path:
    from foleybench.hashing import cache_root

    return cache_root() / "proxy-sha256.json"


def _memo_load() -> dict[str, str]:
    try:
        d = json.loads(_memo_path().read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _memo_store(key: str, sha: str) -> None:
    """Add one entry (atomic replace; a lost race or an unwritable folder only costs a build)."""
    path = _memo_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        d = _memo_load()
        d[key] = sha
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(d, indent=0, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass
