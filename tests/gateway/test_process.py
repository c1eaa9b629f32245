"""The real ``python -m sealgate.gateway`` process: settings from the environment, JSON-line
logs on stderr, and ``/metrics`` summed over ``--workers``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.public import paths
from sealgate.protocol.public.logs import LogFields

from ..sealed_http import sealed_request
from ..servers import free_port, wait_healthy

#: What every line of the JSON-lines format has, and what it may have besides LogFields.
BASE_KEYS = {"ts", "level", "logger", "event"}
EXCEPTION_KEYS = {"exception", "where"}
ACCESS_KEYS = {
    "method",
    "path",
    "key_id",
    "enclave_id",
    "status",
    "outcome",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "request_id",
}
UNKNOWN_KEY = "00" * 8


class GatewayProcess:
    """``python -m sealgate.gateway`` configured only by ``env`` (no arguments)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = int(env["SEALGATE_GATEWAY_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SEALGATE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sealgate.gateway"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**clean, "PYTHONUNBUFFERED": "1", **env},
        )
        self.lines: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self) -> list[bytes]:
        """SIGTERM, wait for the drain, and return every stderr line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.lines


@contextlib.contextmanager
def gateway_process(env: dict[str, str]) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(env)
    try:
        try:
            wait_healthy(gw.url)
        except RuntimeError:
            raise RuntimeError(b"".join(gw.stop()[-20:]).decode(errors="replace")) from None
        yield gw
    finally:
        gw.stop()


def _env(enclave_url: str, **settings: str) -> dict[str, str]:
    env = {
        "SEALGATE_GATEWAY_PORT": str(free_port()),
        "SEALGATE_GATEWAY_ENCLAVE": enclave_url,
        "SEALGATE_GATEWAY_POLL_INTERVAL": "0.2",
    }
    env.update({f"SEALGATE_GATEWAY_{k.upper()}": v for k, v in settings.items()})
    return env


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def test_a_gateway_configured_only_by_environment_variables(fleet, http):
    server = fleet.enclave()
    env = _env(server.url, max_header_bytes="2048", nonce_burst="1", access_log="false")
    with gateway_process(env) as gw:
        # The enclave came from SEALGATE_GATEWAY_ENCLAVE, the port from ..._PORT.
        document = http.get(gw.url + "/.well-known/sealgate-fleet").json()
        assert [e["healthy"] for e in document["enclaves"]] == [True]
        # ..._MAX_HEADER_BYTES=2048: a 3000-byte head (accepted by the 16 KiB default) is 431.
        padding = b"x" * 3000
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + padding + b"\r\n\r\n"
        assert _raw(gw.port, big).startswith(b"HTTP/1.1 431 ")
        small = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert _raw(gw.port, small).startswith(b"HTTP/1.1 200 ")
        # ..._NONCE_BURST=1: the second fresh-nonce request from this address is 429.
        headers = {"Sealgate-Key-Id": UNKNOWN_KEY}
        nonce = gw.url + "/.well-known/sealgate-attestation?nonce="
        assert http.get(nonce + "00", headers=headers).status_code == 421
        assert http.get(nonce + "01", headers=headers).status_code == 429
        lines = gw.stop()
    # ..._ACCESS_LOG=false: no access line, though requests were served.
    assert lines and not [x for x in lines if b"sealgate.gateway.access" in x]


def test_every_log_line_is_json_with_the_shared_keys_and_no_body(fleet, http):
    marker = "BODY-MARKER-5f3a9c"
    server = fleet.enclave()
    with gateway_process(_env(server.url)) as gw:
        document = http.get(gw.url + "/.well-known/sealgate-fleet").json()
        key = AttestationDocument.from_dict(document["enclaves"][0]["attestation"]).keys[0]
        body = json.dumps({"messages": [{"role": "user", "content": marker}]}).encode()
        result = sealed_request(http, "POST", gw.url + "/v1/chat/completions", key, body)
        assert result.status == 200 and marker in result.body.decode()  # the echo came back
        # Plaintext bodies the gateway refuses (unknown key, too large for the EHBP copy...).
        refused = http.post(
            gw.url + "/v1/chat/completions?q=" + marker,
            content=marker.encode() * 10,
            headers={"Sealgate-Key-Id": UNKNOWN_KEY, "X-Note": marker},
        )
        assert refused.status_code == 421
        bad = _raw(
            gw.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: " + marker.encode() + b"\r\n\r\n"
        )
        assert bad.startswith(b"HTTP/1.1 400 ")
        lines = gw.stop()
    records = [json.loads(line) for line in lines]  # every line parses as one JSON object
    allowed = BASE_KEYS | EXCEPTION_KEYS | set(LogFields.__annotations__)
    for record in records:
        assert BASE_KEYS <= set(record) <= allowed, record
    for line in lines:
        assert marker.encode() not in line
    access = [r for r in records if r["logger"] == "sealgate.gateway.access"]
    assert {r["event"] for r in access} == {"request"}
    assert all(set(r) >= ACCESS_KEYS for r in access), access
    assert len({r["request_id"] for r in access}) == len(access)
    by_outcome = {r["outcome"]: r for r in access}
    ok = by_outcome["ok"]
    # The outer request (the native mode's sealed inner path is not the gateway's to see).
    assert (ok["method"], ok["path"], ok["status"]) == ("POST", paths.OHTTP_GATEWAY, 200)
    assert (
        ok["key_id"] == key.fingerprint[:16] and ok["enclave_id"] == document["enclaves"][0]["id"]
    )
    assert ok["bytes_in"] > len(marker) and ok["bytes_out"] > 0 and ok["duration_ms"] > 0
    assert by_outcome["unknown_key"]["status"] == 421
    assert by_outcome["unknown_key"]["path"] == "/v1/chat/completions"  # no query string
    assert by_outcome["bad_request"]["status"] == 400
    # Lifecycle and routing lines carry fields too.
    joined = [r for r in records if r["event"] == "enclave joined"]
    assert joined and joined[0]["peer"] == server.url and joined[0]["enclave_id"]
    assert any(r["event"] == "enclave healthy" and r["count"] >= 1 for r in records)
    assert any(r["event"] == "draining" and "count" in r for r in records)


def _metric(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of every sample of ``name``."""
    found: dict[str, float] = {}
    for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE):
        found[match.group(1) or ""] = float(match.group(2))
    return found


def test_metrics_are_summed_over_workers(fleet):
    server = fleet.enclave()
    env = _env(server.url, workers="2", access_log="false")
    sent = 0
    with gateway_process(env) as gw:
        refused = '{enclave="-",outcome="unknown_key"}'
        deadline = time.monotonic() + 30
        per_worker: dict[str, float] = {}
        # Fresh connections until both workers have served some (each accepts on its own).
        while len([n for n in per_worker.values() if n > 0]) < 2:
            assert time.monotonic() < deadline, per_worker
            for _ in range(10):
                with httpx.Client(timeout=10) as client:  # a new connection per request
                    response = client.get(
                        gw.url + "/v1/models", headers={"Sealgate-Key-Id": UNKNOWN_KEY}
                    )
                assert response.status_code == 421
                sent += 1
            with httpx.Client(timeout=10) as client:
                text = client.get(gw.url + "/metrics").text
            per_worker = _metric(text, "sealgate_gateway_worker_requests_total")
        # Any worker's /metrics reports all of them once the other worker's snapshot (at
        # most half a second old) is in.
        while True:
            with httpx.Client(timeout=10) as client:
                text = client.get(gw.url + "/metrics").text
            if _metric(text, "sealgate_gateway_requests_total").get(refused) == sent:
                break
            assert time.monotonic() < deadline, _metric(text, "sealgate_gateway_requests_total")
            time.sleep(0.1)
        workers = _metric(text, "sealgate_gateway_worker_requests_total")
        assert len(workers) == 2 and all(n > 0 for n in workers.values())
        assert sum(workers.values()) >= sent  # plus the health checks and scrapes they served
        assert _metric(text, "sealgate_gateway_workers") == {"": 2.0}
        assert _metric(text, "sealgate_gateway_client_connections")[""] >= 1  # this scrape
        pids = [label.split('"')[1] for label in workers]
        # A worker that dies keeps its counts; its gauges leave the sums.
        os.kill(int(pids[0]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            with httpx.Client(timeout=10) as client:
                text = client.get(gw.url + "/metrics").text
            if _metric(text, "sealgate_gateway_workers") == {"": 1.0}:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert _metric(text, "sealgate_gateway_requests_total")[refused] == sent
