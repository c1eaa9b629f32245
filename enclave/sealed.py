"""The EHBP exchange: decrypt the request body, forward it to the engine, encrypt the stream back.

EHBP (Tinfoil's body-only compatibility mode, :mod:`sealgate.protocol.public.modes`) and
operator-allowed plaintext paths are handled here; the native mode is :mod:`.native`.
Both take bodies through :mod:`.intake` and engine slots from :mod:`.slots`. The
request body is decrypted frame by frame as it arrives, but forwarded only once it is
complete and authenticated, so the engine never sees a tampered prompt. The engine's
response is sealed and sent frame by frame as it is produced.

A request takes one of the ``max_concurrent_requests`` engine slots only once its body
is complete and authenticated: anyone can build a valid sealed head from a public key,
so a slow body must not be able to occupy the engine.

Failures before a response key exists are plaintext problems (400/403/408/413/422/503);
after it, engine failures are *encrypted* problems (502/504) the client can trust. A 408
is sealed whenever the response key is already known. 503 overloaded stays plaintext
even after decryption: the engine never saw the request, and clients retry a plaintext
overloaded refusal on another enclave.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar

from sealgate.protocol.public.errors import FrameTooLarge, ProtocolError
from sealgate.protocol.public.logs import fields
from sealgate.protocol.public.modes import Mode, mode_of_headers
from sealgate.protocol.public.paths import OHTTP_GATEWAY
from sealgate.protocol.public.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.public.suites import ENC_SIZE
from sealgate.protocol.sealing.ehbp_request import RequestDecoder, parse_hex_header
from sealgate.protocol.sealing.ehbp_response import ResponseEncoder
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.padding import SsePadder, is_json, json_padding

from .engines import EngineError, EngineTimeout
from .engines.encoding import identity_body
from .exchange import (
    Carrier,
    ClientGone,
    Exchange,
    Outcome,
    Refused,
    engine_outcome,
    refusal_for,
    until_disconnect,
)
from .handler import ModeHandler
from .http import Receive, Scope, Send, forwardable_request_headers, send_problem

__all__ = ["SealedProxy"]

log = logging.getLogger("sealgate.enclave.access")

_RESPONSE_HEADERS_KEPT = frozenset({b"content-type"})
#: The header of sealgate's removed body-only v1 mode, named to explain the refusal.
_REMOVED_V1_HEADER = b"sealgate-encapsulated-key"


class _Identity:
    """A pass-through 'encoder' for operator-allowed plaintext paths."""

    headers: ClassVar[dict[str, str]] = {}

    def push(self, data: bytes) -> bytes:
        return data

    def finish(self, data: bytes = b"") -> bytes:
        return data


@dataclass(eq=False)
class SealedProxy(ModeHandler):
    """ASGI app handling every path that is not one of the enclave's own endpoints."""

    @property
    def in_flight(self) -> int:
        """Requests holding an engine slot (body complete, exchange with the engine running)."""
        return self.slots.in_flight

    @property
    def receiving(self) -> int:
        """Requests whose body is still arriving (they hold no engine slot)."""
        return self.intake.receiving

    @property
    def buffered_body_bytes(self) -> int:
        """Request body bytes held now, counted against ``max_buffered_body_bytes``."""
        return self.intake.buffered_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - lifespan/websocket are not routed here
            return
        header_names = {name.lower().decode("latin-1") for name, _ in scope["headers"]}
        mode = mode_of_headers(header_names)
        exchange = Exchange(
            Carrier.PLAINTEXT if mode is None else Carrier(mode.name),
            scope["method"],
            scope["path"],
        )
        try:
            self.slots.check()  # refuse early, before any body is read
            encoder: ResponseEncoder | _Identity
            if mode is None:
                body, encoder = await self._receive_plaintext(scope, receive, exchange)
            else:
                body, encoder = await self._receive_sealed(scope, receive, mode, exchange)
            # Only now, with the body complete and authenticated, take an engine slot.
            self.slots.check()
            with self.slots.held():
                await self._forward(
                    scope, receive, send, body, encoder, exchange, sealed=mode is not None
                )
        except Refused as refusal:
            exchange.outcome = refusal.outcome
            exchange.status = refusal.problem.status
            if refusal.encoder is None:
                await send_problem(send, refusal.problem, extra_headers=refusal.headers)
            else:
                await _send_sealed_problem(send, refusal.problem, refusal.encoder)
        except ClientGone:
            exchange.outcome = Outcome.CLIENT_DISCONNECTED
        finally:
            self.intake.release(exchange)
            exchange.close(self.metrics)

    async def _receive_plaintext(
        self, scope: Scope, receive: Receive, ex: Exchange
    ) -> tuple[bytes, _Identity]:
        if (scope["method"], scope["path"]) not in self.config.plaintext_paths:
            if any(name.lower() == _REMOVED_V1_HEADER for name, _ in scope["headers"]):
                raise Refused(
                    PROBLEMS.PLAINTEXT_REFUSED(
                        "the body-only sealgate v1 mode was removed; upgrade the sealgate "
                        f"client (it uses the native mode at {OHTTP_GATEWAY})"
                    ),
                    Outcome.REFUSED,
                )
            raise Refused(
                PROBLEMS.PLAINTEXT_REFUSED(
                    "this enclave accepts only encrypted requests on this path; "
                    "use a sealgate (native mode) or EHBP client"
                ),
                Outcome.REFUSED,
            )
        body = bytearray()
        await self.intake.read(receive, body.extend, ex)
        return bytes(body), _Identity()

    async def _receive_sealed(
        self, scope: Scope, receive: Receive, mode: Mode, ex: Exchange
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
            candidates = [k for k in self.keyring.active() if isinstance(k.private, PrivateKey)]
            keys = [k.private for k in candidates if isinstance(k.private, PrivateKey)]
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
                await self.intake.read(receive, take, ex)
            except Refused as refusal:
                # A timeout is answered sealed once the response key is known: a frame
                # already opened under one of the keys.
                if refusal.outcome == Outcome.TIMEOUT and decoder.frames_opened > 0:
                    refusal.encoder = decoder.response_encoder()
                raise
            decoder.finish()
        except ProtocolError as error:
            self.metrics.decryption_failures.labels(type(error).__name__).inc()
            raise refusal_for(error) from None
        # The published config's fingerprint (its key id is part of it), as the native mode logs.
        ex.key = next(k.fingerprint[:16] for k in candidates if k.private is decoder.key)
        return bytes(plaintext), decoder.response_encoder()

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        encoder: ResponseEncoder | _Identity,
        ex: Exchange,
        *,
        sealed: bool,
    ) -> None:
        target = (
            scope["path"]
            if not scope["query_string"]
            else (f"{scope['path']}?{scope['query_string'].decode('latin-1')}")
        )
        headers = forwardable_request_headers(scope["headers"], len(body))
        await until_disconnect(
            receive,
            self._stream(scope["method"], target, headers, body, encoder, send, ex, sealed),
            ex,
        )

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
        ex: Exchange,
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
                ex.outcome = engine_outcome(response.status)
        except EngineError as error:
            timeout = isinstance(error, EngineTimeout)
            ex.outcome = Outcome.ENGINE_TIMEOUT if timeout else Outcome.ENGINE_ERROR
            if not response_started:
                kind = PROBLEMS.UPSTREAM_TIMEOUT if timeout else PROBLEMS.UPSTREAM_UNAVAILABLE
                problem = kind(str(error))
                await start(problem.status, [(b"content-type", PROBLEM_MEDIA_TYPE.encode())])
                await emit(encoder.finish(problem.to_bytes()), False)
                return
            log.warning(
                "engine failed mid-stream",
                extra=fields(request_id=ex.request_id, outcome=ex.outcome),
            )
            raise  # EHBP and plaintext have no end marker: abort the connection instead


def _media(content_type: bytes) -> bytes:
    return content_type.split(b";")[0].strip().lower()


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
        raise Refused(
            PROBLEMS.MALFORMED_REQUEST(f"{name} appears more than once"), Outcome.BAD_REQUEST
        )
    return values[0]
