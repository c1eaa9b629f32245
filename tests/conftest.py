"""Shared fixtures: the test-vector folder and free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .loopback import LoopbackFleet

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """``../shared/vectors`` beside the repository; tests skip where it is absent."""
    if not VECTORS.is_dir():
        pytest.skip(f"test vectors not found at {VECTORS} (expected ../shared/vectors)")
    return VECTORS


@pytest.fixture
def fleet() -> Iterator[LoopbackFleet]:
    """Enclaves and gateways on loopback, stopped after the test."""
    f = LoopbackFleet()
    yield f
    f.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client
