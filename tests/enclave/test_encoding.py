"""Content-Encoding between enclave and engine: the engine is asked for identity, and what it
compresses anyway is decoded before sealing, streaming included, through the real SDKs."""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from sealgate.client import Policy, SecureClient
from sealgate.client.native import OHTTP
from sealgate.enclave.engines import ASGIEngine, HTTPEngine
from sealgate.enclave.engines.demo import create_demo_app
from sealgate.gateway import Discovery
from sealgate.protocol.public.problem import Problem
from starlette.middleware.gzip import GZipMiddleware

from ..loopback import LoopbackFleet, gated_engine
from ..sealed_http import fetch_key, sealed_request, sealed_stream
from ..servers import ServerThread

MESSAGES = [{"role": "user", "content": "compress me " * 40}]
REPLY_END = "You said: " + "compress me " * 39 + "compress me "


def always_gzip(app: Any, coding: bytes = b"gzip") -> Any:
    """``app`` with every response gzipped whatever the request accepts, flushed per body
    message (so a token stream stays a stream), and labelled with ``coding``."""

    async def gzipped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)

        async def send_gzipped(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message["headers"] if k.lower() != b"content-length"]
                message = {**message, "headers": [*headers, (b"content-encoding", coding)]}
            elif message["type"] == "http.response.body":
                more = message.get("more_body", False)
                data = compressor.compress(message.get("body", b""))
                data += compressor.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
                message = {**message, "body": data}
            await send(message)

        await app(scope, receive, send_gzipped)

    return gzipped


class AcceptEncodingSeen:
    """ASGI middleware recording the Accept-Encoding of every request the engine got."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str | None] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            values = [v.decode() for k, v in scope["headers"] if k == b"accept-encoding"]
            self.seen.append(",".join(values) if values else None)
        await self.app(scope, receive, send)


@pytest.fixture
def upstreams() -> Iterator[list[ServerThread]]:
    started: list[ServerThread] = []
    yield started
    for server in started:
        server.stop()


def _secure_client(fleet: LoopbackFleet, enclave: ServerThread) -> SecureClient:
    gateway = fleet.gateway(Discovery(static=[enclave.url]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    return SecureClient(gateway.url, policy, mode=OHTTP)


def _chat_both_ways(secure: SecureClient) -> None:
    client = secure.openai()
    reply = client.chat.completions.create(model="sealgate-demo-echo", messages=MESSAGES)
    assert reply.choices[0].message.content.endswith(REPLY_END)
    stream = client.chat.completions.create(
        model="sealgate-demo-echo", messages=MESSAGES, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 5 and "".join(pieces).endswith(REPLY_END)
    with secure.httpx_client() as http:  # the sealing transport without the openai SDK
        plain = http.post("/v1/embeddings", json={"input": ["a", "b"]})
        assert plain.status_code == 200 and len(plain.json()["data"]) == 2


@pytest.mark.parametrize("where", ["in-process", "upstream"])
def test_an_engine_that_always_compresses_is_decoded_before_sealing(fleet, upstreams, where):
    pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")
    app = always_gzip(create_demo_app())
    if where == "in-process":
        engine: ASGIEngine | HTTPEngine = ASGIEngine(app, {"engine": "gzip"})
    else:
        upstreams.append(ServerThread(app).start())
        engine = HTTPEngine(upstreams[-1].url)
    with _secure_client(fleet, fleet.enclave(engine=engine)) as secure:
        _chat_both_ways(secure)


def test_the_engine_is_asked_for_identity_whatever_the_client_accepts(fleet, upstreams):
    pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")
    # Starlette's GZipMiddleware compresses whenever the request accepts gzip.
    engine = AcceptEncodingSeen(GZipMiddleware(create_demo_app(), minimum_size=0))
    upstreams.append(ServerThread(engine).start())
    with _secure_client(fleet, fleet.enclave(engine=HTTPEngine(upstreams[-1].url))) as secure:
        _chat_both_ways(secure)
    assert engine.seen and set(engine.seen) == {"identity"}


def test_a_compressed_stream_is_released_event_by_event(start_enclave, http):
    gate = threading.Event()
    server, _ = start_enclave(engine=ASGIEngine(always_gzip(gated_engine(gate).app), {}))
    key = fetch_key(http, server.url)
    with sealed_stream(http, server.url + "/v1/chat/completions", key) as frames:
        # Decoded and sealed while the engine is still blocked on the gate.
        assert next(frames) == b"data: first\n\n"
        gate.set()
        assert list(frames) == [b"data: second\n\n"]


def test_an_encoding_the_enclave_cannot_decode_is_an_encrypted_502(start_enclave, http):
    engine = ASGIEngine(always_gzip(create_demo_app(), coding=b"br"), {})
    server, _ = start_enclave(engine=engine)
    key = fetch_key(http, server.url)
    chat = json.dumps({"messages": MESSAGES}).encode()
    result = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, chat)
    assert result.status == 502 and result.encrypted
    problem = Problem.from_bytes(result.body)
    assert problem.type == "urn:sealgate:problem:upstream-unavailable"
    assert "'br'" in (problem.detail or "")
