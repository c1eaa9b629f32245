"""Bad input against the gateway: malformed heads, huge bodies, bogus key ids, slow clients."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from sealgate.gateway import Discovery, GatewayConfig
from sealgate.protocol.evidence.attestation import AttestationDocument

from ..sealed_http import sealed_request

CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()


def _send(port: int, raw: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(raw)
        try:
            return conn.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return b""


def _serves(http, gw) -> None:
    doc = http.get(gw.url + "/.well-known/sealgate-fleet").json()
    key = AttestationDocument.from_dict(doc["enclaves"][0]["attestation"]).keys[0]
    assert sealed_request(http, "POST", gw.url + "/v1/chat/completions", key, CHAT).status == 200


@pytest.fixture
def gw(fleet):
    server = fleet.enclave()
    return fleet.gateway(
        Discovery(static=[server.url]),
        GatewayConfig(
            poll_interval=0.2,
            header_timeout=1.0,
            body_timeout=1.0,
            max_body_bytes=10_000,
            max_header_bytes=4096,
        ),
    )


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n", b"400"),
        (b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", b"505"),
        (b"POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", b"413"),
        (
            b"POST /v1/x HTTP/1.1\r\nHost: x\r\nSealgate-Key-Id: nothex\r\nContent-Length: 1\r\n\r\nx",
            b"421",
        ),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nSealgate-Key-Id: a\r\nSealgate-Key-Id: b\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nHost: x\r\n\r\n", b"400"),
        (
            b"POST /.well-known/sealgate-fleet HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"405",
        ),
    ],
)
def test_malformed_requests_get_clear_4xx(gw, http, raw, status):
    reply = _send(gw.port, raw)
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:200]
    assert b"application/problem+json" in reply
    _serves(http, gw)


def test_huge_chunked_body_is_413_and_cut(gw, http):
    doc = http.get(gw.url + "/.well-known/sealgate-fleet").json()
    key = AttestationDocument.from_dict(doc["enclaves"][0]["attestation"]).keys[0]
    head = (
        "POST /.well-known/ohttp-gateway HTTP/1.1\r\nHost: x\r\n"
        f"Sealgate-Key-Id: {key.fingerprint}\r\nContent-Type: message/ohttp-chunked-req\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (4000, os.urandom(4000))
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as conn:
        conn.sendall(head)
        reply = b""
        try:
            for _ in range(10):
                conn.sendall(chunk)
            reply = conn.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
    # Either the gateway refused before forwarding (413) or cut the connection after.
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4")
    _serves(http, gw)


def test_slowloris_head_gets_408_while_others_are_served(gw, http):
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... never finishes the head
        _serves(http, gw)
        reply = slow.recv(65536)  # the socket's own 10 s timeout bounds the wait
    assert reply.startswith(b"HTTP/1.1 408")


def test_stalled_body_gets_408(gw, http):
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as slow:
        slow.sendall(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        reply = slow.recv(65536)
    # routed to the enclave (no key id: any healthy one) then stalled: cut or 408
    assert reply == b"" or reply.startswith((b"HTTP/1.1 408", b"HTTP/1.1 4"))
    _serves(http, gw)


def test_connection_limit(fleet, http):
    server = fleet.enclave()
    gw = fleet.gateway(
        Discovery(static=[server.url]), GatewayConfig(poll_interval=0.2, max_connections=2)
    )
    held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(2)]
    try:
        time.sleep(0.2)
        reply = _send(gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()


def test_a_gateway_bug_in_a_parser_callback_is_a_logged_500_not_a_400(gw, monkeypatch, caplog):
    """httptools reports our own callback's exception as "User callback error"; that must not
    be blamed on the client as a malformed request, and its cause must reach the log."""
    from sealgate.gateway import proxy

    def broken(self, parser):
        raise RuntimeError("simulated bug in request preparation")

    monkeypatch.setattr(proxy.Exchange, "prepare", broken)
    with caplog.at_level("ERROR", logger="sealgate.gateway.routing"):
        answer = _send(gw.port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500"), answer[:80]
    assert b"internal-error" in answer
    assert any("simulated bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
