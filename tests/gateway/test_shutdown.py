"""Graceful shutdown: stop accepting, let the stream in flight finish, then close."""

from __future__ import annotations

import asyncio
import threading

from sealgate.gateway import Discovery, GatewayConfig
from sealgate.protocol import SEALGATE, AttestationDocument, RequestEncoder

from ..loopback import gated_engine


def test_shutdown_drains_a_stream_in_flight(fleet, http):
    gate = threading.Event()
    server = fleet.enclave(engine=gated_engine(gate))
    gw = fleet.gateway(
        Discovery(static=[server.url]), GatewayConfig(poll_interval=0.2, drain_timeout=10)
    )
    fleet.gateways.remove(gw)  # this test stops it itself
    doc = http.get(gw.url + "/.well-known/sealgate-fleet").json()
    key = AttestationDocument.from_dict(doc["enclaves"][0]["attestation"]).keys[0]
    encoder = RequestEncoder(key, SEALGATE)
    with http.stream(
        "POST",
        gw.url + "/v1/chat/completions",
        content=encoder.finish(b"{}"),
        headers=encoder.headers,
    ) as response:
        decoder = encoder.response_decoder(response.headers["sealgate-response-nonce"])
        raw = response.iter_raw()
        got = [c for c in decoder.push(next(raw)) if c]
        stopping = asyncio.run_coroutine_threadsafe(gw.gateway.shutdown(), gw.loop)
        while not gw.gateway.draining:
            threading.Event().wait(0.01)
        gate.set()
        for chunk in raw:
            got += [c for c in decoder.push(chunk) if c]
        decoder.finish()  # the final frame arrived: the stream was not cut by the shutdown
    assert got == [b"data: first\n\n", b"data: second\n\n"]
    stopping.result(15)
    gw.loop.call_soon_threadsafe(gw.loop.stop)
