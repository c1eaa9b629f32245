from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealgate.enclave import EnclaveConfig, create_app
from sealgate.enclave.attesters import SoftwareAttester, measure_software
from sealgate.enclave.engines import Engine, demo_engine
from sealgate.gateway import Discovery, GatewayConfig

from ..servers import GatewayThread, ServerThread


class Fleet:
    """Enclaves (in threads) and a gateway in front of them, all on loopback."""

    def __init__(self) -> None:
        self.root = Ed25519PrivateKey.generate()
        self.measurement = measure_software(demo_engine().description)
        self.enclaves: list[ServerThread] = []
        self.built: list[object] = []
        self.gateways: list[GatewayThread] = []

    def enclave(
        self, engine: Engine | None = None, config: EnclaveConfig | None = None
    ) -> ServerThread:
        built = create_app(
            SoftwareAttester(self.root, self.measurement), engine or demo_engine(), config
        )
        server = ServerThread(built.app).start()
        self.enclaves.append(server)
        self.built.append(built)
        return server

    def gateway(self, discovery: Discovery, config: GatewayConfig | None = None) -> GatewayThread:
        gw = GatewayThread(discovery, config).start()
        self.gateways.append(gw)
        return gw

    def close(self) -> None:
        for gw in self.gateways:
            gw.stop()
        for server in self.enclaves:
            server.stop()


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    f = Fleet()
    yield f
    f.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client
