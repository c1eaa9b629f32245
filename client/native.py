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
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

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

from .drivers import AsyncExchangeTransport, ExchangeTransport
from .errors import GatewayError, ResponseIntegrityError
from .exchange import MAX_ERROR_BODY, Action, Attempt, Exchange, Opening, Retry, SealingCore
from .fleet import Fleet, VerifiedEnclave
from .headers import ENCAPSULATION, HOP, NOT_FORWARDED
from .models import (
    MODELS_HEADERS,
    Router,
    answer_locally,
    is_models_listing,
    route_tag_header,
)

__all__ = [
    "OHTTP",
    "GATEWAY_PATH",
    "AsyncNativeTransport",
    "NativeCore",
    "NativeOpening",
    "NativeTransport",
]

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
class NativeAttempt(Attempt):
    """One sealed request. A multi-recipient one names its ``candidates`` (first =
    ``enclave``); ``enclave`` and ``key`` become the answering candidate once known."""

    sealer: ChunkedRequestSealer | MultiRequestSealer
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


class NativeOpening(Opening):
    """Sans-IO: outer body bytes -> the inner head and content pieces, authenticated."""

    def __init__(self, attempt: NativeAttempt) -> None:
        super().__init__()
        self._attempt = attempt
        self._opener = attempt.sealer.response_opener()
        self._decoder = MessageDecoder(request=False)
        self.head: ResponseHead | None = None
        self.sse = False
        #: The inner message's end was seen (the outer body may still have its last chunk).
        self.ended = False

    @property
    def wants_more(self) -> bool:
        """Until the inner head is known; a small problem that may ask for a retry, whole."""
        if self.finished:
            return False
        if self.head is None:
            return True
        return _wants_whole_body(self.head) and sum(map(len, self.ready)) <= MAX_ERROR_BODY

    def push(self, chunk: bytes) -> list[bytes]:
        try:
            out: list[bytes] = []
            opener = self._opener
            for plaintext in opener.push(chunk):
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


def _is_problem(head: ResponseHead) -> bool:
    return _field(head, b"content-type").split(b";")[0].strip() == PROBLEM_MEDIA_TYPE.encode()


def _problem(head: ResponseHead, pieces: list[bytes]) -> Problem | None:
    if not _is_problem(head):
        return None
    try:
        return Problem.from_bytes(b"".join(pieces))
    except MalformedProblem:
        return None


def _wants_whole_body(head: ResponseHead) -> bool:
    """Small sealed problems that may trigger a retry are read to their end first."""
    return head.status in (400, 503) and _is_problem(head)


class NativeExchange(Exchange[NativeAttempt]):
    """One request in the native mode: Binary HTTP sealed as chunked OHTTP."""

    core: NativeCore

    def __init__(self, core: NativeCore, http: ModuleType, request: Any, body: bytes) -> None:
        super().__init__(core, http, request, body)
        self._stale_retried = False

    def seal(self) -> NativeAttempt:
        core, request, route = self.core, self.request, self.route
        chosen = core.fleet.choose_many(
            core.recipients, self.exclude, model=route.model, tag=route.tag, post_quantum=True
        )
        enclave, key = chosen[0]
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.multi_items()
            if name.lower() not in _DROP_REQUEST and not name.lower().startswith(ENCAPSULATION)
        ]
        headers.append((b"date", http_date(core.clock() + core.skew).encode()))
        message = Request(
            request.method.encode("ascii"),
            b"https",
            b"",
            request.url.raw_path,
            tuple(headers),
            self.body,
        ).to_bytes()
        message += bytes(padding_to(len(message), DEFAULT_REQUEST_BUCKET))
        if len(chosen) > 1:
            multi = MultiRequestSealer([k for _, k in chosen])
            wire = multi.header + multi.seal_final(message)
            return NativeAttempt(enclave, key, wire, multi, route.tag, tuple(chosen))
        sealer = ChunkedRequestSealer(key)
        wire = sealer.header + sealer.seal_final(message)
        return NativeAttempt(enclave, key, wire, sealer, route.tag)

    def outgoing(self, attempt: NativeAttempt) -> Any:
        """What the gateway sees: a POST of ciphertext to the well-known gateway resource."""
        if attempt.multi:  # the gateway reads the candidates from the body's public header
            headers = [("Content-Type", MULTI_REQUEST_MEDIA_TYPE)]
        else:
            headers = [
                ("Content-Type", CHUNKED_REQUEST_MEDIA_TYPE),
                (KEY_ID, attempt.key.fingerprint),
            ]
        return self.http.Request(
            "POST",
            self.request.url.copy_with(raw_path=GATEWAY_PATH.encode()),
            headers=headers + route_tag_header(attempt.route_tag),
            content=attempt.wire,
            extensions=self.request.extensions,
        )

    def on_response_head(self, status: int, headers: Any) -> bool:
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        multi = self.attempt.multi
        expected = MULTI_RESPONSE_MEDIA_TYPE if multi else CHUNKED_RESPONSE_MEDIA_TYPE
        if status == 200 and kind == expected:
            return True
        if 200 <= status < 300:
            raise ResponseIntegrityError(
                f"a {status} answer arrived without a sealed "
                f"{expected} body: it is not from an enclave (or was altered "
                "in transit); refusing it"
            )
        return False

    def adjust(self, retry: Retry) -> Retry:
        """A plaintext refusal of a multi-recipient request: the gateway already offered it
        to every candidate it could, so none of them is asked again this time."""
        attempt = self.attempt
        if not attempt.multi:
            return retry
        if retry.action in (Action.DOWN, Action.BUSY):
            self.exclude.update(e.id for e, _ in attempt.candidates)
        elif retry.action is Action.ROTATED:
            # Which candidate refused is not known: re-verify.
            return replace(retry, action=Action.REFRESH)
        return retry

    def opener(self, headers: Any) -> Opening:
        return NativeOpening(self.attempt)

    def on_complete(self) -> Retry | None:
        """A complete sealed problem: re-seal once after a stale Date, or elsewhere when busy."""
        opening = self.opening
        assert isinstance(opening, NativeOpening) and opening.head is not None
        head = opening.head
        problem = _problem(head, opening.ready)
        if problem is None:
            return None
        if head.status == 400 and problem.is_(PROBLEMS.STALE_REQUEST) and not self._stale_retried:
            server_time = parse_http_date(_field(head, b"date").decode("latin-1"))
            if server_time is not None:
                self.core.skew = server_time - self.core.clock()
                self._stale_retried = True
                if self.last is None:
                    self.last = GatewayError(
                        400, None, "the enclave refused the request as stale twice"
                    )
                return Retry(Action.STALE)
        if head.status == 503 and problem.is_(PROBLEMS.OVERLOADED):
            # The enclave authenticated that it did not forward the request.
            self.exclude.add(self.attempt.enclave.id)
            self.last = GatewayError(503, None, "every enclave tried was overloaded")
            return Retry(Action.BUSY, 1.0)
        return None

    def response(self, outer: Any, stream: Any) -> Any:
        """The enclave's status and headers, and the inner body."""
        opening = self.opening
        assert isinstance(opening, NativeOpening) and opening.head is not None
        head = opening.head
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in head.headers
            if k.lower() != PADDING_FIELD
            and k.lower().decode("latin-1") not in HOP
            and not k.lower().startswith(ENCAPSULATION_PREFIXES)
        ]
        return self.hand_out(outer, head.status, headers, _is_problem(head), stream)


class NativeCore(SealingCore):
    """Native-mode settings and what is learned across requests (the enclave's clock)."""

    exchange_class = NativeExchange

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
        super().__init__(fleet, max_attempts=max_attempts, max_body=max_body, router=router)
        if not 1 <= recipients <= MAX_CANDIDATES:
            raise ValueError(f"recipients must be 1..{MAX_CANDIDATES}")
        self.recipients = recipients
        self.clock = clock
        #: Seconds to add to ``clock`` so the enclave accepts our Date (learned from it).
        self.skew = 0.0

    def is_local(self, method: str, path: str) -> bool:
        return is_models_listing(method, path) is not None

    def local_response(self, http: ModuleType, method: str, path: str) -> Any:
        """A models listing answered from verified evidence (None: forward it)."""
        local = answer_locally(self.fleet, method, path)
        if local is None:
            return None
        return http.Response(local[0], headers=MODELS_HEADERS, content=local[1])


class NativeTransport(ExchangeTransport):
    """Synchronous native-mode transport (``httpx.Client(transport=...)``)."""

    core_class = NativeCore


class AsyncNativeTransport(AsyncExchangeTransport):
    """Asynchronous native-mode transport (``httpx.AsyncClient(transport=...)``)."""

    core_class = NativeCore
