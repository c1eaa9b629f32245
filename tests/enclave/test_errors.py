"""Every error row of the enclave, a malformed-input corpus and slow clients; it keeps serving."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time

import httpx
import pytest
from sealgate.enclave import EnclaveConfig, KeyRing
from sealgate.enclave.engines import ASGIEngine, HTTPEngine
from sealgate.enclave.exchange import refusal_for
from sealgate.protocol.public import errors
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.public.problem import Problem
from sealgate.protocol.public.varint import encode_varint
from sealgate.protocol.sealing.ehbp_request import RequestEncoder
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.ohttp import ChunkedRequestSealer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..sealed_http import NATIVE, NativeOpening, fetch_key, native_parts, sealed_request
from ..servers import ServerThread, free_port

CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()


def _post_raw(http, url, body, headers):
    return http.post(url + "/v1/chat/completions", content=body, headers=headers)


def _still_serves(http, url):
    key = fetch_key(http, url)
    result = sealed_request(http, "POST", url + "/v1/chat/completions", key, CHAT)
    assert result.status == 200 and result.encrypted


def _post_native(http, url, body, headers=None):
    base = {"content-type": "message/ohttp-chunked-req"}
    return http.post(
        url + "/.well-known/ohttp-gateway", content=body, headers={**base, **(headers or {})}
    )


def _opened(response, sealer) -> tuple[int, bytes]:
    """The inner status and body of a sealed native response."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "message/ohttp-chunked-res"
    opening = NativeOpening(sealer)
    body = b"".join(opening.push(response.content)) + b"".join(opening.finish())
    assert opening.head is not None
    return opening.head.status, body


@pytest.mark.parametrize(
    "headers",
    [
        {"Ehbp-Encapsulated-Key": "zz" * 32},
        {"Ehbp-Encapsulated-Key": "ab" * 31},
        {"Ehbp-Encapsulated-Key": "not hex at all"},
    ],
)
def test_malformed_ehbp_encapsulation_is_400(start_enclave, http, headers):
    server, _ = start_enclave()
    response = _post_raw(http, server.url, b"\x00\x00\x00\x10" + bytes(16), headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert Problem.from_bytes(response.content).type == "urn:sealgate:problem:malformed-request"
    _still_serves(http, server.url)


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json"},  # not an OHTTP media type
        {"content-type": "text/plain", "sealgate-key-id": "00" * 8},
        [
            ("content-type", "message/ohttp-chunked-req"),
            ("sealgate-key-id", "a"),
            ("sealgate-key-id", "b"),
        ],
    ],
    ids=["json", "text", "two-key-ids"],
)
def test_malformed_native_outer_request_is_a_plaintext_400(start_enclave, http, headers):
    server, _ = start_enclave()
    response = http.post(
        server.url + "/.well-known/ohttp-gateway", content=bytes(64), headers=headers
    )
    assert response.status_code == 400
    assert Problem.from_bytes(response.content).type == "urn:sealgate:problem:malformed-request"
    _still_serves(http, server.url)


def test_removed_sealgate_v1_request_is_refused_with_an_upgrade_hint(start_enclave, http):
    server, _ = start_enclave()
    key = fetch_key(http, server.url)
    v1_headers = {"Sealgate-Encapsulated-Key": "00" * 32, "Sealgate-Key-Id": key.fingerprint}
    response = _post_raw(http, server.url, b"\x00\x00\x00\x10" + bytes(16), v1_headers)
    assert response.status_code == 403
    problem = Problem.from_bytes(response.content)
    assert problem.type == "urn:sealgate:problem:plaintext-refused"
    assert "upgrade" in (problem.detail or "")


@pytest.mark.parametrize("mode", [NATIVE, EHBP], ids=str)
def test_unknown_key_is_422_key_config(start_enclave, http, mode):
    server, _ = start_enclave()
    stranger = PrivateKey.generate().key_config()
    result = sealed_request(
        http, "POST", server.url + "/v1/chat/completions", stranger, CHAT, mode=mode
    )
    assert result.status == 422 and not result.encrypted
    assert Problem.from_bytes(result.body).type == "urn:ietf:params:ehbp:error:key-config"


@pytest.mark.parametrize("damage", ["flip", "truncate", "drop_final"])
def test_tampered_or_truncated_native_request_is_refused_never_forwarded(
    start_enclave, http, damage
):
    server, built = start_enclave()
    key = fetch_key(http, server.url)
    url, headers, wire, sealer = native_parts(
        "POST", server.url + "/v1/chat/completions", key, CHAT
    )
    wire = bytearray(wire)
    header = len(sealer.header)
    if damage == "flip":
        wire[header + 10] ^= 0x40  # inside the (final) chunk
    elif damage == "truncate":
        wire = wire[:-3]
    else:
        wire = wire[:header]  # the header alone: no final chunk
    status, body = _opened(http.post(url, content=bytes(wire), headers=headers), sealer)
    assert status == 400  # sealed: the header was authenticated enough to derive a key
    assert Problem.from_bytes(body).type == "urn:sealgate:problem:malformed-request"
    assert built.metrics.requests.labels("ohttp", "ok")._value.get() == 0  # nothing forwarded
    _still_serves(http, server.url)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_or_truncated_ehbp_body_is_4xx(start_enclave, http, damage):
    server, _ = start_enclave()
    key = fetch_key(http, server.url)
    encoder = RequestEncoder(key, EHBP, frame_plaintext=8)
    wire = bytearray(encoder.finish(CHAT))
    if damage == "flip":
        wire[-10] ^= 0x40  # in the last frame: an earlier one opened, so "tampered"
        expected = 400
    else:
        wire = wire[:-3]
        expected = 400
    response = _post_raw(http, server.url, bytes(wire), encoder.headers)
    assert response.status_code == expected
    assert "authentication" in response.text or "inside a frame" in response.text


def test_frame_too_large_is_413(start_enclave, http):
    server, _ = start_enclave()
    key = fetch_key(http, server.url)
    encoder = RequestEncoder(key, EHBP)
    response = _post_raw(http, server.url, b"\x7f\xff\xff\xff" + bytes(64), encoder.headers)
    assert response.status_code == 413
    # Native: a chunk length above the limit is refused before buffering, sealed.
    sealer = ChunkedRequestSealer(key)
    outer = _post_native(
        http,
        server.url,
        sealer.header + encode_varint(1 << 29) + bytes(64),
        {"sealgate-key-id": key.fingerprint},
    )
    status, body = _opened(outer, sealer)
    assert status == 413
    assert Problem.from_bytes(body).type == "urn:sealgate:problem:body-too-large"


def test_body_too_large_is_413(start_enclave, http):
    server, _ = start_enclave(config=EnclaveConfig(max_body_size=1000))
    key = fetch_key(http, server.url)
    result = sealed_request(
        http, "POST", server.url + "/v1/chat/completions", key, os.urandom(5000)
    )
    assert result.status == 413
    _still_serves(http, server.url)


def test_engine_down_is_an_encrypted_502(start_enclave, http):
    server, _ = start_enclave(engine=HTTPEngine(f"http://127.0.0.1:{free_port()}"))
    key = fetch_key(http, server.url)
    result = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, CHAT)
    assert result.status == 502 and result.encrypted  # the client can trust this error
    assert Problem.from_bytes(result.body).type == "urn:sealgate:problem:upstream-unavailable"


def test_engine_timeout_is_an_encrypted_504(start_enclave, http):
    release = threading.Event()

    async def slow(request: Request) -> Response:
        while not release.is_set():
            await asyncio.sleep(0.02)
        return JSONResponse({})

    upstream = ServerThread(
        Starlette(routes=[Route("/v1/chat/completions", slow, methods=["POST"])])
    )
    with upstream:
        server, _ = start_enclave(engine=HTTPEngine(upstream.url, read_timeout=0.3))
        key = fetch_key(http, server.url)
        result = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, CHAT)
        release.set()
    assert result.status == 504 and result.encrypted
    assert Problem.from_bytes(result.body).type == "urn:sealgate:problem:upstream-timeout"


def test_too_many_concurrent_requests_is_503_with_retry_after(start_enclave, http):
    gate = threading.Event()

    async def blocked(request: Request) -> Response:
        while not gate.is_set():
            await asyncio.sleep(0.01)
        return JSONResponse({"ok": True})

    engine = ASGIEngine(
        Starlette(routes=[Route("/v1/chat/completions", blocked, methods=["POST"])]), {}
    )
    server, built = start_enclave(engine=engine, config=EnclaveConfig(max_concurrent_requests=1))
    key = fetch_key(http, server.url)
    first: dict[str, int] = {}
    worker = threading.Thread(
        target=lambda: first.update(
            status=sealed_request(
                httpx.Client(), "POST", server.url + "/v1/chat/completions", key, CHAT
            ).status
        )
    )
    worker.start()
    while built.proxy.in_flight == 0:
        time.sleep(0.01)
    second = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, CHAT)
    assert second.status == 503 and second.headers["retry-after"] == "1"
    assert Problem.from_bytes(second.body).type == "urn:sealgate:problem:overloaded"
    gate.set()
    worker.join(10)
    assert first["status"] == 200


@pytest.mark.parametrize("mode", [NATIVE, EHBP], ids=str)
def test_slow_client_gets_408_while_others_are_served(start_enclave, http, mode):
    server, _ = start_enclave(config=EnclaveConfig(body_timeout=0.5))
    key = fetch_key(http, server.url)
    if mode is EHBP:
        encoder = RequestEncoder(key, EHBP)
        wire = encoder.finish(CHAT)
        target, extra = "/v1/chat/completions", f"Ehbp-Encapsulated-Key: {encoder.enc.hex()}\r\n"
    else:
        _, _, wire, _ = native_parts("POST", server.url + "/v1/chat/completions", key, CHAT)
        target = "/.well-known/ohttp-gateway"
        extra = f"Content-Type: message/ohttp-chunked-req\r\nSealgate-Key-Id: {key.fingerprint}\r\n"
    head = (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(wire)}\r\n{extra}\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(head + wire[:10])  # ... and then nothing
        _still_serves(http, server.url)  # others are served while it stalls
        reply = slow.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408")


CORPUS = [
    b"",
    b"\x00",
    os.urandom(100),
    b"\xff\xff\xff\xff" * 10,
    b"\x00\x00\x00\x00" * 50,
]


@pytest.mark.parametrize("body", CORPUS, ids=range(len(CORPUS)))
@pytest.mark.parametrize("mode", ["native", "ehbp"])
def test_malformed_bodies_get_4xx_never_500(start_enclave, http, body, mode):
    server, _ = start_enclave()
    key = fetch_key(http, server.url)
    if mode == "native":
        response = _post_native(http, server.url, body, {"sealgate-key-id": key.fingerprint})
    else:
        encoder = RequestEncoder(key, EHBP)
        response = _post_raw(http, server.url, body, encoder.headers)
    assert 400 <= response.status_code < 500, response.text
    _still_serves(http, server.url)


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /.well-known/sealgate-attestation?nonce=%ZZ HTTP/1.1\r\nHost: x\r\n\r\n",
        os.urandom(300),
    ],
)
def test_raw_protocol_garbage_does_not_hurt_the_server(start_enclave, http, raw):
    server, _ = start_enclave()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(raw)
        try:
            reply = conn.recv(4096)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert not reply.startswith(b"HTTP/1.1 5")
    _still_serves(http, server.url)


@pytest.mark.parametrize("mode", [NATIVE, EHBP], ids=str)
def test_rotated_key_works_during_grace_then_gets_422(start_enclave, http, mode):
    now = [1_000_000.0]
    keyring = KeyRing(rotate_every=3600, grace=60, clock=lambda: now[0])
    server, built = start_enclave(keyring=keyring)
    old = fetch_key(http, server.url)
    built.rotate_keys()
    new = fetch_key(http, server.url)
    assert new != old
    # within the grace period, both keys decrypt
    for key in (old, new):
        assert (
            sealed_request(
                http, "POST", server.url + "/v1/chat/completions", key, CHAT, mode=mode
            ).status
            == 200
        )
    now[0] += 61
    late = sealed_request(http, "POST", server.url + "/v1/chat/completions", old, CHAT, mode=mode)
    assert late.status == 422
    assert Problem.from_bytes(late.body).type == "urn:ietf:params:ehbp:error:key-config"
    assert (
        sealed_request(
            http, "POST", server.url + "/v1/chat/completions", new, CHAT, mode=mode
        ).status
        == 200
    )


def test_rotation_on_schedule(start_enclave, http):
    now = [0.0]
    keyring = KeyRing(rotate_every=100, grace=10, clock=lambda: now[0])
    assert not keyring.maybe_rotate()
    first = keyring.current.fingerprint
    now[0] = 100
    assert keyring.maybe_rotate() and keyring.current.fingerprint != first
    assert len(keyring.active()) == 4  # two pairs: X25519 + hybrid each
    now[0] = 111
    assert len(keyring.active()) == 2


@pytest.mark.parametrize("name", errors.__all__)
def test_each_protocol_error_is_refused_with_its_status_hint(name):
    """The enclave's refusal of bad sealed input is the status the error itself hints."""
    error_type = getattr(errors, name)
    refusal = refusal_for(error_type("what was wrong"))
    assert refusal.problem.status == error_type.status_hint
    assert refusal.problem.detail is not None and "what was wrong" in refusal.problem.detail
