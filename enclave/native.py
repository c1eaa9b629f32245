"""The native mode: chunked Oblivious HTTP carrying Binary HTTP, at ``/.well-known/ohttp-gateway``.

The outer request is ``POST /.well-known/ohttp-gateway`` (RFC 9540's name) with
``Content-Type: message/ohttp-chunked-req`` (draft-ietf-ohai-chunked-ohttp-08) or
``message/ohttp-req`` (RFC 9458 one-shot) and ``Sealgate-Key-Id`` for the gateway's
routing; or sealgate's multi-recipient extension, ``message/sealgate-multi-req``
(:mod:`sealgate.protocol.sealing.multi_recipient`), where ``Sealgate-Key-Id`` names the
candidate the gateway chose and only that candidate's wrapped key is opened. Method, target, every application header and the body travel inside, as a
Binary HTTP request (RFC 9292); the answer is always an outer 200 whose sealed body
holds the real status, headers and content, so the gateway sees neither.

Order of checks, so nothing is forwarded that should not be:

1. before decapsulation (bad outer request, unknown key): plaintext problem, 4xx;
2. as soon as the inner head is authenticated: the replay guard (RFC 9458 §6.9) on the
   encapsulated key and the inner ``Date``, then the route allow-list;
3. the body completes (deadlines and byte budget of :mod:`.intake`), then an engine
   slot (:mod:`.slots`) is taken and the request forwarded.

Every refusal after step 1 is a *sealed* problem, so the gateway can neither read nor
forge it. The response head and each server-sent-events piece are separate sealed
chunks padded to ``chunk_bucket`` (:mod:`sealgate.protocol.sealing.padding`), or, with
``sse_coalesce_interval``, the events of each interval in one chunk; other bodies go
in the final chunk. An engine failure mid-stream ends the outer body without the final
chunk, which the client detects as truncation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol
from urllib.parse import unquote

from sealgate.protocol.public.errors import ProtocolError, ReplayedRequest, UnknownKey
from sealgate.protocol.public.headers import FRAMING, HOP_BY_HOP, KEY_ID, wire
from sealgate.protocol.public.keyconfig import MEDIA_TYPE as KEYS_MEDIA_TYPE
from sealgate.protocol.public.keyconfig import KeyConfig
from sealgate.protocol.public.logs import fields
from sealgate.protocol.public.multi_header import MEDIA_TYPE as MULTI_REQUEST_MEDIA_TYPE
from sealgate.protocol.public.multi_header import RESPONSE_MEDIA_TYPE as MULTI_RESPONSE_MEDIA_TYPE
from sealgate.protocol.public.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.sealing.bhttp import (
    Data,
    EndOfMessage,
    Field,
    Limits,
    MessageDecoder,
    RequestHead,
    StreamEncoder,
)
from sealgate.protocol.sealing.hpke import EnclaveKey
from sealgate.protocol.sealing.multi_recipient import MultiRequestOpener
from sealgate.protocol.sealing.ohttp import (
    CHUNKED_REQUEST_MEDIA_TYPE,
    CHUNKED_RESPONSE_MEDIA_TYPE,
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    ChunkedRequestOpener,
    ChunkedResponseSealer,
    OneShotServer,
)
from sealgate.protocol.sealing.padding import SsePadder, pad_head, padding_to
from sealgate.protocol.sealing.replay import ReplayCacheFull, ReplayGuard, StaleRequest, http_date

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

__all__ = ["NativeGateway", "route_allowed"]

log = logging.getLogger("sealgate.enclave.access")

_KEY_ID = wire(KEY_ID)

#: The key lookup of one request (see :data:`sealgate.protocol.sealing.ohttp.KeyLookup`).
ActiveKeyLike = Callable[[int], "tuple[KeyConfig, EnclaveKey] | None"]
#: The key lookup of a multi-recipient request, by fingerprint.
FingerprintLookup = Callable[[str], "tuple[KeyConfig, EnclaveKey] | None"]


class Outer(StrEnum):
    """The outer request's kind, by its media type."""

    CHUNKED = CHUNKED_REQUEST_MEDIA_TYPE  # draft-ietf-ohai-chunked-ohttp
    ONE_SHOT = REQUEST_MEDIA_TYPE  # RFC 9458
    MULTI = MULTI_REQUEST_MEDIA_TYPE  # sealgate's multi-recipient extension


# The enclave returns identity bodies with its own framing; these never go inside.
_RESPONSE_DROPPED = HOP_BY_HOP | FRAMING | {b"content-encoding"}


class _SealedRefusal(Exception):
    """Answer with ``problem`` sealed to the request (the response key exists)."""

    def __init__(self, problem: Problem, outcome: str, headers: tuple[Field, ...] = ()) -> None:
        super().__init__(problem.title)
        self.problem = problem
        self.outcome = outcome
        self.headers = headers

    @classmethod
    def of(cls, refusal: Refused) -> _SealedRefusal:
        """A refusal raised before the request was opened, now sealed to it."""
        return cls(refusal.problem, refusal.outcome, refusal.headers)


class _Writer(Protocol):
    """Turns an inner response into outer body bytes (chunked or one-shot)."""

    streams: bool

    def head(self, head: bytes) -> bytes: ...

    def piece(self, data: bytes) -> bytes: ...

    def final(self, data: bytes) -> bytes: ...


class _ChunkedWriter:
    """Nonce before the first chunk; head and SSE pieces as chunks; the rest in the final one."""

    streams = True

    def __init__(self, sealer: ChunkedResponseSealer) -> None:
        self._sealer = sealer
        self._started = False

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._sealer.start()

    def head(self, head: bytes) -> bytes:
        return self._start() + self._sealer.seal(head)

    def piece(self, data: bytes) -> bytes:
        return self._start() + self._sealer.seal(data)

    def final(self, data: bytes) -> bytes:
        return self._start() + self._sealer.seal_final(data)


class _MultiWriter(_ChunkedWriter):
    """A multi-recipient response: the answering key's fingerprint, then chunked OHTTP."""

    def __init__(self, prefix: bytes, sealer: ChunkedResponseSealer) -> None:
        super().__init__(sealer)
        self._prefix = prefix

    def _start(self) -> bytes:
        if self._started:
            return b""
        return self._prefix + super()._start()


class _OneShotWriter:
    """RFC 9458: the whole BHTTP response is sealed at once, at the end."""

    streams = False

    def __init__(self, server: OneShotServer) -> None:
        self._server = server
        self._plaintext = bytearray()

    def head(self, head: bytes) -> bytes:
        self._plaintext += head
        return b""

    def piece(self, data: bytes) -> bytes:
        self._plaintext += data
        return b""

    def final(self, data: bytes) -> bytes:
        self._plaintext += data
        return self._server.seal_response(bytes(self._plaintext))


def route_allowed(routes: tuple[tuple[str, str], ...], method: str, path: str) -> Problem | None:
    """None if ``method path`` is on the allow-list, else the 404 or 405 problem to seal."""
    decoded = unquote(path.split("?", 1)[0])
    segments = decoded.split("/")
    if not decoded.startswith("/") or any(s in (".", "..") for s in segments) or "\\" in decoded:
        return PROBLEMS.NOT_FOUND("the inner request path is not an allowed endpoint")
    allowed: list[str] = []
    for allowed_method, pattern in routes:
        if pattern.endswith("/"):
            rest = decoded[len(pattern) :] if decoded.startswith(pattern) else ""
            matches = bool(rest) and "/" not in rest
        else:
            matches = decoded == pattern
        if matches:
            if allowed_method == method:
                return None
            allowed.append(allowed_method)
    if allowed:
        return PROBLEMS.METHOD_NOT_ALLOWED(
            f"{method} is not allowed on {decoded}; allowed: {', '.join(sorted(set(allowed)))}"
        )
    return PROBLEMS.NOT_FOUND(f"{decoded} is not an endpoint this enclave forwards")


def _head_bytes(status: int, headers: list[Field], bucket: int) -> bytes:
    """An indeterminate-length response head, padded to ``bucket`` with ``sealgate-padding``."""
    return pad_head(StreamEncoder().response_head(status, headers), bucket)


def _tail_bytes(encoder: StreamEncoder, rest: bytes, bucket: int) -> bytes:
    """The last content, the content terminator and zero padding up to ``bucket``."""
    data = encoder.data(rest)
    end = encoder.end()
    return data + end + bytes(padding_to(len(data) + len(end), bucket))


def whole_response(
    writer: _Writer, status: int, headers: list[Field], body: bytes, bucket: int
) -> bytes:
    """A complete inner response (head chunk + final chunk) as outer body bytes."""
    encoder = StreamEncoder()
    head = _head_bytes(status, headers, bucket)
    encoder.response_head(status, headers)  # advance the state; the bytes are ``head``
    return writer.head(head) + writer.final(_tail_bytes(encoder, body, bucket))


def _problem_response(writer: _Writer, refusal: _SealedRefusal, bucket: int) -> bytes:
    headers: list[Field] = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"cache-control", b"no-store"),
        *refusal.headers,
    ]
    return whole_response(
        writer, refusal.problem.status, headers, refusal.problem.to_bytes(), bucket
    )


class _Inner:
    """Decapsulates and decodes one inner request as its body arrives."""

    def __init__(
        self,
        gateway: NativeGateway,
        kind: Outer,
        route_key: ActiveKeyLike,
        by_fingerprint: FingerprintLookup,
    ) -> None:
        self.gateway = gateway
        config = gateway.config
        self.kind = kind
        self.chunked = kind is not Outer.ONE_SHOT
        self.opener = ChunkedRequestOpener(route_key, max_chunk=config.max_frame_size)
        self.multi = (
            MultiRequestOpener(by_fingerprint, max_chunk=config.max_frame_size)
            if kind is Outer.MULTI
            else None
        )
        self.one_shot: OneShotServer | None = None
        self._raw = bytearray()
        self.decoder = MessageDecoder(request=True, limits=Limits(max_content=config.max_body_size))
        self.head: RequestHead | None = None
        self.body = bytearray()
        self._route_key = route_key

    @property
    def decapsulated(self) -> bool:
        if self.multi is not None:
            return self.multi.candidate is not None
        if self.chunked:
            return self.opener.key_config is not None
        return self.one_shot is not None

    @property
    def enc(self) -> bytes:
        if self.multi is not None:
            assert self.multi.enc is not None
            return self.multi.enc
        if self.chunked:
            header = self.opener.header
        else:
            header = self.one_shot.header if self.one_shot is not None else None
        assert header is not None
        return header.enc

    def writer(self) -> _Writer:
        if self.multi is not None:
            return _MultiWriter(*self.multi.response_sealer())
        if self.chunked:
            return _ChunkedWriter(self.opener.response_sealer())
        assert self.one_shot is not None
        return _OneShotWriter(self.one_shot)

    def take(self, chunk: bytes) -> None:
        if not self.chunked:
            self._raw += chunk  # RFC 9458 one-shot: opened once the body is complete
            return
        for plaintext in (self.multi or self.opener).push(chunk):
            self._decode(plaintext)

    def finish(self) -> None:
        if self.chunked:
            self._decode((self.multi or self.opener).finish())
        else:
            self.one_shot = OneShotServer(bytes(self._raw), self._route_key)
            self._decode(self.one_shot.request)
        for event in self.decoder.finish():
            self._event(event)

    def _decode(self, plaintext: bytes) -> None:
        for event in self.decoder.push(plaintext):
            self._event(event)

    def _event(self, event: object) -> None:
        if isinstance(event, RequestHead):
            self.head = event
            self.gateway.admit(self, event)
        elif isinstance(event, Data):
            self.body += event.data
        elif isinstance(event, EndOfMessage):
            pass


@dataclass(eq=False)
class NativeGateway(ModeHandler):
    """ASGI app for ``/.well-known/ohttp-gateway``: GET the key list, POST a sealed request."""

    #: The replay guard's clock (tests move it).
    clock: Callable[[], float] = time.time
    guard: ReplayGuard = field(init=False)

    def __post_init__(self) -> None:
        self.guard = ReplayGuard(self.config.replay_window, self.config.replay_capacity)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # pragma: no cover - only http is routed here
            return
        if scope["method"] == "GET":
            await _send_keys(send, self.keyring.encoded_configs())
            return
        ex = Exchange(Carrier.OHTTP, scope["method"], scope["path"])
        try:
            await self._handle(scope, receive, send, ex)
        except Refused as refusal:  # before decapsulation: plaintext
            ex.outcome = refusal.outcome
            ex.status = refusal.problem.status
            await send_problem(send, refusal.problem, extra_headers=refusal.headers)
        except ClientGone:
            ex.outcome = Outcome.CLIENT_DISCONNECTED
        finally:
            self.intake.release(ex)
            ex.close(self.metrics)

    # -- request ----------------------------------------------------------------------
    def _keys_for(self, scope: Scope, ex: Exchange) -> tuple[ActiveKeyLike, FingerprintLookup]:
        """Key lookups (by the 1-byte key id; by fingerprint for multi-recipient requests),
        restricted to ``Sealgate-Key-Id`` when given: the enclave opens only the key the
        gateway routed to, so an unknown key is refused (422) before any body is read."""
        values = [v for k, v in scope["headers"] if k.lower() == _KEY_ID]
        if len(values) > 1:
            raise Refused(
                PROBLEMS.MALFORMED_REQUEST(f"{KEY_ID} appears more than once"), Outcome.BAD_REQUEST
            )
        keyring = self.keyring
        if values:
            fingerprint = values[0].decode("latin-1").strip().lower()
            ex.key = fingerprint[:16]
            active = keyring.lookup(fingerprint)
            if active is None:
                raise refusal_for(UnknownKey(f"key {ex.key} is not (or no longer) held here"))
            candidates = [active]
        else:
            candidates = list(keyring.active())

        def lookup(key_id: int) -> tuple[KeyConfig, EnclaveKey] | None:
            for key in candidates:
                if key.config.key_id == key_id:
                    if ex.key == "-":
                        ex.key = key.fingerprint[:16]
                    return key.config, key.private
            return None

        def by_fingerprint(fingerprint: str) -> tuple[KeyConfig, EnclaveKey] | None:
            for key in candidates:
                if key.fingerprint == fingerprint:
                    ex.key = key.fingerprint[:16]
                    return key.config, key.private
            return None

        return lookup, by_fingerprint

    def _media_type(self, scope: Scope) -> Outer:
        """The outer kind its Content-Type names; a plaintext 400 for any other."""
        values = [v for k, v in scope["headers"] if k.lower() == b"content-type"]
        kind = values[0].split(b";")[0].strip().lower().decode("latin-1") if values else ""
        try:
            return Outer(kind)
        except ValueError:
            raise Refused(
                PROBLEMS.MALFORMED_REQUEST(
                    f"Content-Type must be {Outer.CHUNKED}, {Outer.ONE_SHOT} or {Outer.MULTI}"
                ),
                Outcome.BAD_REQUEST,
            ) from None

    def admit(self, inner: _Inner, head: RequestHead) -> None:
        """The inner head is authenticated: refuse replays, stale dates and other routes."""
        dates = [v for k, v in head.headers if k.lower() == b"date"]
        date = dates[0].decode("latin-1") if len(dates) == 1 else None
        now = self.clock()
        metrics = self.metrics
        try:
            self.guard.accept(inner.enc, date, now)
        except StaleRequest as stale:
            metrics.replays.labels("stale").inc()
            raise _SealedRefusal(
                PROBLEMS.STALE_REQUEST(stale.message),
                Outcome.STALE,
                ((b"date", http_date(stale.server_time).encode()),),
            ) from None
        except ReplayedRequest as replay:
            metrics.replays.labels("replayed").inc()
            raise _SealedRefusal(
                PROBLEMS.REPLAYED_REQUEST(replay.message), Outcome.REPLAYED
            ) from None
        except ReplayCacheFull as full:
            metrics.replays.labels("cache_full").inc()
            retry = str(max(1, round(full.retry_after))).encode()
            raise _SealedRefusal(
                PROBLEMS.OVERLOADED(full.message), Outcome.OVERLOADED, ((b"retry-after", retry),)
            ) from None
        problem = route_allowed(
            self.config.native_routes,
            head.method.decode("latin-1"),
            head.path.decode("latin-1"),
        )
        if problem is not None:
            outcome = Outcome.NOT_FOUND if problem.status == 404 else Outcome.NOT_ALLOWED
            raise _SealedRefusal(problem, outcome)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, ex: Exchange) -> None:
        kind = self._media_type(scope)
        if kind is Outer.MULTI:
            ex.mode = Carrier.MULTI
        inner = _Inner(self, kind, *self._keys_for(scope, ex))
        try:
            self.slots.check()  # refuse early, before any body is read
            await self.intake.read(receive, inner.take, ex)
            inner.finish()
            self.slots.check("the enclave is at its concurrency limit; not forwarded")
        except ProtocolError as error:
            self.metrics.decryption_failures.labels(type(error).__name__).inc()
            refused = refusal_for(error)
            if not inner.decapsulated:
                raise refused from None
            await self._refuse_sealed(send, inner, _SealedRefusal.of(refused), ex)
            return
        except _SealedRefusal as refusal:
            await self._refuse_sealed(send, inner, refusal, ex)
            return
        except Refused as refusal:
            if not inner.decapsulated:
                raise
            await self._refuse_sealed(send, inner, _SealedRefusal.of(refusal), ex)
            return
        assert inner.head is not None
        with self.slots.held():
            await until_disconnect(
                receive,
                self._forward(inner, inner.head, bytes(inner.body), send, ex),
                ex,
            )

    async def _refuse_sealed(
        self, send: Send, inner: _Inner, refusal: _SealedRefusal, ex: Exchange
    ) -> None:
        ex.outcome = refusal.outcome
        ex.inner_status = refusal.problem.status
        body = _problem_response(inner.writer(), refusal, self.config.chunk_bucket)
        await _start(send, inner.kind, ex, len(body))
        ex.bytes_out += len(body)
        ex.sent_all = True
        await send({"type": "http.response.body", "body": body, "more_body": False})

    # -- response ---------------------------------------------------------------------
    async def _forward(
        self,
        inner: _Inner,
        head: RequestHead,
        body: bytes,
        send: Send,
        ex: Exchange,
    ) -> None:
        bucket = self.config.chunk_bucket
        writer = inner.writer()
        headers = forwardable_request_headers([(k.lower(), v) for k, v in head.headers], len(body))
        method = head.method.decode("latin-1")
        target = head.path.decode("latin-1")
        streaming = writer.streams
        outer_started = False

        async def emit(data: bytes, more: bool) -> None:
            nonlocal outer_started
            if not outer_started:
                outer_started = True
                await _start(send, inner.kind, ex, None)
            ex.bytes_out += len(data)
            ex.sent_all = not more
            await send({"type": "http.response.body", "body": data, "more_body": more})

        started = time.perf_counter()
        head_sent = False
        try:
            async with self.engine.stream(method, target, headers, body) as response:
                self.metrics.upstream_latency.observe(time.perf_counter() - started)
                kept = [
                    (k.lower(), v)
                    for k, v in response.headers
                    if k.lower() not in _RESPONSE_DROPPED and not k.lower().startswith(b"sealgate-")
                ]
                content_type = next((v for k, v in kept if k == b"content-type"), b"")
                sse = content_type.split(b";")[0].strip().lower() == b"text/event-stream"
                chunks = identity_body(response.headers, response.body)
                encoder = StreamEncoder()
                head_bytes = _head_bytes(response.status, kept, bucket)
                encoder.response_head(response.status, kept)
                ex.inner_status = response.status
                first = writer.head(head_bytes)
                head_sent = True
                rest = bytearray()
                padder = SsePadder(bucket) if sse and streaming and bucket >= 4 else None
                if padder is not None and first:
                    # A stream's head goes at once; a whole body's head waits for it, so the
                    # answer leaves in one write (one fewer round through the gateway).
                    await emit(first, True)
                    first = b""
                interval = self.config.sse_coalesce_interval
                if padder is not None and interval > 0:
                    async for batch in _coalesced(chunks, interval):
                        for piece in padder.push(batch):
                            await emit(writer.piece(encoder.data(piece)), True)
                else:
                    async for chunk in chunks:
                        if padder is None:
                            rest += chunk
                            continue
                        for piece in padder.push(chunk):
                            await emit(writer.piece(encoder.data(piece)), True)
                if padder is not None:
                    rest += padder.finish()
                await emit(first + writer.final(_tail_bytes(encoder, bytes(rest), bucket)), False)
                ex.outcome = engine_outcome(response.status)
        except EngineError as error:
            timeout = isinstance(error, EngineTimeout)
            ex.outcome = Outcome.ENGINE_TIMEOUT if timeout else Outcome.ENGINE_ERROR
            if not head_sent:
                kind = PROBLEMS.UPSTREAM_TIMEOUT if timeout else PROBLEMS.UPSTREAM_UNAVAILABLE
                refusal = _SealedRefusal(kind(str(error)), ex.outcome)
                ex.inner_status = refusal.problem.status
                await emit(_problem_response(writer, refusal, bucket), False)
                return
            log.warning(
                "engine failed mid-stream",
                extra=fields(request_id=ex.request_id, outcome=ex.outcome),
            )
            # End the outer body without the final chunk: the client detects truncation.
            await emit(b"", False)


async def _coalesced(chunks: AsyncIterator[bytes], interval: float) -> AsyncIterator[bytes]:
    """Batches of ``chunks``: everything produced within ``interval`` seconds of a batch's
    first chunk. The engine is read ahead in a task, never cancelled mid-read, so a
    timeout only flushes the batch."""
    loop = asyncio.get_running_loop()
    source = chunks.__aiter__()
    pending: asyncio.Future[bytes] | None = None
    batch = bytearray()
    deadline: float | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(source.__anext__())
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:  # the interval is over: send what it gathered
                yield bytes(batch)
                batch.clear()
                deadline = None
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                pending = None
                break
            pending = None
            if chunk:
                batch += chunk
                if deadline is None:
                    deadline = loop.time() + interval
        if batch:
            yield bytes(batch)
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending


_RESPONSE_MEDIA = {
    Outer.CHUNKED: CHUNKED_RESPONSE_MEDIA_TYPE,
    Outer.ONE_SHOT: RESPONSE_MEDIA_TYPE,
    Outer.MULTI: MULTI_RESPONSE_MEDIA_TYPE,
}


async def _start(send: Send, kind: Outer, ex: Exchange, length: int | None) -> None:
    ex.status = 200
    media = _RESPONSE_MEDIA[kind]
    headers = [(b"content-type", media.encode()), (b"cache-control", b"no-store")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    # The real status is inside; the outer one is always 200 (RFC 9458 §5.2).
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def _send_keys(send: Send, configs: bytes) -> None:
    headers = [
        (b"content-type", KEYS_MEDIA_TYPE.encode()),
        (b"content-length", str(len(configs)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": configs, "more_body": False})
