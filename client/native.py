"""Native-mode httpx transports: the whole HTTP request sealed as chunked Oblivious HTTP.

Each request becomes a Binary HTTP message (RFC 9292) - method, path and query,
headers, body and a ``Date`` - padded with zeros to a multiple of 1024 bytes and sealed
(draft-ietf-ohai-chunked-ohttp-08) to a verified enclave's key. The gateway only sees
``POST /.well-known/ohttp-gateway`` with ``Sealgate-Key-Id`` for routing. The response
is opened chunk by chunk, so server-sent events still arrive token by token, and the
caller gets the *inner* status and headers, never the gateway's.

Secret headers (``Authorization``, ``Cookie``) are kept: unlike the body-only modes,
where headers cross the gateway in the clear and the transport drops them, here they
travel inside the encryption.

Fail closed: an outer answer that is not a sealed 200, a chunk that does not
authenticate, or a response cut before its final chunk raises
:class:`ResponseIntegrityError`. Re-sealing (a *new* request, never a re-send) happens
where the enclave cannot have processed the request: the gateway's 421/422/503 before
forwarding, the enclave's sealed 503 overloaded, and once for a sealed stale-request
answer, after correcting the clock by the enclave's ``Date`` (RFC 9458 §6.9.2).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio
import httpx
from sealgate.protocol.public.errors import MalformedProblem, ProtocolError
from sealgate.protocol.public.headers import ENCAPSULATION_PREFIXES, KEY_ID
from sealgate.protocol.public.keyconfig import KeyConfig
from sealgate.protocol.public.multi_header import MAX_CANDIDATES
from sealgate.protocol.public.multi_header import MEDIA_TYPE as MULTI_REQUEST_MEDIA_TYPE
from sealgate.protocol.public.multi_header import RESPONSE_MEDIA_TYPE as MULTI_RESPONSE_MEDIA_TYPE
from sealgate.protocol.public.paths import OHTTP_GATEWAY
from sealgate.protocol.public.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.sealing.bhttp import (
    Data,
    EndOfMessage,
    MessageDecoder,
    Request,
    ResponseHead,
)
from sealgate.protocol.sealing.multi_recipient import MultiRequestSealer, MultiResponseOpener
from sealgate.protocol.sealing.ohttp import (
    CHUNKED_REQUEST_MEDIA_TYPE,
    CHUNKED_RESPONSE_MEDIA_TYPE,
    ChunkedRequestSealer,
)
from sealgate.protocol.sealing.padding import (
    DEFAULT_REQUEST_BUCKET,
    PADDING_FIELD,
    padding_to,
    strip_sse_padding,
)
from sealgate.protocol.sealing.replay import http_date, parse_http_date

from .errors import (
    ENCLAVE_ERROR_EXTENSION,
    EnclaveError,
    GatewayError,
    ResponseIntegrityError,
)
from .fleet import Fleet, VerifiedEnclave
from .headers import ENCAPSULATION, HOP, NOT_FORWARDED
from .models import (
    MODELS_HEADERS,
    Router,
    answer_locally,
    is_models_listing,
    route_tag_header,
)
from .transport import (
    _MAX_PLAINTEXT_ERROR,
    ENCLAVE_HEADER,
    _aread_capped,
    _Core,
    _ProblemCapture,
    _read_capped,
)

__all__ = ["OHTTP", "GATEWAY_PATH", "NativeTransport", "AsyncNativeTransport"]

#: ``SecureClient(..., mode=OHTTP)`` selects the native mode.
OHTTP = "ohttp"
GATEWAY_PATH = OHTTP_GATEWAY

# Connection-specific, framing, or describing the outer hop; never sealed inside.
_DROP_REQUEST = NOT_FORWARDED | {
    "expect",
    "accept-encoding",  # the enclave always answers identity (no compression oracle)
    "date",  # replaced by the (skew-corrected) sealing time
}


@dataclass(slots=True)
class _NativeAttempt:
    """One sealed request. A multi-recipient one names its ``candidates`` (first =
    ``enclave``); ``enclave`` and ``key`` become the answering candidate once known."""

    enclave: VerifiedEnclave
    key: KeyConfig
    sealer: ChunkedRequestSealer | MultiRequestSealer
    wire: bytes
    route_tag: bytes | None = None
    candidates: tuple[tuple[VerifiedEnclave, KeyConfig], ...] = ()

    @property
    def multi(self) -> bool:
        return bool(self.candidates)

    def answered_by(self, fingerprint: str) -> None:
        """Name the candidate that answered (authenticated by the response key)."""
        for enclave, key in self.candidates:
            if key.fingerprint == fingerprint:
                self.enclave, self.key = enclave, key
                return
        raise ResponseIntegrityError(  # the opener already refuses non-candidates
            f"the response names key {fingerprint}, which is not a candidate of this request"
        )


class _Opening:
    """Sans-IO: outer body bytes -> the inner head and content pieces, authenticated."""

    def __init__(self, attempt: _NativeAttempt) -> None:
        self._attempt = attempt
        self._opener = attempt.sealer.response_opener()
        self._decoder = MessageDecoder(request=False)
        self.head: ResponseHead | None = None
        self.sse = False
        self.ended = False

    def push(self, data: bytes) -> list[bytes]:
        try:
            out: list[bytes] = []
            opener = self._opener
            for plaintext in opener.push(data):
                if isinstance(opener, MultiResponseOpener) and opener.fingerprint is not None:
                    self._attempt.answered_by(opener.fingerprint)
                out += self._events(self._decoder.push(plaintext))
            return out
        except ProtocolError as exc:
            raise _integrity(exc) from None

    def finish(self) -> list[bytes]:
        try:
            out = self._events(self._decoder.push(self._opener.finish()))
            out += self._events(self._decoder.finish())
        except ProtocolError as exc:
            raise _integrity(exc) from None
        if not self.ended or self.head is None:
            raise ResponseIntegrityError("the sealed response has no complete Binary HTTP message")
        return out

    def _events(self, events: list[Any]) -> list[bytes]:
        out = []
        for event in events:
            if isinstance(event, ResponseHead):
                self.head = event
                kind = _field(event, b"content-type").split(b";")[0].strip().lower()
                self.sse = kind == b"text/event-stream"
            elif isinstance(event, Data):
                piece = strip_sse_padding(event.data) if self.sse else event.data
                if piece:
                    out.append(piece)
            elif isinstance(event, EndOfMessage):
                self.ended = True
        return out


def _integrity(exc: ProtocolError) -> ResponseIntegrityError:
    return ResponseIntegrityError(
        f"sealed response failed verification: {exc.message} (tampered or cut in transit)"
    )


def _field(head: ResponseHead, name: bytes) -> bytes:
    return next((v for k, v in head.headers if k.lower() == name), b"")


class _NativeCore(_Core):
    """Sealing into Binary HTTP + chunked OHTTP; refusal rules shared with the body-only modes."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        max_attempts: int = 4,
        max_body: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        router: Router | None = None,
        recipients: int = 3,
        **_ignored: Any,
    ) -> None:
        super().__init__(fleet, max_attempts=max_attempts, max_body=max_body)
        if not 1 <= recipients <= MAX_CANDIDATES:
            raise ValueError(f"recipients must be 1..{MAX_CANDIDATES}")
        self.recipients = recipients
        self.router = router or Router()
        self.clock = clock
        #: Seconds to add to ``clock`` so the enclave accepts our Date (learned from it).
        self.skew = 0.0

    def seal_native(self, request: Any, body: bytes, exclude: set[str]) -> _NativeAttempt:
        route = self.router.route(request.method, request.url.path, body)
        chosen = self.fleet.choose_many(
            self.recipients, exclude, model=route.model, tag=route.tag, post_quantum=True
        )
        enclave, key = chosen[0]
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.multi_items()
            if name.lower() not in _DROP_REQUEST and not name.lower().startswith(ENCAPSULATION)
        ]
        headers.append((b"date", http_date(self.clock() + self.skew).encode()))
        message = Request(
            request.method.encode("ascii"),
            b"https",
            b"",
            request.url.raw_path,
            tuple(headers),
            body,
        ).to_bytes()
        message += bytes(padding_to(len(message), DEFAULT_REQUEST_BUCKET))
        if len(chosen) > 1:
            multi = MultiRequestSealer([k for _, k in chosen])
            wire = multi.header + multi.seal_final(message)
            return _NativeAttempt(enclave, key, multi, wire, route.tag, tuple(chosen))
        sealer = ChunkedRequestSealer(key)
        wire = sealer.header + sealer.seal_final(message)
        return _NativeAttempt(enclave, key, sealer, wire, route.tag)

    def outer_request(self, http: ModuleType, request: Any, attempt: _NativeAttempt) -> Any:
        """What the gateway sees: a POST of ciphertext to the well-known gateway resource."""
        if attempt.multi:  # the gateway reads the candidates from the body's public header
            return http.Request(
                "POST",
                request.url.copy_with(raw_path=GATEWAY_PATH.encode()),
                headers=[
                    ("Content-Type", MULTI_REQUEST_MEDIA_TYPE),
                    *route_tag_header(attempt.route_tag),
                ],
                content=attempt.wire,
                extensions=request.extensions,
            )
        return http.Request(
            "POST",
            request.url.copy_with(raw_path=GATEWAY_PATH.encode()),
            headers=[
                ("Content-Type", CHUNKED_REQUEST_MEDIA_TYPE),
                (KEY_ID, attempt.key.fingerprint),
                *route_tag_header(attempt.route_tag),
            ],
            content=attempt.wire,
            extensions=request.extensions,
        )

    def is_sealed(self, response: Any, attempt: _NativeAttempt) -> bool:
        """A sealed answer (True), a plaintext refusal (False), or a forgery (raises)."""
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        expected = MULTI_RESPONSE_MEDIA_TYPE if attempt.multi else CHUNKED_RESPONSE_MEDIA_TYPE
        if response.status_code == 200 and kind == expected:
            return True
        if 200 <= response.status_code < 300:
            raise ResponseIntegrityError(
                f"a {response.status_code} answer arrived without a sealed "
                f"{expected} body: it is not from an enclave (or was altered "
                "in transit); refusing it"
            )
        return False

    def multi_refusal(self, retry: Any, attempt: _NativeAttempt, exclude: set[str]) -> None:
        """A plaintext refusal of a multi-recipient request: the gateway already offered it
        to every candidate it could, so none of them is asked again this time."""
        if not attempt.multi:
            return
        if retry.action in ("down", "busy"):
            exclude.update(e.id for e, _ in attempt.candidates)
        elif retry.action == "rotated":
            retry.action = "refresh"  # which candidate refused is not known: re-verify

    def inner_retry(
        self, opening: _Opening, pieces: list[bytes], attempt: _NativeAttempt, stale_retried: bool
    ) -> str | None:
        """For a complete sealed problem: "stale" or "busy" if a re-sealed request may follow."""
        head = opening.head
        assert head is not None
        problem = _problem(head, pieces)
        if problem is None:
            return None
        if head.status == 400 and problem.is_(PROBLEMS.STALE_REQUEST) and not stale_retried:
            server_time = parse_http_date(_field(head, b"date").decode("latin-1"))
            if server_time is not None:
                self.skew = server_time - self.clock()
                return "stale"
        if head.status == 503 and problem.is_(PROBLEMS.OVERLOADED):
            return "busy"  # the enclave authenticated that it did not forward the request
        return None

    def inner_response(
        self,
        http: ModuleType,
        outer: Any,
        opening: _Opening,
        attempt: _NativeAttempt,
        stream: Any,
    ) -> Any:
        """The response the caller sees: the enclave's status and headers, and the inner body."""
        head = opening.head
        assert head is not None
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in head.headers
            if k.lower() != PADDING_FIELD
            and k.lower().decode("latin-1") not in HOP
            and not k.lower().startswith(ENCAPSULATION_PREFIXES)
        ]
        headers.append((ENCLAVE_HEADER, f"{attempt.enclave.id}; key={attempt.key.fingerprint}"))
        extensions = dict(outer.extensions)
        if head.status >= 400:
            error = EnclaveError(head.status, attempt.enclave.id)
            extensions[ENCLAVE_ERROR_EXTENSION] = error
            if _field(head, b"content-type").split(b";")[0].strip() == PROBLEM_MEDIA_TYPE.encode():
                stream.capture = _ProblemCapture(error)
        return http.Response(head.status, headers=headers, stream=stream, extensions=extensions)


def _problem(head: ResponseHead, pieces: list[bytes]) -> Problem | None:
    kind = _field(head, b"content-type").split(b";")[0].strip()
    if kind != PROBLEM_MEDIA_TYPE.encode():
        return None
    try:
        return Problem.from_bytes(b"".join(pieces))
    except MalformedProblem:
        return None


def _wants_whole_body(head: ResponseHead) -> bool:
    """Small sealed problems that may trigger a retry are read to their end first."""
    kind = _field(head, b"content-type").split(b";")[0].strip()
    return head.status in (400, 503) and kind == PROBLEM_MEDIA_TYPE.encode()


_STREAMS: dict[str, tuple[type, type]] = {}


def _stream_classes(http: ModuleType) -> tuple[type, type]:
    """Opening byte streams deriving from ``http``'s own stream base classes."""
    cached = _STREAMS.get(http.__name__)
    if cached is not None:
        return cached

    class Opening(http.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(
            self,
            outer: Any,
            chunks: Iterator[bytes] | None,
            opening: _Opening,
            ready: list[bytes],
        ) -> None:
            self._outer = outer
            self._chunks = chunks
            self._opening = opening
            self._ready = ready
            self.capture: _ProblemCapture | None = None

        def _feed(self, pieces: list[bytes]) -> list[bytes]:
            if self.capture is not None:
                for piece in pieces:
                    self.capture.feed(piece)
            return pieces

        def __iter__(self) -> Iterator[bytes]:
            try:
                yield from self._feed(self._ready)
                if self._chunks is not None:
                    for chunk in self._chunks:
                        yield from self._feed(self._opening.push(chunk))
                    yield from self._feed(self._opening.finish())
                if self.capture is not None:
                    self.capture.finish()
            finally:
                self._outer.close()

        def close(self) -> None:
            self._outer.close()

    class AsyncOpening(http.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(
            self,
            outer: Any,
            chunks: AsyncIterator[bytes] | None,
            opening: _Opening,
            ready: list[bytes],
        ) -> None:
            self._outer = outer
            self._chunks = chunks
            self._opening = opening
            self._ready = ready
            self.capture: _ProblemCapture | None = None

        def _feed(self, pieces: list[bytes]) -> list[bytes]:
            if self.capture is not None:
                for piece in pieces:
                    self.capture.feed(piece)
            return pieces

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                for piece in self._feed(self._ready):
                    yield piece
                if self._chunks is not None:
                    async for chunk in self._chunks:
                        for piece in self._feed(self._opening.push(chunk)):
                            yield piece
                    for piece in self._feed(self._opening.finish()):
                        yield piece
                if self.capture is not None:
                    self.capture.finish()
            finally:
                await self._outer.aclose()

        async def aclose(self) -> None:
            await self._outer.aclose()

    _STREAMS[http.__name__] = (Opening, AsyncOpening)
    return Opening, AsyncOpening


def _read_head(opening: _Opening, chunks: Iterator[bytes]) -> tuple[list[bytes], bool]:
    """Pieces read until the inner head is known; True if the outer body already ended."""
    ready: list[bytes] = []
    for chunk in chunks:
        ready += opening.push(chunk)
        if opening.head is not None:
            if _wants_whole_body(opening.head) and sum(map(len, ready)) <= _MAX_PLAINTEXT_ERROR:
                continue
            return ready, False
    return ready + opening.finish(), True


async def _aread_head(opening: _Opening, chunks: AsyncIterator[bytes]) -> tuple[list[bytes], bool]:
    ready: list[bytes] = []
    async for chunk in chunks:
        ready += opening.push(chunk)
        if opening.head is not None:
            if _wants_whole_body(opening.head) and sum(map(len, ready)) <= _MAX_PLAINTEXT_ERROR:
                continue
            return ready, False
    return ready + opening.finish(), True


class NativeTransport(httpx.BaseTransport):
    """Synchronous native-mode transport (``httpx.Client(transport=...)``)."""

    _http: ModuleType = httpx

    def __init__(self, fleet: Fleet, inner: Any = None, **options: Any) -> None:
        self._core = _NativeCore(fleet, **options)
        self._inner = inner if inner is not None else self._http.HTTPTransport()

    @property
    def fleet(self) -> Fleet:
        return self._core.fleet

    def handle_request(self, request: Any) -> Any:
        core = self._core
        local = answer_locally(core.fleet, request.method, request.url.path)
        if local is not None:
            return self._http.Response(local[0], headers=MODELS_HEADERS, content=local[1])
        body = request.read()
        core.check_size(body)
        exclude: set[str] = set()
        last: GatewayError | None = None
        stale_retried = False
        for _ in range(core.max_attempts):
            attempt = core.seal_native(request, body, exclude)
            outer = self._inner.handle_request(core.outer_request(self._http, request, attempt))
            if not core.is_sealed(outer, attempt):
                raw = _read_capped(outer)
                retry = core.refusal(outer.status_code, outer.headers, raw, attempt, exclude)  # type: ignore[arg-type]
                core.multi_refusal(retry, attempt, exclude)
                core.apply(retry, attempt)  # type: ignore[arg-type]
                last = core.exhausted(outer.status_code, retry)
                if retry.action in ("refresh", "rotated"):
                    time.sleep(0.1)
                continue
            opening = _Opening(attempt)
            chunks = iter(outer.stream)
            try:
                ready, ended = _read_head(opening, chunks)
            except BaseException:
                outer.close()
                raise
            if ended:
                outer.close()
                action = core.inner_retry(opening, ready, attempt, stale_retried)
                if action == "stale":
                    stale_retried = True
                    continue
                if action == "busy":
                    exclude.add(attempt.enclave.id)
                    core.fleet.enclave_down(attempt.enclave.id, 1.0)
                    last = GatewayError(503, None, "every enclave tried was overloaded")
                    continue
            sync_stream, _ = _stream_classes(self._http)
            stream = sync_stream(outer, None if ended else chunks, opening, ready)
            return core.inner_response(self._http, outer, opening, attempt, stream)
        if last is None:
            last = GatewayError(400, None, "the enclave refused the request as stale twice")
        raise last

    def close(self) -> None:
        self._inner.close()


class AsyncNativeTransport(httpx.AsyncBaseTransport):
    """Asynchronous native-mode transport (``httpx.AsyncClient(transport=...)``)."""

    _http: ModuleType = httpx

    def __init__(self, fleet: Fleet, inner: Any = None, **options: Any) -> None:
        self._core = _NativeCore(fleet, **options)
        self._inner = inner if inner is not None else self._http.AsyncHTTPTransport()

    @property
    def fleet(self) -> Fleet:
        return self._core.fleet

    async def handle_async_request(self, request: Any) -> Any:
        core = self._core
        local = None  # only a models listing may need the fleet (network): off the loop
        if is_models_listing(request.method, request.url.path) is not None:
            local = await anyio.to_thread.run_sync(
                answer_locally, core.fleet, request.method, request.url.path
            )
        if local is not None:
            return self._http.Response(local[0], headers=MODELS_HEADERS, content=local[1])
        body = await request.aread()
        core.check_size(body)
        exclude: set[str] = set()
        last: GatewayError | None = None
        stale_retried = False
        for _ in range(core.max_attempts):
            # Choosing may refresh the fleet (network + verification): keep it off the loop.
            attempt = await anyio.to_thread.run_sync(core.seal_native, request, body, exclude)
            outer = await self._inner.handle_async_request(
                core.outer_request(self._http, request, attempt)
            )
            if not core.is_sealed(outer, attempt):
                raw = await _aread_capped(outer)
                retry = core.refusal(outer.status_code, outer.headers, raw, attempt, exclude)  # type: ignore[arg-type]
                core.multi_refusal(retry, attempt, exclude)
                await anyio.to_thread.run_sync(core.apply, retry, attempt)  # type: ignore[arg-type]
                last = core.exhausted(outer.status_code, retry)
                if retry.action in ("refresh", "rotated"):
                    await anyio.sleep(0.1)
                continue
            opening = _Opening(attempt)
            chunks = outer.stream.__aiter__()
            try:
                ready, ended = await _aread_head(opening, chunks)
            except BaseException:
                await outer.aclose()
                raise
            if ended:
                await outer.aclose()
                action = core.inner_retry(opening, ready, attempt, stale_retried)
                if action == "stale":
                    stale_retried = True
                    continue
                if action == "busy":
                    exclude.add(attempt.enclave.id)
                    core.fleet.enclave_down(attempt.enclave.id, 1.0)
                    last = GatewayError(503, None, "every enclave tried was overloaded")
                    continue
            _, async_stream = _stream_classes(self._http)
            stream = async_stream(outer, None if ended else chunks, opening, ready)
            return core.inner_response(self._http, outer, opening, attempt, stream)
        if last is None:
            last = GatewayError(400, None, "the enclave refused the request as stale twice")
        raise last

    async def aclose(self) -> None:
        await self._inner.aclose()


_FLAVOURS: dict[str, tuple[type, type]] = {}


def native_transport_classes(http: ModuleType) -> tuple[type, type]:
    """Native transport classes deriving from ``http``'s base classes (httpx or httpx2)."""
    if http is httpx:
        return NativeTransport, AsyncNativeTransport
    cached = _FLAVOURS.get(http.__name__)
    if cached is None:
        sync = type(
            f"NativeTransport_{http.__name__}",
            (NativeTransport, http.BaseTransport),
            {"_http": http},
        )
        async_ = type(
            f"AsyncNativeTransport_{http.__name__}",
            (AsyncNativeTransport, http.AsyncBaseTransport),
            {"_http": http},
        )
        cached = _FLAVOURS[http.__name__] = (sync, async_)
    return cached
