"""Slow request bodies: they hold no engine slot, meet a deadline and a minimum rate, and
every body held counts against one byte budget."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sealgate.enclave import EnclaveConfig
from sealgate.protocol.public.keyconfig import KeyConfig
from sealgate.protocol.public.modes import EHBP, Mode
from sealgate.protocol.public.problem import Problem
from sealgate.protocol.sealing.ehbp_request import RequestEncoder

from ..sealed_http import NATIVE, NativeOpening, fetch_key, native_parts, sealed_request

CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
BIG_CHAT = json.dumps({"messages": [{"role": "user", "content": "x" * 4000}]}).encode()
# Generous limits that never fire within a test, unless a test lowers one on purpose.
PATIENT = {"body_timeout": 60.0, "body_deadline": 60.0, "body_min_rate": 0.0}


class SlowRequest:
    """A sealed POST over a raw socket (native mode, or EHBP): the head and ``first`` body
    bytes at once, then one byte every ``interval`` seconds (if given), never the last
    byte, until closed."""

    def __init__(
        self,
        port: int,
        key: KeyConfig,
        *,
        mode: Mode | str = NATIVE,
        first: int = 1,
        interval: float | None = None,
        frame_plaintext: int = 16 * 1024,
    ) -> None:
        self.mode = mode
        if mode is EHBP:
            self.encoder = RequestEncoder(key, EHBP, frame_plaintext=frame_plaintext)
            wire = self.encoder.finish(BIG_CHAT)
            target = "/v1/chat/completions"
            headers = {**self.encoder.headers, "Content-Type": "application/json"}
        else:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            _, headers, wire, self.sealer = native_parts("POST", url, key, BIG_CHAT)
            target = "/.well-known/ohttp-gateway"
        assert first < len(wire)
        head = f"POST {target} HTTP/1.1\r\nHost: enclave\r\n" + "".join(
            f"{name}: {value}\r\n"
            for name, value in {**headers, "Content-Length": str(len(wire))}.items()
        )
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(head.encode() + b"\r\n" + wire[:first])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval is not None:
            self._thread = threading.Thread(
                target=self._drip, args=(wire[first:-1], interval), daemon=True
            )
            self._thread.start()

    def _drip(self, rest: bytes, interval: float) -> None:
        for byte in rest:
            if self._stop.wait(interval):
                return
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:  # the server answered and closed: stop dripping
                return

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body of the answer, which comes before the body is complete."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection without answering"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection mid-response"
            body += chunk
        return int(status_line.split()[1]), headers, body[:length]

    def answer(self) -> tuple[int, bool, bytes]:
        """(status, sealed, body) of the answer: the inner status and decrypted body if sealed."""
        status, headers, body = self.response()
        if self.mode is EHBP:
            nonce = headers.get(EHBP.response_nonce_header.lower())
            if nonce is None:
                return status, False, body
            decoder = self.encoder.response_decoder(nonce)
            plaintext = b"".join(decoder.push(body))
            decoder.finish()
            return status, True, plaintext
        if headers.get("content-type") != "message/ohttp-chunked-res":
            return status, False, body
        assert status == 200  # the real status is inside
        opening = NativeOpening(self.sealer)
        plaintext = b"".join(opening.push(body)) + b"".join(opening.finish())
        assert opening.head is not None
        return opening.head.status, True, plaintext

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()


@pytest.fixture
def slow() -> Iterator[Callable[..., SlowRequest]]:
    opened: list[SlowRequest] = []

    def open_one(*args: object, **kwargs: object) -> SlowRequest:
        request = SlowRequest(*args, **kwargs)  # type: ignore[arg-type]
        opened.append(request)
        return request

    yield open_one
    for request in opened:
        request.close()


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_slow_bodies_hold_no_engine_slots(start_enclave, http, slow):
    server, built = start_enclave(config=EnclaveConfig(max_concurrent_requests=2, **PATIENT))
    key = fetch_key(http, server.url)
    drips = [slow(server.port, key, interval=0.2) for _ in range(4)]  # twice the slots
    _wait_for(lambda: built.proxy.receiving == len(drips), "every slow body is being received")
    assert built.proxy.in_flight == 0
    metrics = http.get(server.url + "/metrics").text
    assert "sealgate_enclave_receiving_bodies 4.0" in metrics
    assert "sealgate_enclave_active_streams 0.0" in metrics
    # A normal request still gets an engine slot while the slow bodies trickle in.
    result = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, CHAT)
    assert result.status == 200 and result.encrypted
    _wait_for(lambda: built.proxy.in_flight == 0, "the normal request gives its slot back")
    health = http.get(server.url + "/healthz").json()
    assert health["in_flight"] == 0 and health["receiving"] == 4
    for drip in drips:
        drip.close()
    _wait_for(lambda: built.proxy.receiving == 0, "the closed bodies are let go")
    assert built.proxy.buffered_body_bytes == 0


def test_body_below_the_minimum_rate_gets_a_sealed_408(start_enclave, http, slow):
    config = EnclaveConfig(**{**PATIENT, "body_min_rate": 1000.0, "body_min_rate_grace": 0.3})
    server, built = start_enclave(config=config)
    key = fetch_key(http, server.url)
    # 20 bytes/second: never idle long enough for the idle timeout, far below the rate.
    drip = slow(server.port, key, first=100, interval=0.05)  # the OHTTP header is complete
    status, sealed, body = drip.answer()
    assert status == 408 and sealed  # sealed: the client can trust it
    problem = Problem.from_bytes(body)
    assert problem.type == "urn:sealgate:problem:request-timeout"
    assert "bytes/second" in (problem.detail or "")
    assert built.proxy.in_flight == 0
    sealed = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, CHAT)
    assert sealed.status == 200


def test_body_past_its_total_deadline_gets_408(start_enclave, http, slow):
    server, _ = start_enclave(config=EnclaveConfig(**{**PATIENT, "body_deadline": 0.5}))
    key = fetch_key(http, server.url)
    drip = slow(server.port, key, first=100, interval=0.05)  # steady, but never finishing
    status, sealed, body = drip.answer()
    assert status == 408 and sealed
    problem = Problem.from_bytes(body)
    assert "not complete within 0.5 seconds" in (problem.detail or "")


def test_an_ehbp_timeout_is_sealed_only_once_a_frame_named_the_key(start_enclave, http, slow):
    server, built = start_enclave(config=EnclaveConfig(**{**PATIENT, "body_timeout": 0.3}))
    key = fetch_key(http, server.url)
    built.rotate_keys()  # two active keys: an EHBP body names neither, until a frame opens
    # Not even one length prefix: the enclave cannot know the response key.
    early = slow(server.port, key, mode=EHBP, first=2, frame_plaintext=100)
    status, sealed, body = early.answer()
    assert status == 408 and not sealed
    assert Problem.from_bytes(body).type == "urn:sealgate:problem:request-timeout"
    # One whole frame (4-byte length, 100 bytes sealed with a 16-byte tag) opened: sealed.
    late = slow(server.port, key, mode=EHBP, first=4 + 100 + 16 + 2, frame_plaintext=100)
    status, sealed, body = late.answer()
    assert status == 408 and sealed
    assert Problem.from_bytes(body).type == "urn:sealgate:problem:request-timeout"


def test_a_native_timeout_is_sealed_once_the_header_named_the_key(start_enclave, http, slow):
    server, _ = start_enclave(config=EnclaveConfig(**{**PATIENT, "body_timeout": 0.3}))
    key = fetch_key(http, server.url)
    early = slow(server.port, key, first=5)  # inside the 39-byte OHTTP request header
    status, sealed, body = early.answer()
    assert status == 408 and not sealed
    assert Problem.from_bytes(body).type == "urn:sealgate:problem:request-timeout"
    late = slow(server.port, key, first=100)  # header complete: the response key exists
    status, sealed, body = late.answer()
    assert status == 408 and sealed
    assert Problem.from_bytes(body).type == "urn:sealgate:problem:request-timeout"


def test_bodies_held_count_against_one_byte_budget(start_enclave, http, slow):
    # Native requests are padded to 1 KiB buckets: CHAT is ~1.1 KB on the wire, big ~2.1 KB.
    config = EnclaveConfig(max_buffered_body_bytes=4000, **PATIENT)
    server, built = start_enclave(config=config)
    key = fetch_key(http, server.url)
    stalled = slow(server.port, key, first=2500)  # holds 2500 bytes, then stalls
    _wait_for(lambda: built.proxy.buffered_body_bytes == 2500, "the stalled body is counted")
    big = json.dumps({"messages": [{"role": "user", "content": "y" * 1600}]}).encode()
    refused = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, big)
    assert refused.status == 503 and not refused.encrypted  # clients retry this elsewhere
    assert refused.headers["retry-after"] == "1"
    assert Problem.from_bytes(refused.body).type == "urn:sealgate:problem:overloaded"
    small = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, CHAT)
    assert small.status == 200  # a body that fits in what is left is served
    stalled.close()
    _wait_for(lambda: built.proxy.buffered_body_bytes == 0, "the stalled body is let go")
    served = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, big)
    assert served.status == 200
    _wait_for(lambda: built.proxy.buffered_body_bytes == 0, "every body is let go")
