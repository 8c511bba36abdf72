"""Peer implementations for parity tests (test-only; never imported by foleybench).

Installed from the package registry: ``pip install torchvggish==0.2 panns-inference==0.1.1``.
Each helper returns None when its package is absent, so the caller can skip with a reason.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any


def torchvggish_modules() -> tuple[Any, Any] | None:
    """(torchvggish.torchvggish, torchvggish.vggish_input) or None when not installed."""
    if importlib.util.find_spec("torchvggish") is None:
        return None
    import torchvggish.torchvggish as tv
    import torchvggish.vggish_input as vi

    return tv, vi


def panns_models() -> Any | None:
    """``panns_inference.models`` without running the package ``__init__``.

    panns_inference's ``__init__`` imports its ``config``, which shells out to wget for the
    AudioSet label CSV at import time; the network code itself needs no network, so the
    two source files are loaded directly under a synthetic package.
    """
    spec = importlib.util.find_spec("panns_inference")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    pkg_name = "_peer_panns_inference"
    if f"{pkg_name}.models" in sys.modules:
        return sys.modules[f"{pkg_name}.models"]
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = [str(root)]
    sys.modules[pkg_name] = pkg
    for sub in ("pytorch_utils", "models"):
        s = importlib.util.spec_from_file_location(f"{pkg_name}.{sub}", root / f"{sub}.py")
        assert s is not None and s.loader is not None
        mod = importlib.util.module_from_spec(s)
        sys.modules[f"{pkg_name}.{sub}"] = mod
        s.loader.exec_module(mod)
    return sys.modules[f"{pkg_name}.models"]
