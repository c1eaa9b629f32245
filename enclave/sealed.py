"""The EHBP exchange: decrypt the request body, forward it to the engine, encrypt the stream back.

EHBP (Tinfoil's body-only compatibility mode, :mod:`sealgate.protocol.public.modes`) and
operator-allowed plaintext paths are handled here; the native mode is
:mod:`.native`, which reuses this proxy's slots, deadlines and byte budget. The
request body is decrypted frame by frame as it arrives, but forwarded only once it is
complete and authenticated, so the engine never sees a tampered prompt. The engine's
response is sealed and sent frame by frame as it is produced.

A request takes one of the ``max_concurrent_requests`` engine slots only once its body
is complete and authenticated: anyone can build a valid sealed head from a public key,
so a slow body must not be able to occupy the engine. While receiving, a body is held
to an idle timeout, a total deadline and a minimum average rate (408), and every body
held counts against one byte budget (503), which bounds their memory.

Failures before a response key exists are plaintext problems (400/403/408/413/422/503);
after it, engine failures are *encrypted* problems (502/504) the client can trust. A 408
is sealed whenever the response key is already known. 503 overloaded stays plaintext
even after decryption: the engine never saw the request, and clients retry a plaintext
overloaded refusal on another enclave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from sealgate.protocol.public.errors import FrameTooLarge, ProtocolError, UnknownKey
from sealgate.protocol.public.modes import Mode, mode_of_headers
from sealgate.protocol.public.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.public.suites import ENC_SIZE
from sealgate.protocol.sealing.ehbp_request import RequestDecoder, parse_hex_header
from sealgate.protocol.sealing.ehbp_response import ResponseEncoder
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.padding import SsePadder, is_json, json_padding

from .config import EnclaveConfig
from .engines import Engine, EngineError, EngineTimeout
from .engines.encoding import identity_body
from .http import Receive, Scope, Send, forwardable_request_headers, send_problem
from .keyring import KeyRing
from .metrics import EnclaveMetrics

__all__ = ["SealedProxy"]

log = logging.getLogger("sealgate.enclave.access")

_RESPONSE_HEADERS_KEPT = frozenset({b"content-type"})


class _Refused(Exception):
    """Stop handling and answer with ``problem``: sealed with ``encoder`` if set, else plaintext."""

    def __init__(
        self,
        problem: Problem,
        outcome: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        encoder: ResponseEncoder | None = None,
    ):
        super().__init__(problem.title)
        self.problem = problem
        self.outcome = outcome
        self.headers = headers
        self.encoder = encoder


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
    buffered: int = 0  # bytes of this request counted in the proxy's body budget
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
        self._receiving = 0
        self._buffered = 0

    @property
    def in_flight(self) -> int:
        """Requests holding an engine slot (body complete, exchange with the engine running)."""
        return self._in_flight

    @property
    def receiving(self) -> int:
        """Requests whose body is still arriving (they hold no engine slot)."""
        return self._receiving

    @property
    def buffered_body_bytes(self) -> int:
        """Request body bytes held now, counted against ``max_buffered_body_bytes``."""
        return self._buffered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan/websocket are not routed here
            return
        header_names = {name.lower().decode("latin-1") for name, _ in scope["headers"]}
        mode = mode_of_headers(header_names)
        exchange = _Exchange(mode.name if mode else "plaintext")
        started = time.perf_counter()
        try:
            self._check_engine_capacity()  # refuse early, before any body is read
            self._receiving += 1
            self.metrics.receiving_bodies.inc()
            encoder: ResponseEncoder | _Identity
            try:
                if mode is None:
                    body, encoder = await self._receive_plaintext(scope, receive, exchange)
                else:
                    body, encoder = await self._receive_sealed(scope, receive, mode, exchange)
            finally:
                self._receiving -= 1
                self.metrics.receiving_bodies.dec()
            # Only now, with the body complete and authenticated, take an engine slot.
            self._check_engine_capacity()
            self._in_flight += 1
            self.metrics.active_streams.inc()
            try:
                await self._forward(
                    scope, receive, send, body, encoder, exchange, sealed=mode is not None
                )
            finally:
                self._in_flight -= 1
                self.metrics.active_streams.dec()
        except _Refused as refusal:
            exchange.outcome = refusal.outcome
            exchange.status = refusal.problem.status
            if refusal.encoder is None:
                await send_problem(send, refusal.problem, extra_headers=refusal.headers)
            else:
                await _send_sealed_problem(send, refusal.problem, refusal.encoder)
        except _ClientGone:
            exchange.outcome = "client_disconnected"
        finally:
            self._buffered -= exchange.buffered
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

    def _check_engine_capacity(self) -> None:
        if self._in_flight >= self.config.max_concurrent_requests:
            raise _Refused(
                PROBLEMS.OVERLOADED("the enclave is at its concurrency limit"),
                "overloaded",
                self._retry_after(),
            )

    def _retry_after(self) -> tuple[tuple[bytes, bytes], ...]:
        return ((b"retry-after", str(self.config.retry_after).encode()),)

    async def _receive_plaintext(
        self, scope: Scope, receive: Receive, ex: _Exchange
    ) -> tuple[bytes, _Identity]:
        if (scope["method"], scope["path"]) not in self.config.plaintext_paths:
            if any(name.lower() == b"sealgate-encapsulated-key" for name, _ in scope["headers"]):
                raise _Refused(
                    PROBLEMS.PLAINTEXT_REFUSED(
                        "the body-only sealgate v1 mode was removed; upgrade the sealgate "
                        "client (it uses the native mode at /.well-known/ohttp-gateway)"
                    ),
                    "refused",
                )
            raise _Refused(
                PROBLEMS.PLAINTEXT_REFUSED(
                    "this enclave accepts only encrypted requests on this path; "
                    "use a sealgate (native mode) or EHBP client"
                ),
                "refused",
            )
        body = bytearray()
        await self._read_body(receive, body.extend, ex)
        return bytes(body), _Identity()

    async def _receive_sealed(
        self, scope: Scope, receive: Receive, mode: Mode, ex: _Exchange
    ) -> tuple[bytes, ResponseEncoder]:
        headers = _header_values(scope)
        try:
            enc = parse_hex_header(
                mode.encapsulated_key_header,
                _single(headers, mode.encapsulated_key_header),
                ENC_SIZE,
            )
            # EHBP names no key: every active X25519 key is a candidate until a frame
            # opens (EHBP clients speak only X25519; the hybrid keys are the native mode's).
            keys = [k.private for k in self.keyring.active() if isinstance(k.private, PrivateKey)]
            decoder = RequestDecoder(mode, enc, keys, max_frame_size=self.config.max_frame_size)
            plaintext = bytearray()

            def take(chunk: bytes) -> None:
                for piece in decoder.push(chunk):
                    plaintext.extend(piece)
                    if len(plaintext) > self.config.max_body_size:
                        raise FrameTooLarge(
                            f"decrypted body exceeds {self.config.max_body_size} bytes"
                        )

            try:
                await self._read_body(receive, take, ex)
            except _Refused as refusal:
                # A timeout is answered sealed once the response key is known: a frame
                # already opened under one of the keys.
                if refusal.outcome == "timeout" and decoder.frames_opened > 0:
                    refusal.encoder = decoder.response_encoder()
                raise
            decoder.finish()
        except ProtocolError as error:
            self.metrics.decryption_failures.labels(type(error).__name__).inc()
            raise _Refused(_problem_for(error), _outcome_for(error)) from None
        ex.key = decoder.key.key_config().fingerprint
        return bytes(plaintext), decoder.response_encoder()

    async def _read_body(
        self, receive: Receive, take: Callable[[bytes], None], ex: _Exchange
    ) -> None:
        """Feed body chunks to ``take`` until the body ends, within the time and byte limits."""
        config = self.config
        started = last = time.monotonic()
        while True:
            deadline, reason = _body_deadline(config, started, last, ex.bytes_in)
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                raise _Refused(PROBLEMS.REQUEST_TIMEOUT(reason), "timeout") from None
            last = time.monotonic()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            ex.bytes_in += len(chunk)
            if ex.bytes_in > config.max_body_size + config.max_frame_size:
                raise _Refused(PROBLEMS.BODY_TOO_LARGE("request body is too large"), "too_large")
            if chunk:
                ex.buffered += len(chunk)
                self._buffered += len(chunk)
                if self._buffered > config.max_buffered_body_bytes:
                    raise _Refused(
                        PROBLEMS.OVERLOADED("the enclave holds too many request bodies"),
                        "overloaded",
                        self._retry_after(),
                    )
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

    def _ehbp_padding(
        self, sealed: bool, content_type: bytes
    ) -> tuple[SsePadder | None, bytearray | None]:
        """How an EHBP response body is padded: SSE pieces, a whole JSON body, or not at all.

        Each SSE frame's plaintext becomes a bucket multiple (a comment line, which every
        SSE parser ignores); a JSON body is sent once complete, with trailing whitespace.
        Other bodies pass unchanged: no padding they could not ignore.
        """
        bucket = self.config.chunk_bucket
        if not (sealed and self.config.ehbp_padding and bucket >= 4):
            return None, None
        if _media(content_type) == b"text/event-stream":
            return SsePadder(bucket, length_prefixed=False), None
        if is_json(content_type):
            return None, bytearray()
        return None, None

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
                # Content-Encoding is not forwarded: what is sealed must be identity.
                chunks = identity_body(response.headers, response.body)
                content_type = next((v for k, v in kept if k == b"content-type"), b"")
                padder, whole = self._ehbp_padding(sealed, content_type)
                await start(response.status, kept)
                async for chunk in chunks:
                    if padder is not None:
                        for piece in padder.push(chunk):
                            await emit(encoder.push(piece), True)
                    elif whole is not None:
                        whole += chunk
                    else:
                        await emit(encoder.push(chunk), True)
                tail = b""
                if padder is not None:
                    tail = padder.finish()
                elif whole is not None:
                    tail = bytes(whole) + json_padding(len(whole), self.config.chunk_bucket)
                await emit(encoder.finish(tail), False)
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
            raise  # EHBP and plaintext have no end marker: abort the connection instead


def _media(content_type: bytes) -> bytes:
    return content_type.split(b";")[0].strip().lower()


def _body_deadline(
    config: EnclaveConfig, started: float, last: float, received: int
) -> tuple[float, str]:
    """When a body still arriving times out, and why.

    The earliest of: its idle timeout, its total deadline, and the moment its average
    rate since the head falls below the minimum (never before the grace period).
    """
    limits = [
        (last + config.body_timeout, f"no request body data for {config.body_timeout:g} seconds"),
        (
            started + config.body_deadline,
            f"the request body was not complete within {config.body_deadline:g} seconds",
        ),
    ]
    if config.body_min_rate > 0:
        # received / elapsed < rate  <=>  elapsed > received / rate
        at = started + max(config.body_min_rate_grace, received / config.body_min_rate)
        limits.append(
            (at, f"the request body arrived slower than {config.body_min_rate:g} bytes/second")
        )
    return min(limits)


async def _send_sealed_problem(send: Send, problem: Problem, encoder: ResponseEncoder) -> None:
    """A complete problem response sealed to the request, so the client can trust it."""
    body = encoder.finish(problem.to_bytes())
    headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *((k.lower().encode(), v.encode()) for k, v in encoder.headers.items()),
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


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
