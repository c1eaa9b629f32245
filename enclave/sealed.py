"""The sealed exchange: decrypt the request, forward it to the engine, encrypt the stream back.

This is the only place plaintext exists. The request body is decrypted frame by frame
as it arrives, but forwarded only once it is complete and authenticated (in sealgate
mode: its final frame opened), so the engine never sees a truncated or tampered
prompt. The engine's response is sealed and sent frame by frame as it is produced.

Failures before a response key exists are plaintext problems (400/403/408/413/422/503);
after it, engine failures are *encrypted* problems (502/504) the client can trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from sealgate.protocol.errors import FrameTooLarge, ProtocolError, UnknownKey
from sealgate.protocol.modes import Mode, mode_of_headers
from sealgate.protocol.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.problem import PROBLEMS, Problem
from sealgate.protocol.request import RequestDecoder, parse_hex_header
from sealgate.protocol.response import ResponseEncoder
from sealgate.protocol.suites import ENC_SIZE

from .config import EnclaveConfig
from .engines import Engine, EngineError, EngineTimeout
from .http import Receive, Scope, Send, forwardable_request_headers, send_problem
from .keyring import KeyRing
from .metrics import EnclaveMetrics

__all__ = ["SealedProxy"]

log = logging.getLogger("sealgate.enclave.access")

_RESPONSE_HEADERS_KEPT = frozenset({b"content-type"})


class _Refused(Exception):
    """Stop handling and answer with ``problem`` (plaintext: no response key exists yet)."""

    def __init__(
        self, problem: Problem, outcome: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ):
        super().__init__(problem.title)
        self.problem = problem
        self.outcome = outcome
        self.headers = headers


class _ClientGone(Exception):
    """The client disconnected before the request body was complete."""


class _Identity:
    """A pass-through 'encoder' for operator-allowed plaintext paths."""

    headers: ClassVar[dict[str, str]] = {}

    def push(self, data: bytes) -> bytes:
        return data

    def finish(self, data: bytes = b"") -> bytes:
        return data


@dataclass(slots=True)
class _Exchange:
    mode: str
    key: str = "-"
    status: int = 0
    outcome: str = "ok"
    bytes_in: int = 0
    bytes_out: int = 0
    sent_all: bool = False  # the last body message was handed to the server


class SealedProxy:
    """ASGI app handling every path that is not one of the enclave's own endpoints."""

    def __init__(
        self, config: EnclaveConfig, keyring: KeyRing, engine: Engine, metrics: EnclaveMetrics
    ) -> None:
        self.config = config
        self.keyring = keyring
        self.engine = engine
        self.metrics = metrics
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan/websocket are not routed here
            return
        header_names = {name.lower().decode("latin-1") for name, _ in scope["headers"]}
        mode = mode_of_headers(header_names)
        exchange = _Exchange(mode.name if mode else "plaintext")
        started = time.perf_counter()
        try:
            if self._in_flight >= self.config.max_concurrent_requests:
                raise _Refused(
                    PROBLEMS.OVERLOADED("the enclave is at its concurrency limit"),
                    "overloaded",
                    ((b"retry-after", str(self.config.retry_after).encode()),),
                )
            self._in_flight += 1
            self.metrics.active_streams.inc()
            try:
                if mode is None:
                    await self._plaintext(scope, receive, send, exchange)
                else:
                    await self._sealed(scope, receive, send, mode, exchange)
            finally:
                self._in_flight -= 1
                self.metrics.active_streams.dec()
        except _Refused as refusal:
            exchange.outcome = refusal.outcome
            exchange.status = refusal.problem.status
            await send_problem(send, refusal.problem, extra_headers=refusal.headers)
        except _ClientGone:
            exchange.outcome = "client_disconnected"
        finally:
            self.metrics.requests.labels(exchange.mode, exchange.outcome).inc()
            log.info(
                "mode=%s key=%s status=%s outcome=%s in=%d out=%d ms=%.1f",
                exchange.mode,
                exchange.key,
                exchange.status,
                exchange.outcome,
                exchange.bytes_in,
                exchange.bytes_out,
                (time.perf_counter() - started) * 1000,
            )

    async def _plaintext(self, scope: Scope, receive: Receive, send: Send, ex: _Exchange) -> None:
        if (scope["method"], scope["path"]) not in self.config.plaintext_paths:
            raise _Refused(
                PROBLEMS.PLAINTEXT_REFUSED(
                    "this enclave accepts only encrypted requests on this path; "
                    "use a sealgate or EHBP client"
                ),
                "refused",
            )
        body = bytearray()
        await self._read_body(receive, body.extend, ex)
        await self._forward(scope, receive, send, bytes(body), _Identity(), ex, sealed=False)

    async def _sealed(
        self, scope: Scope, receive: Receive, send: Send, mode: Mode, ex: _Exchange
    ) -> None:
        headers = _header_values(scope)
        try:
            enc = parse_hex_header(
                mode.encapsulated_key_header,
                _single(headers, mode.encapsulated_key_header),
                ENC_SIZE,
            )
            if mode.key_id_header is not None:
                key_id = _single(headers, mode.key_id_header)
                if key_id is None:
                    raise _Refused(
                        PROBLEMS.MALFORMED_REQUEST(f"missing {mode.key_id_header} header"),
                        "bad_request",
                    )
                ex.key = key_id[:16]
                active = self.keyring.lookup(key_id.strip().lower())
                if active is None:
                    raise UnknownKey(f"key {ex.key} is not (or no longer) held by this enclave")
                keys = [active.private]
            else:
                keys = [k.private for k in self.keyring.active()]
            decoder = RequestDecoder(mode, enc, keys, max_frame_size=self.config.max_frame_size)
            plaintext = bytearray()

            def take(chunk: bytes) -> None:
                for piece in decoder.push(chunk):
                    plaintext.extend(piece)
                    if len(plaintext) > self.config.max_body_size:
                        raise FrameTooLarge(
                            f"decrypted body exceeds {self.config.max_body_size} bytes"
                        )

            await self._read_body(receive, take, ex)
            decoder.finish()
        except ProtocolError as error:
            self.metrics.decryption_failures.labels(type(error).__name__).inc()
            raise _Refused(_problem_for(error), _outcome_for(error)) from None
        if mode.key_id_header is None:
            ex.key = decoder.key.key_config().fingerprint
        encoder = decoder.response_encoder()
        await self._forward(scope, receive, send, bytes(plaintext), encoder, ex, sealed=True)

    async def _read_body(
        self, receive: Receive, take: Callable[[bytes], None], ex: _Exchange
    ) -> None:
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.config.body_timeout)
            except TimeoutError:
                raise _Refused(
                    PROBLEMS.REQUEST_TIMEOUT(
                        f"no request body data for {self.config.body_timeout:g} seconds"
                    ),
                    "timeout",
                ) from None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            ex.bytes_in += len(chunk)
            if ex.bytes_in > self.config.max_body_size + self.config.max_frame_size:
                raise _Refused(PROBLEMS.BODY_TOO_LARGE("request body is too large"), "too_large")
            if chunk:
                take(chunk)
            if not message.get("more_body", False):
                return

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        encoder: ResponseEncoder | _Identity,
        ex: _Exchange,
        *,
        sealed: bool,
    ) -> None:
        target = (
            scope["path"]
            if not scope["query_string"]
            else (f"{scope['path']}?{scope['query_string'].decode('latin-1')}")
        )
        headers = forwardable_request_headers(scope["headers"], len(body))
        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        streaming = asyncio.create_task(
            self._stream(scope["method"], target, headers, body, encoder, send, ex, sealed)
        )
        watcher = asyncio.create_task(watch())
        try:
            await asyncio.wait({streaming, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            # Once the whole response was handed over, the server reports "disconnect" on
            # receive(); that is the normal end, not a client leaving mid-stream.
            if not streaming.done() and not ex.sent_all:
                streaming.cancel()  # client went away: cancel the engine request too
                ex.outcome = "client_disconnected"
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            with contextlib.suppress(asyncio.CancelledError):
                await streaming

    async def _stream(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        encoder: ResponseEncoder | _Identity,
        send: Send,
        ex: _Exchange,
        sealed: bool,
    ) -> None:
        started = time.perf_counter()
        response_started = False

        async def start(status: int, content_type: list[tuple[bytes, bytes]]) -> None:
            nonlocal response_started
            extra = [(k.lower().encode(), v.encode()) for k, v in encoder.headers.items()]
            ex.status = status
            response_started = True
            await send(
                {"type": "http.response.start", "status": status, "headers": content_type + extra}
            )

        async def emit(data: bytes, more: bool) -> None:
            ex.bytes_out += len(data)
            ex.sent_all = not more
            await send({"type": "http.response.body", "body": data, "more_body": more})

        try:
            async with self.engine.stream(method, target, headers, body) as response:
                self.metrics.upstream_latency.observe(time.perf_counter() - started)
                kept = [
                    (k.lower(), v)
                    for k, v in response.headers
                    if k.lower() in _RESPONSE_HEADERS_KEPT
                ]
                if sealed:
                    kept.append((b"cache-control", b"no-store"))
                await start(response.status, kept)
                async for chunk in response.body:
                    await emit(encoder.push(chunk), True)
                await emit(encoder.finish(), False)
                ex.outcome = "ok" if response.status < 400 else f"engine_{response.status}"
        except EngineError as error:
            ex.outcome = "engine_timeout" if isinstance(error, EngineTimeout) else "engine_error"
            if not response_started:
                kind = (
                    PROBLEMS.UPSTREAM_TIMEOUT
                    if isinstance(error, EngineTimeout)
                    else PROBLEMS.UPSTREAM_UNAVAILABLE
                )
                problem = kind(str(error))
                await start(problem.status, [(b"content-type", PROBLEM_MEDIA_TYPE.encode())])
                await emit(encoder.finish(problem.to_bytes()), False)
                return
            log.warning("engine failed mid-stream: %s", error)
            if sealed and isinstance(encoder, ResponseEncoder) and encoder.mode.end_marker:
                # End the HTTP body without the final frame: the client detects truncation.
                await emit(b"", False)
                return
            raise  # EHBP and plaintext have no end marker: abort the connection instead


def _header_values(scope: Scope) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        values.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return values


def _single(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name.lower())
    if not values:
        return None
    if len(values) > 1:
        raise _Refused(PROBLEMS.MALFORMED_REQUEST(f"{name} appears more than once"), "bad_request")
    return values[0]


def _problem_for(error: ProtocolError) -> Problem:
    if isinstance(error, UnknownKey):
        return PROBLEMS.KEY_CONFIG(
            f"{error.message}; fetch the enclave's keys (re-attest) and encrypt again"
        )
    if isinstance(error, FrameTooLarge):
        return PROBLEMS.BODY_TOO_LARGE(error.message)
    return PROBLEMS.MALFORMED_REQUEST(error.message)


def _outcome_for(error: ProtocolError) -> str:
    if isinstance(error, UnknownKey):
        return "unknown_key"
    if isinstance(error, FrameTooLarge):
        return "too_large"
    return "bad_request"
