"""The enclave's native mode (``/.well-known/ohttp-gateway``), driven with the sans-IO protocol."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sealgate.enclave import EnclaveConfig
from sealgate.enclave.engines import ASGIEngine, HTTPEngine
from sealgate.protocol.public.errors import TruncatedMessage
from sealgate.protocol.public.keyconfig import KeyConfig, decode_key_configs
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.sealing.bhttp import Data, MessageDecoder, Request, ResponseHead
from sealgate.protocol.sealing.ohttp import ChunkedRequestSealer, OneShotRequest
from sealgate.protocol.sealing.padding import strip_sse_padding
from sealgate.protocol.sealing.replay import http_date, parse_http_date
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..sealed_http import fetch_key, sealed_stream
from ..servers import free_port

GATEWAY = "/.well-known/ohttp-gateway"
CHUNKED = {"content-type": "message/ohttp-chunked-req"}


def _keys(url: str) -> list[KeyConfig]:
    response = httpx.get(url + GATEWAY)
    assert response.headers["content-type"] == "application/ohttp-keys"
    return decode_key_configs(response.content)


def _request(method: bytes, path: bytes, body: bytes = b"", date: str | None = None) -> bytes:
    headers = (
        (b"content-type", b"application/json"),
        (b"date", (date or http_date(time.time())).encode()),
    )
    message = Request(method, b"https", b"", path, headers, body).to_bytes()
    return message + bytes(-len(message) % 1024)


def _exchange(
    url: str, key: KeyConfig, message: bytes
) -> tuple[httpx.Response, ChunkedRequestSealer]:
    sealer = ChunkedRequestSealer(key)
    response = httpx.post(
        url + GATEWAY,
        content=sealer.header + sealer.seal_final(message),
        headers={**CHUNKED, "sealgate-key-id": key.fingerprint},
    )
    return response, sealer


def _open(response: httpx.Response, sealer: ChunkedRequestSealer) -> tuple[ResponseHead, bytes]:
    assert response.status_code == 200
    assert response.headers["content-type"] == "message/ohttp-chunked-res"
    opener, decoder = sealer.response_opener(), MessageDecoder(request=False)
    events = []
    for plaintext in opener.push(response.content):
        events += decoder.push(plaintext)
    events += decoder.push(opener.finish()) + decoder.finish()
    head = next(e for e in events if isinstance(e, ResponseHead))
    return head, b"".join(e.data for e in events if isinstance(e, Data))


def _problem(head: ResponseHead, body: bytes) -> Problem:
    assert dict(head.headers)[b"content-type"] == b"application/problem+json"
    return Problem.from_bytes(body)


def test_models_chat_and_key_list(start_enclave):
    server, built = start_enclave()
    key = _keys(server.url)[0]
    assert key.fingerprint == built.keyring.current.fingerprint
    head, body = _open(*_exchange(server.url, key, _request(b"GET", b"/v1/models")))
    assert head.status == 200 and json.loads(body)["object"] == "list"
    chat = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    head, body = _open(
        *_exchange(server.url, key, _request(b"POST", b"/v1/chat/completions", chat))
    )
    assert head.status == 200 and b"data: [DONE]\n\n:" in body  # padded with SSE comments
    assert strip_sse_padding(body.split(b"data: [DONE]\n\n")[1]) == b""


def test_one_shot_ohttp_is_accepted(start_enclave):
    server, _ = start_enclave()
    key = _keys(server.url)[0]
    request = OneShotRequest(key, _request(b"GET", b"/v1/models"))
    response = httpx.post(
        server.url + GATEWAY,
        content=request.encapsulated,
        headers={"content-type": "message/ohttp-req"},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "message/ohttp-res"
    plaintext = request.open_response(response.content)
    decoder = MessageDecoder(request=False)
    events = decoder.push(plaintext) + decoder.finish()
    assert next(e for e in events if isinstance(e, ResponseHead)).status == 200
    assert len(plaintext) % 128 == 0


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        (b"GET", b"/admin", 404),
        (b"GET", b"/v1/models/../../admin", 404),
        (b"GET", b"/v1/models/%2e%2e/secret", 404),
        (b"GET", b"/v1/models/a/b", 404),
        (b"DELETE", b"/v1/models", 405),
        (b"GET", b"/v1/chat/completions", 405),
    ],
)
def test_routes_outside_the_allow_list_are_sealed_refusals(start_enclave, method, path, status):
    server, _ = start_enclave()
    key = _keys(server.url)[0]
    head, body = _open(*_exchange(server.url, key, _request(method, path)))
    assert head.status == status and _problem(head, body).status == status


def test_stale_request_gets_the_enclave_time_sealed(start_enclave):
    server, _ = start_enclave()
    key = _keys(server.url)[0]
    old = http_date(time.time() - 3600)
    head, body = _open(*_exchange(server.url, key, _request(b"GET", b"/v1/models", date=old)))
    assert head.status == 400 and _problem(head, body).is_(PROBLEMS.STALE_REQUEST)
    enclave_time = parse_http_date(dict(head.headers)[b"date"].decode())
    assert enclave_time is not None and abs(enclave_time - time.time()) < 30


def test_replay_window_is_configurable(start_enclave):
    server, _ = start_enclave(config=EnclaveConfig(replay_window=1000.0))
    key = _keys(server.url)[0]
    old = http_date(time.time() - 600)
    head, _ = _open(*_exchange(server.url, key, _request(b"GET", b"/v1/models", date=old)))
    assert head.status == 200


def test_refusals_before_decapsulation_are_plaintext(start_enclave):
    server, _ = start_enclave()
    key = _keys(server.url)[0]
    sealer = ChunkedRequestSealer(key)
    wire = sealer.header + sealer.seal_final(_request(b"GET", b"/v1/models"))
    unknown = httpx.post(
        server.url + GATEWAY, content=wire, headers={**CHUNKED, "sealgate-key-id": "00" * 8}
    )
    assert unknown.status_code == 422
    assert Problem.from_bytes(unknown.content).is_(PROBLEMS.KEY_CONFIG)
    wrong_type = httpx.post(
        server.url + GATEWAY, content=wire, headers={"content-type": "application/json"}
    )
    assert wrong_type.status_code == 400
    garbage = httpx.post(server.url + GATEWAY, content=b"\x00" * 3, headers=CHUNKED)
    assert garbage.status_code in (400, 422)


def _failing_engine() -> ASGIEngine:
    async def chat(request: StarletteRequest) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            raise RuntimeError("engine crashed mid-stream")

        return StreamingResponse(events(), media_type="text/event-stream")

    return ASGIEngine(
        Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]),
        {"engine": "failing"},
    )


def test_engine_failure_before_the_head_is_a_sealed_502(start_enclave):
    server, _ = start_enclave(engine=HTTPEngine(f"http://127.0.0.1:{free_port()}"))
    key = _keys(server.url)[0]
    head, body = _open(
        *_exchange(server.url, key, _request(b"POST", b"/v1/chat/completions", b"{}"))
    )
    assert head.status == 502 and _problem(head, body).is_(PROBLEMS.UPSTREAM_UNAVAILABLE)


def test_engine_failure_mid_stream_leaves_out_the_final_chunk(start_enclave):
    server, _ = start_enclave(engine=_failing_engine())
    key = _keys(server.url)[0]
    response, sealer = _exchange(server.url, key, _request(b"POST", b"/v1/chat/completions", b"{}"))
    assert response.status_code == 200
    opener = sealer.response_opener()
    opened = b"".join(opener.push(response.content))
    assert b"data: first" in opened
    with pytest.raises(TruncatedMessage):
        opener.finish()


def test_a_flood_of_distinct_requests_fills_the_replay_cache_then_gets_503(start_enclave):
    """Beyond capacity, valid requests are refused (sealed 503 + Retry-After) rather than
    forgetting a remembered key; the guard never holds more than its capacity."""
    capacity = 20
    server, built = start_enclave(config=EnclaveConfig(replay_capacity=capacity))
    key = _keys(server.url)[0]
    captured = []
    for _ in range(capacity):
        sealer = ChunkedRequestSealer(key)
        body = sealer.header + sealer.seal_final(_request(b"GET", b"/v1/models"))
        response = httpx.post(
            server.url + GATEWAY,
            content=body,
            headers={**CHUNKED, "sealgate-key-id": key.fingerprint},
        )
        assert _open(response, sealer)[0].status == 200
        captured.append(body)
    for _ in range(5):
        head, body = _open(*_exchange(server.url, key, _request(b"GET", b"/v1/models")))
        assert head.status == 503 and int(dict(head.headers)[b"retry-after"]) >= 1
        assert _problem(head, body).type == "urn:sealgate:problem:overloaded"
    assert len(built.native.guard) == capacity
    # A remembered request is still a replay: nothing was forgotten to make room.
    replay = httpx.post(
        server.url + GATEWAY,
        content=captured[0],
        headers={**CHUNKED, "sealgate-key-id": key.fingerprint},
    )
    assert replay.status_code == 200  # sealed to the original sender; not forwarded
    metrics = httpx.get(server.url + "/metrics").text
    assert 'sealgate_enclave_replays_total{reason="cache_full"} 5.0' in metrics
    assert 'sealgate_enclave_replays_total{reason="replayed"} 1.0' in metrics
    assert 'sealgate_enclave_requests_total{mode="ohttp",outcome="ok"} 20.0' in metrics


def _burst_engine(gate: threading.Event) -> ASGIEngine:
    """Five events at once, then (after ``gate``) a sixth."""

    async def chat(request: StarletteRequest) -> Response:
        async def events() -> AsyncIterator[bytes]:
            for i in range(5):
                yield b"data: %d\n\n" % i
                await asyncio.sleep(0)  # separate chunks from the engine
            while not gate.is_set():
                await asyncio.sleep(0.01)
            yield b"data: last\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return ASGIEngine(
        Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]), {"e": "burst"}
    )


@pytest.mark.parametrize("interval", [0.0, 1.0])
def test_sse_coalescing_interval_batches_events_into_one_chunk(start_enclave, interval):
    gate = threading.Event()
    config = EnclaveConfig(sse_coalesce_interval=interval)
    server, _ = start_enclave(engine=_burst_engine(gate), config=config)
    key = fetch_key(httpx.Client(), server.url)
    with (
        httpx.Client(timeout=30) as http,
        sealed_stream(http, server.url + "/v1/chat/completions", key) as pieces,
    ):
        burst = [next(pieces) for _ in range(1 if interval else 5)]
        gate.set()
        rest = list(pieces)
    assert b"".join(burst) == b"".join(b"data: %d\n\n" % i for i in range(5))
    assert rest == [b"data: last\n\n"]
