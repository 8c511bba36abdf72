"""Pure metric math (no state, no registry): Frechet distances, AV-Align, bootstrap.

The names below are imported from their modules on first use (PEP 562), so importing one
module of this package (the bootstrap, say) does not import AV-Align's OpenCV.
"""
from __future__ import annotations

import importlib
from typing import Any

# av_align is bound eagerly: a lazy name equal to its submodule's would be shadowed by
# the submodule itself once anything imported it (the import system binds the package
# attribute to the module). The module imports OpenCV only on first use.
from foleybench.metrics.functional.av_align import AVAlignResult, av_align  # noqa: E402,F401

_WHERE = {
    "bootstrap_ci": "bootstrap",
    "FrechetReference": "frechet",
    "fd_infinity": "frechet",
    "frechet_distance": "frechet",
    "gaussian_stats": "frechet",
}

__all__ = sorted([*_WHERE, "AVAlignResult", "av_align"])


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
