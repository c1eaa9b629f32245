"""Graceful shutdown: stop accepting, let the stream in flight finish, then close."""

from __future__ import annotations

import asyncio
import threading

from sealgate.gateway import Discovery, GatewayConfig
from sealgate.protocol.evidence.attestation import AttestationDocument

from ..loopback import gated_engine
from ..sealed_http import sealed_stream


def test_shutdown_drains_a_stream_in_flight(fleet, http):
    gate = threading.Event()
    server = fleet.enclave(engine=gated_engine(gate))
    gw = fleet.gateway(
        Discovery(static=[server.url]), GatewayConfig(poll_interval=0.2, drain_timeout=10)
    )
    fleet.gateways.remove(gw)  # this test stops it itself
    doc = http.get(gw.url + "/.well-known/sealgate-fleet").json()
    key = AttestationDocument.from_dict(doc["enclaves"][0]["attestation"]).keys[0]
    with sealed_stream(http, gw.url + "/v1/chat/completions", key) as frames:
        assert next(frames) == b"data: first\n\n"
        stopping = asyncio.run_coroutine_threadsafe(gw.gateway.shutdown(), gw.loop)
        while not gw.gateway.plane.draining:
            threading.Event().wait(0.01)
        gate.set()
        # The final frame arrives (list() calls finish()): the shutdown did not cut the stream.
        assert list(frames) == [b"data: second\n\n"]
    stopping.result(15)
    gw.loop.call_soon_threadsafe(gw.loop.stop)
