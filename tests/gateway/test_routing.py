"""Routing through the gateway: by key id, 421/503 before forwarding, pass-through, streaming."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from sealgate.enclave import EnclaveConfig
from sealgate.gateway import Discovery
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.public.problem import Problem

from ..loopback import gated_engine
from ..sealed_http import native_parts, sealed_request, sealed_stream

CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


def _fleet_keys(http, gateway_url):
    doc = http.get(gateway_url + "/.well-known/sealgate-fleet").json()
    return {
        e["id"]: AttestationDocument.from_dict(e["attestation"]).keys[0] for e in doc["enclaves"]
    }


def _served(fleet, total: int, outcome: str = "ok") -> list[int]:
    """Per enclave, sealed requests it finished with ``outcome``, once ``total`` have.

    An enclave counts a request when its handler returns, on the enclave's own thread: after
    uvicorn has written the last response byte and the engine stream is closed. The client
    can hold the whole response before that, so reading the counter right after the response
    races with the enclave. This waits (bounded) for the handlers to finish instead.
    """
    deadline = time.monotonic() + 10
    while True:
        counts = [
            int(b.metrics.requests.labels("ohttp", outcome)._value.get()) for b in fleet.built
        ]
        if sum(counts) >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.01)


def test_requests_go_to_the_enclave_holding_the_key(fleet, http):
    servers = [fleet.enclave() for _ in range(3)]
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]))
    keys = _fleet_keys(http, gw.url)
    assert len(keys) == 3
    for key in keys.values():
        for _ in range(2):
            result = sealed_request(http, "POST", gw.url + "/v1/chat/completions", key, CHAT)
            assert result.status == 200 and result.encrypted
    # each enclave got exactly the requests sealed to its key
    assert _served(fleet, 6) == [2, 2, 2]


def test_unknown_key_is_421_and_nothing_is_forwarded(fleet, http):
    server = fleet.enclave()
    gw = fleet.gateway(Discovery(static=[server.url]))
    response = http.post(
        gw.url + "/.well-known/ohttp-gateway",
        content=b"x",
        headers={"Sealgate-Key-Id": "ab" * 8, "Content-Type": "message/ohttp-chunked-req"},
    )
    assert response.status_code == 421
    assert Problem.from_bytes(response.content).type == "urn:sealgate:problem:unknown-key"
    assert fleet.built[0].metrics.requests.labels("ohttp", "bad_request")._value.get() == 0


def test_enclave_down_is_503_with_retry_after_before_forwarding(fleet, http):
    up, down = fleet.enclave(), fleet.enclave()
    gw = fleet.gateway(Discovery(static=[up.url, down.url]))
    keys = _fleet_keys(http, gw.url)
    down_key = next(
        k for k in keys.values() if k.fingerprint in fleet.built[1].keyring.current.fingerprint
    )
    down.stop()
    first = sealed_request(http, "POST", gw.url + "/v1/chat/completions", down_key, CHAT)
    assert first.status == 503 and not first.encrypted
    assert Problem.from_bytes(first.body).type == "urn:sealgate:problem:enclave-unavailable"
    assert int(first.headers["retry-after"]) >= 1
    # the breaker is open now: the next request is refused without even connecting
    second = sealed_request(http, "POST", gw.url + "/v1/chat/completions", down_key, CHAT)
    assert second.status == 503
    gw.refresh()
    health = http.get(gw.url + "/healthz").json()
    assert health["healthy_enclaves"] == 1


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    return data


def _without_date(raw: bytes) -> bytes:
    return b"\r\n".join(
        line for line in raw.split(b"\r\n") if not line.lower().startswith(b"date:")
    )


def test_enclave_422_reaches_the_client_byte_for_byte(fleet, http):
    server = fleet.enclave()
    built = fleet.built[0]
    gw = fleet.gateway(Discovery(static=[server.url]))
    old = _fleet_keys(http, gw.url).popitem()[1]
    _, headers, body, _ = native_parts("POST", gw.url + "/v1/chat/completions", old, b"{}")
    built.keyring.grace = 0
    built.rotate_keys()  # the old key is gone on the enclave; the gateway still routes it
    request = (
        b"POST /.well-known/ohttp-gateway HTTP/1.1\r\nHost: x\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    direct = _raw_exchange(server.port, request)
    through = _raw_exchange(gw.port, request)
    assert direct.startswith(b"HTTP/1.1 422")
    assert _without_date(through) == _without_date(direct)
    assert b"urn:ietf:params:ehbp:error:key-config" in through


def test_sse_frames_pass_through_as_they_arrive(fleet, http):
    gate = threading.Event()
    server = fleet.enclave(engine=gated_engine(gate))
    gw = fleet.gateway(Discovery(static=[server.url]))
    key = _fleet_keys(http, gw.url).popitem()[1]
    with sealed_stream(http, gw.url + "/v1/chat/completions", key) as frames:
        # Through the gateway while the engine still waits.
        assert next(frames) == b"data: first\n\n"
        gate.set()
        assert list(frames) == [b"data: second\n\n"]


def test_client_disconnect_cancels_the_upstream_hop(fleet, http):
    gate = threading.Event()
    server = fleet.enclave(engine=gated_engine(gate))
    gw = fleet.gateway(Discovery(static=[server.url]))
    key = _fleet_keys(http, gw.url).popitem()[1]
    _, headers, body, _ = native_parts("POST", gw.url + "/v1/chat/completions", key, b"{}")
    head = (
        "POST /.well-known/ohttp-gateway HTTP/1.1\r\nHost: x\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    proxy = fleet.built[0].proxy
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        conn.sendall(head + body)
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        assert proxy.in_flight == 1
    deadline = time.monotonic() + 10
    while proxy.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.in_flight == 0  # the enclave saw the disconnect and cancelled the engine
    gate.set()
    # in_flight drops just before the handler counts the request: wait for the count too
    assert _served(fleet, 1, "client_disconnected") == [1]


def test_plaintext_allowed_path_without_key_id_goes_to_a_healthy_enclave(fleet, http):
    server = fleet.enclave(config=EnclaveConfig(plaintext_paths=frozenset({("GET", "/v1/models")})))
    gw = fleet.gateway(Discovery(static=[server.url]))
    response = http.get(gw.url + "/v1/models")
    assert response.status_code == 200 and response.json()["data"][0]["id"] == "sealgate-demo-echo"


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/.well-known/sealgate-fleet"])
def test_local_endpoints(fleet, http, path):
    server = fleet.enclave()
    gw = fleet.gateway(Discovery(static=[server.url]))
    key = _fleet_keys(http, gw.url).popitem()[1]
    sealed_request(http, "POST", gw.url + "/v1/chat/completions", key, CHAT)
    response = http.get(gw.url + path)
    assert response.status_code == 200
    if path == "/metrics":
        text = response.text
        enclave_id = http.get(gw.url + "/.well-known/sealgate-fleet").json()["enclaves"][0]["id"]
        assert f'sealgate_gateway_requests_total{{enclave="{enclave_id}",outcome="ok"}} 1.0' in text
        assert "sealgate_gateway_request_duration_seconds_bucket" in text
        assert "sealgate_gateway_active_streams 0.0" in text
        assert f'sealgate_gateway_enclave_healthy{{enclave="{enclave_id}"}} 1.0' in text
