"""Data-plane hardening: slow heads and bodies, HEAD, 100-continue, Connection, pipelining, nonces."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from sealgate.enclave import EnclaveConfig, create_app
from sealgate.enclave.attesters import SoftwareAttester
from sealgate.enclave.engines import Engine, demo_engine
from sealgate.gateway import Discovery, GatewayConfig
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.public.problem import Problem

from ..loopback import LoopbackFleet, gated_engine
from ..servers import GatewayThread, ServerThread

Seen = list[tuple[str, str, bytes, list[tuple[bytes, bytes]]]]
PLAIN_POST = EnclaveConfig(plaintext_paths=frozenset({("POST", "/v1/chat/completions")}))
PLAIN_GET = EnclaveConfig(plaintext_paths=frozenset({("GET", "/v1/models")}))


def _recording_enclave(
    fleet: LoopbackFleet,
    config: EnclaveConfig | None = None,
    engine: Engine | None = None,
    body_gate: threading.Event | None = None,
) -> tuple[ServerThread, Seen]:
    """An enclave whose ASGI app notes (method, path, query, headers) of every request it gets
    and, given ``body_gate``, reads no request body until the gate is set."""
    built = create_app(
        SoftwareAttester(fleet.root, fleet.measurement), engine or demo_engine(), config
    )
    seen: Seen = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            seen.append(
                (scope["method"], scope["path"], scope["query_string"], list(scope["headers"]))
            )
            if body_gate is not None and scope["method"] == "POST":
                inner = receive

                async def receive():  # type: ignore[no-untyped-def]
                    while not body_gate.is_set():
                        await asyncio.sleep(0.01)
                    return await inner()

        await built.app(scope, receive, send)

    server = ServerThread(app).start()
    fleet.enclaves.append(server)
    fleet.built.append(built)
    return server, seen


def _read_until(conn: socket.socket, done: Callable[[bytes], bool], timeout: float = 10) -> bytes:
    """Read until ``done(data)`` or EOF; the deadline only bounds a broken gateway."""
    deadline = time.monotonic() + timeout
    data = b""
    while not done(data):
        conn.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _responses(raw: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split a byte stream into its complete (status, head, body) responses (Content-Length
    or chunked); a response still arriving is left out, however the bytes were split."""
    found = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            break
        status = int(head[9:12])
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        if status < 200 or status in (204, 304):
            body = b""
        elif b"content-length" in fields:
            length = int(fields[b"content-length"])
            if len(rest) < length:
                break
            body, rest = rest[:length], rest[length:]
        elif fields.get(b"transfer-encoding") == b"chunked":
            parsed = _dechunk(rest)
            if parsed is None:
                break
            body, rest = parsed
        else:
            body, rest = rest, b""
        found.append((status, head, body))
        raw = rest
    return found


def _dechunk(raw: bytes) -> tuple[bytes, bytes] | None:
    """(body, the bytes after it) of a chunked body, or None while it is incomplete."""
    body = b""
    while True:
        size_line, sep, raw = raw.partition(b"\r\n")
        if not sep:
            return None
        size = int(size_line, 16)
        if len(raw) < size + 2:
            return None
        body += raw[:size]
        raw = raw[size + 2 :]
        if size == 0:
            return body, raw


def _drip(
    socks: list[socket.socket], until: float, byte: bytes = b"a", every: float = 0.25
) -> tuple[set[socket.socket], dict[socket.socket, bytes]]:
    """Send one byte per socket every ``every`` seconds until ``until``; return the sockets
    the gateway has not closed by then and what each one received."""
    open_ = set(socks)
    replies = {s: b"" for s in socks}
    for sock in socks:
        sock.setblocking(False)
    while open_ and time.monotonic() < until:
        readable, _, _ = select.select(list(open_), [], [], 0)
        for sock in readable:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BlockingIOError):
                chunk = b""
            replies[sock] += chunk
            if not chunk:
                open_.discard(sock)
        for sock in list(open_):
            if sock in readable:
                continue
            try:
                sock.send(byte)
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                open_.discard(sock)
        time.sleep(min(every, max(0.0, until - time.monotonic())))
    return open_, replies


def _connections(gw: GatewayThread) -> int:
    async def count() -> int:
        return len(gw.gateway.plane.connections)

    return int(gw.call(count()))  # type: ignore[call-overload]


# -- 1. slowloris: the head has a total deadline ---------------------------------------------


def test_dripping_heads_are_closed_at_the_header_deadline_while_others_are_served(fleet, http):
    drippers = 40
    server = fleet.enclave()
    gw = fleet.gateway(
        Discovery(static=[server.url]),
        GatewayConfig(poll_interval=0.2, header_timeout=1.0, max_connections=drippers + 8),
    )
    socks = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(drippers)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Drip: ")
        # A legitimate request is served while every dripper is connected.
        assert http.get(gw.url + "/healthz").status_code == 200
        # One byte every 0.25 s never leaves a socket idle for the 1 s header timeout; the
        # head deadline (1 s) plus the sweep period (0.5 s) plus generous slack ends it.
        still_open, replies = _drip(socks, time.monotonic() + 4.0)
        held = drippers - len(set(socks) - still_open)
        assert len(still_open) == 0, f"{len(still_open)} of {drippers} dripping sockets still open"
        assert held == 0
        for reply in replies.values():
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert any(replies.values())  # the gateway said why
        assert _connections(gw) <= 1  # no slot is held by a dripper (at most http's own)
        assert http.get(gw.url + "/healthz").status_code == 200
    finally:
        for sock in socks:
            sock.close()


def test_keep_alive_connection_gets_a_fresh_head_deadline_after_each_response(fleet):
    server = fleet.enclave()
    gw = fleet.gateway(
        Discovery(static=[server.url]), GatewayConfig(poll_interval=0.2, header_timeout=1.0)
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        for _ in range(3):  # well past one header timeout in total, each head quick
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = _read_until(conn, lambda d: len(_responses(d)) == 1)
            assert _responses(reply)[0][0] == 200
            time.sleep(0.4)
        # then idle: closed (without a response) once the deadline passes
        assert _read_until(conn, lambda d: False, timeout=10) == b""


# -- 2. slow bodies: a minimum average rate after the grace period ---------------------------


def test_dripping_bodies_get_408_at_the_body_deadline(fleet, http):
    drippers = 20
    server = fleet.enclave(config=PLAIN_POST)
    gw = fleet.gateway(
        Discovery(static=[server.url]),
        GatewayConfig(
            poll_interval=0.2,
            header_timeout=1.0,
            body_timeout=1.0,
            body_min_rate=100.0,
            max_connections=drippers + 8,
        ),
    )
    socks = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(drippers)]
    try:
        for sock in socks:  # forwarded to the enclave, which waits for the rest of the body
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"
            )
        # 4 bytes/s never idles for body_timeout (1 s), but is far below 100 bytes/s: the
        # deadline is 1 s + received/100 s, i.e. about 1.05 s, plus the sweep and slack.
        still_open, replies = _drip(socks, time.monotonic() + 5.0, byte=b" ")
        assert len(still_open) == 0, f"{len(still_open)} of {drippers} dripping bodies still open"
        for reply in replies.values():
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply[:100]
        timeouts = [r for r in replies.values() if r]
        assert timeouts
        assert b"application/problem+json" in timeouts[0]
        assert _connections(gw) <= 1
        response = http.post(gw.url + "/v1/chat/completions", content=b"{}")
        assert response.status_code != 408  # a prompt body is not touched by the rule
    finally:
        for sock in socks:
            sock.close()


def test_time_held_back_by_a_slow_enclave_does_not_count_against_the_body(fleet):
    gate = threading.Event()
    server, seen = _recording_enclave(fleet, config=PLAIN_POST, body_gate=gate)
    gw = fleet.gateway(
        Discovery(static=[server.url]),
        # A rate no paused upload could keep: only time the client is free to send counts.
        GatewayConfig(poll_interval=0.2, body_timeout=1.0, body_min_rate=5_000_000.0),
    )
    body = b"{" + b" " * (16 * 1024 * 1024)

    async def held_back() -> float:
        return max(
            (c.held_back(time.monotonic()) for c in gw.gateway.plane.connections), default=0.0
        )

    replies: list[bytes] = []

    def upload() -> None:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as conn:
            head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            # a refusal mid-upload breaks the pipe; the reply still says why
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.sendall(head % len(body) + body)
            replies.append(_read_until(conn, lambda d: len(_responses(d)) == 1, timeout=30))

    sender = threading.Thread(target=upload)
    sender.start()
    try:
        # The enclave reads nothing: the gateway stops reading the client (backpressure).
        # Keep it so for longer than body_timeout + received / body_min_rate.
        deadline = time.monotonic() + 20
        while gw.call(held_back()) < 2.5 and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.05)
    finally:
        gate.set()
        sender.join(30)
    assert replies and not replies[0].startswith(b"HTTP/1.1 408"), replies[:1]
    assert _responses(replies[0])[0][0] != 408
    assert any(path == "/v1/chat/completions" for _, path, _, _ in seen)


# -- 3. HEAD on the gateway's own endpoints ------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/.well-known/sealgate-fleet"])
def test_head_on_local_endpoints_has_no_body(fleet, path):
    server = fleet.enclave()
    gw = fleet.gateway(Discovery(static=[server.url]))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(timeout=10, limits=limits) as client:
        head = client.head(gw.url + path)
        get = client.get(gw.url + path)  # same connection: a stray HEAD body would corrupt it
        assert head.status_code == get.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) > 0
        if path == "/healthz":  # the others change between calls
            assert int(head.headers["content-length"]) == len(get.content)
        assert head.headers["content-type"] == get.headers["content-type"]
        addresses = {
            r.extensions["network_stream"].get_extra_info("client_addr") for r in (head, get)
        }
        assert len(addresses) == 1


# -- 4. 100 Continue only for the request at the head of the pipeline ---------------------


def test_100_continue_of_a_pipelined_request_waits_for_the_earlier_response(fleet):
    import threading

    gate = threading.Event()
    server = fleet.enclave(engine=gated_engine(gate), config=PLAIN_POST)
    gw = fleet.gateway(Discovery(static=[server.url]))
    first = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    second = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        conn.sendall(first + second)  # both heads in one read: parsed before any response
        early = _read_until(conn, lambda d: b"data: first" in d)
        assert b"data: first" in early
        assert b" 100 " not in early  # nothing inside the streaming response 1
        gate.set()
        raw = _read_until(conn, lambda d: b"100 Continue\r\n\r\n" in d, timeout=10)
        raw = early + raw
        end_of_first = raw.index(b"0\r\n\r\n", raw.index(b"data: second")) + 5
        assert raw[end_of_first:].startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(b"{}")
        rest = _read_until(conn, lambda d: len(_responses(d)) == 1 and d.endswith(b"0\r\n\r\n"))
        assert _responses(raw[end_of_first + 25 :] + rest)[0][0] == 200


def test_100_continue_only_for_a_request_that_will_be_forwarded(fleet):
    server = fleet.enclave(config=PLAIN_POST)
    gw = fleet.gateway(Discovery(static=[server.url]))
    chat = b'{"messages": [{"role": "user", "content": "hi"}]}'
    expect = b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(chat)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + expect)
        assert _read_until(conn, lambda d: b"\r\n\r\n" in d) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(chat)
        assert _responses(_read_until(conn, lambda d: len(_responses(d)) == 1))[0][0] == 200
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        # refused by the gateway itself (unknown key): the final status, no interim one
        conn.sendall(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nSealgate-Key-Id: 00\r\n" + expect)
        reply = _read_until(conn, lambda d: False)
    assert reply.startswith(b"HTTP/1.1 421")


# -- 5. fields named in Connection are hop-by-hop (RFC 9110 section 7.6.1) ------------------


def test_fields_named_in_connection_never_reach_the_enclave(fleet):
    server, seen = _recording_enclave(fleet, config=PLAIN_GET)
    gw = fleet.gateway(Discovery(static=[server.url]))
    request = (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop\r\n"
        b"X-Hop: secret\r\nX-Kept: yes\r\nconnection: x-other\r\nX-Other: secret-too\r\n"
        b"X-HOP: again\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        conn.sendall(request)
        reply = _read_until(conn, lambda d: len(_responses(d)) == 1)
    assert _responses(reply)[0][0] == 200
    [(_, _, _, headers)] = [s for s in seen if s[1] == "/v1/models"]
    names = {name.lower() for name, _ in headers}
    assert b"x-kept" in names
    assert not names & {b"x-hop", b"x-other", b"connection"}
    assert not any(b"secret" in value for _, value in headers)


# -- 6. a malformed pipelined request after a valid one -------------------------------------


def test_valid_response_is_sent_before_the_400_for_a_malformed_pipelined_request(fleet):
    server = fleet.enclave(config=PLAIN_GET)
    gw = fleet.gateway(Discovery(static=[server.url]))
    valid = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    broken = b"GET /x HTTP/1.1\r\nBad Header Line\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        conn.sendall(valid + broken)
        raw = _read_until(conn, lambda d: False)  # to EOF: the gateway closes after the 400
    responses = _responses(raw)
    assert [status for status, _, _ in responses] == [200, 400]
    assert b"sealgate-demo-echo" in responses[0][2]
    assert b"application/problem+json" in responses[1][1]
    assert Problem.from_bytes(responses[1][2]).status == 400


def test_malformed_request_behind_a_streaming_response_waits_for_it(fleet):
    import threading

    gate = threading.Event()
    server = fleet.enclave(engine=gated_engine(gate), config=PLAIN_POST)
    gw = fleet.gateway(Discovery(static=[server.url]))
    valid = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        conn.sendall(valid + b"NOT HTTP AT ALL\r\n\r\n")
        early = _read_until(conn, lambda d: b"data: first" in d)
        assert early.startswith(b"HTTP/1.1 200") and b" 400 " not in early
        gate.set()
        raw = early + _read_until(conn, lambda d: False)
    assert [status for status, _, _ in _responses(raw)] == [200, 400]


# -- 8. per-source limit on fresh-nonce attestation requests --------------------------------


def _nonce_url(gw: GatewayThread) -> str:
    return gw.url + "/.well-known/sealgate-attestation?nonce=" + os.urandom(32).hex()


def _key_id(http: httpx.Client, gw: GatewayThread) -> str:
    doc = http.get(gw.url + "/.well-known/sealgate-fleet").json()
    return AttestationDocument.from_dict(doc["enclaves"][0]["attestation"]).keys[0].fingerprint


def test_nonce_requests_are_limited_per_source_with_429(fleet, http):
    server, seen = _recording_enclave(fleet)
    gw = fleet.gateway(
        Discovery(static=[server.url]),
        GatewayConfig(poll_interval=0.2, nonce_rate=0.1, nonce_burst=3),
    )
    headers = {"Sealgate-Key-Id": _key_id(http, gw)}
    statuses = []
    for _ in range(8):
        response = http.get(_nonce_url(gw), headers=headers)
        statuses.append(response.status_code)
    assert statuses == [200] * 3 + [429] * 5
    problem = Problem.from_bytes(response.content)
    assert problem.type == "urn:sealgate:problem:rate-limited"
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.http_version == "HTTP/1.1" and not response.headers.get("connection")
    # Only the admitted ones reached the enclave, and a spelling trick is no way around it.
    sneaky = gw.url + "/.well-known/sealgate-attestation?n%6Fnce=" + os.urandom(32).hex()
    assert http.get(sneaky, headers=headers).status_code == 429
    nonce_requests = [s for s in seen if s[1] == "/.well-known/sealgate-attestation" and s[2]]
    assert len(nonce_requests) == 3
    assert 'outcome="rate_limited"} 6.0' in http.get(gw.url + "/metrics").text
    # Requests without a nonce (the cached document, inference) are not limited.
    assert (
        http.get(gw.url + "/.well-known/sealgate-attestation", headers=headers).status_code == 200
    )


def test_a_nonce_flood_from_one_source_does_not_starve_another(fleet, http):
    try:
        probe = socket.socket()
        probe.bind(("127.0.0.2", 0))
        probe.close()
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address here")
    server = fleet.enclave()
    gw = fleet.gateway(
        Discovery(static=[server.url]),
        GatewayConfig(poll_interval=0.2, nonce_rate=0.1, nonce_burst=2),
    )
    headers = {"Sealgate-Key-Id": _key_id(http, gw)}
    flood = [http.get(_nonce_url(gw), headers=headers).status_code for _ in range(10)]
    assert flood.count(429) == 8
    other = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=other, timeout=10) as strict:
        response = strict.get(_nonce_url(gw), headers=headers)
    assert response.status_code == 200
    assert AttestationDocument.from_json(response.content).nonce
