"""Loopback fleets for tests and benchmarks: in-thread enclaves, a gateway, test engines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealgate.enclave import Enclave, EnclaveConfig, create_app
from sealgate.enclave.attesters import SoftwareAttester, measure_software
from sealgate.enclave.engines import ASGIEngine, Engine, demo_engine
from sealgate.gateway import Discovery, GatewayConfig
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .servers import GatewayThread, ServerThread


class LoopbackFleet:
    """Enclaves (in threads) and gateways in front of them, all on 127.0.0.1."""

    def __init__(self) -> None:
        self.root = Ed25519PrivateKey.generate()
        self.measurement = measure_software(demo_engine().description)
        self.enclaves: list[ServerThread] = []
        self.built: list[Enclave] = []
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

    def model_enclave(
        self, models: tuple[str, ...], config: EnclaveConfig | None = None
    ) -> tuple[ServerThread, bytes]:
        """An enclave whose demo engine serves exactly ``models``; returns it and its measurement.

        The attester is built from the engine description (as the enclave CLI does), so
        the measurement and the signed model list both come from that configuration.
        """
        engine = demo_engine(models=models)
        attester = SoftwareAttester.from_options(self.root, engine.description)
        built = create_app(attester, engine, config)
        server = ServerThread(built.app).start()
        self.enclaves.append(server)
        self.built.append(built)
        return server, attester.measurement

    def gateway(self, discovery: Discovery, config: GatewayConfig | None = None) -> GatewayThread:
        gw = GatewayThread(discovery, config).start()
        self.gateways.append(gw)
        return gw

    def close(self) -> None:
        for gw in self.gateways:
            gw.stop()
        for server in self.enclaves:
            server.stop()


def gated_engine(gate: threading.Event) -> ASGIEngine:
    """An engine whose chat stream sends one event, then waits for ``gate`` before the second."""

    async def stream(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            while not gate.is_set():
                await asyncio.sleep(0.01)
            yield b"data: second\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return ASGIEngine(
        Starlette(routes=[Route("/v1/chat/completions", stream, methods=["POST"])]),
        {"engine": "gated"},
    )
