"""A real llama.cpp server behind the enclaves.

Skipped with a reason where ``llama-cpp-python[server]`` or ``gguf`` is missing (they come
with the ``engine-tests`` extra), except under ``SEALGATE_REQUIRE_ENGINE=1``, which
``.ci/run`` sets: there a missing engine fails instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sealgate.client import Policy
from sealgate.enclave import EnclaveConfig
from sealgate.enclave.engines import HTTPEngine
from sealgate.gateway import Discovery

from ..loopback import LoopbackFleet
from ..servers import GatewayThread
from .llama_server import CHAT_MODEL, EMBEDDING_MODEL, LlamaServer, TinyLlama, missing_engine
from .llama_server import write_tiny_llama as _write


def _require_engine() -> None:
    reason = missing_engine()
    if reason is None:
        return
    if os.environ.get("SEALGATE_REQUIRE_ENGINE") == "1":
        pytest.fail(f"SEALGATE_REQUIRE_ENGINE=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> TinyLlama:
    """The random-weight GGUF model, written once per session."""
    _require_engine()
    return _write(tmp_path_factory.mktemp("llama") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def llama(tiny_llama: TinyLlama, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One llama.cpp server for the session (chat and embedding models)."""
    server = LlamaServer(tiny_llama, tmp_path_factory.mktemp("llama-log") / "server.log")
    with server:
        yield server


@pytest.fixture
def own_llama(tiny_llama: TinyLlama, tmp_path: Path) -> Iterator[LlamaServer]:
    """A llama.cpp server for one test (one that kills its engine)."""
    with LlamaServer(tiny_llama, tmp_path / "server.log") as server:
        yield server


@dataclass
class SealedLlama:
    """SecureClient's view: a gateway in front of two enclaves in front of llama.cpp."""

    engine: LlamaServer
    fleet: LoopbackFleet
    gateway: GatewayThread
    policy: Policy


def sealed_llama(fleet: LoopbackFleet, engine: LlamaServer, **config: object) -> SealedLlama:
    claimed = EnclaveConfig(models=(CHAT_MODEL, EMBEDDING_MODEL), **config)  # type: ignore[arg-type]
    enclaves = [fleet.enclave(HTTPEngine(engine.url), claimed) for _ in range(2)]
    gw = fleet.gateway(Discovery(static=[e.url for e in enclaves]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    return SealedLlama(engine, fleet, gw, policy)


@pytest.fixture
def through_sealgate(fleet: LoopbackFleet, llama: LlamaServer) -> SealedLlama:
    return sealed_llama(fleet, llama)
