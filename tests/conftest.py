"""Shared pytest helpers.

``shared_dir`` locates the shared data checkout (real clips, reference sets). In CI it
sits next to the repository (``<repo>/../shared``); tests that need it skip when absent.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def find_shared_dir() -> Path | None:
    """``<repo root>/../shared`` if it exists, else None."""
    p = REPO_ROOT.parent / "shared"
    return p if p.is_dir() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` directory, or skip the test with a clear reason."""
    p = find_shared_dir()
    if p is None:
        pytest.skip("../shared not present: real-clip tests need it")
    return p
