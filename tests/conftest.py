"""Shared fixtures: the test-vector folder and free loopback ports."""

from __future__ import annotations

from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """``../shared/vectors`` beside the repository; tests skip where it is absent."""
    if not VECTORS.is_dir():
        pytest.skip(f"test vectors not found at {VECTORS} (expected ../shared/vectors)")
    return VECTORS
