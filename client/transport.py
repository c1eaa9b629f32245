"""httpx transports for the EHBP compatibility mode: seal every request body, open every response.

``SecureClient(..., mode=EHBP)`` uses these; the default is the native mode
(:mod:`.native`). EHBP seals bodies only: method, path, headers and status cross the
gateway in the clear (so secret headers are dropped unless ``forward_secret_headers``),
a stream cut at a frame boundary cannot be told from a complete one, and there is no
replay protection. They wrap an inner transport (``httpx.HTTPTransport`` by default),
so any httpx-based SDK works unchanged. Per request:

1. choose a verified enclave and its key (the gateway's hint picks among verified ones);
2. seal the body (a JSON body is first padded with trailing whitespace to a multiple of
   ``request_bucket`` bytes) and add ``Sealgate-Key-Id`` so a sealgate gateway can route;
3. open the response incrementally, so server-sent events arrive token by token.

Fail closed: a 2xx without encryption or a frame that does not authenticate raises
:class:`ResponseIntegrityError`. A plaintext error is
the gateway's (or an enclave's refusal before decryption) and raises
:class:`GatewayError`; it is never returned as enclave output. Retries follow the
shared rules of :mod:`.exchange`.

The transports are :class:`EhbpTransport` and :class:`AsyncEhbpTransport`;
``SealgateTransport`` and ``AsyncSealgateTransport`` are the same classes under the
names they were first published with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sealgate.protocol.public.errors import ProtocolError
from sealgate.protocol.public.headers import KEY_ID
from sealgate.protocol.public.modes import EHBP, Mode
from sealgate.protocol.public.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.sealing.ehbp_request import RequestEncoder
from sealgate.protocol.sealing.ehbp_response import ResponseDecoder
from sealgate.protocol.sealing.padding import DEFAULT_REQUEST_BUCKET, is_json, json_padding

from .drivers import AsyncExchangeTransport, ExchangeTransport
from .errors import ResponseIntegrityError
from .exchange import ENCLAVE_HEADER, Attempt, Exchange, Opening, SealingCore
from .fleet import Fleet
from .headers import ENCAPSULATION, FRAMING_NAMES, NOT_FORWARDED

__all__ = [
    "ENCLAVE_HEADER",
    "AsyncEhbpTransport",
    "AsyncSealgateTransport",
    "EhbpCore",
    "EhbpTransport",
    "SealgateTransport",
]

_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(slots=True)
class EhbpAttempt(Attempt):
    """A sealed body, and the headers that go with it in the clear."""

    encoder: RequestEncoder
    headers: list[tuple[str, str]]


class EhbpOpening(Opening):
    """Sans-IO: EHBP response frames in, plaintext out."""

    def __init__(self, decoder: ResponseDecoder) -> None:
        super().__init__()
        self._decoder = decoder

    def push(self, chunk: bytes) -> list[bytes]:
        try:
            plaintexts = self._decoder.push(chunk)
        except ProtocolError as exc:
            raise _integrity(exc) from None
        return plaintexts if all(plaintexts) else [p for p in plaintexts if p]

    def finish(self) -> list[bytes]:
        try:
            self._decoder.finish()
        except ProtocolError as exc:
            raise _integrity(exc) from None
        return []


def _integrity(exc: ProtocolError) -> ResponseIntegrityError:
    return ResponseIntegrityError(f"encrypted response failed verification: {exc.message}")


class EhbpExchange(Exchange[EhbpAttempt]):
    """One request in EHBP: the body sealed, the response opened frame by frame."""

    core: EhbpCore

    def seal(self) -> EhbpAttempt:
        core, body, request = self.core, self.body, self.request
        enclave, key = core.fleet.choose(self.exclude, model=self.route.model)
        encoder = RequestEncoder(key, core.mode)
        if body and core.request_bucket > 0 and is_json(request.headers.get("content-type", "")):
            # Trailing whitespace is still the same JSON text (RFC 8259 §2): only the
            # prompt's size bucket crosses the gateway.
            body = body + json_padding(len(body), core.request_bucket)
        wire = encoder.finish(body)
        out: list[tuple[str, str]] = []
        for name, value in request.headers.multi_items():
            lname = name.lower()
            if lname in NOT_FORWARDED or lname.startswith(ENCAPSULATION):
                continue
            if lname in _SECRET_HEADERS and not core.forward_secret_headers:
                continue  # headers are not encrypted: the gateway would see them
            out.append((name, value))
        out += list(encoder.headers.items())
        out.append((KEY_ID, key.fingerprint))  # lets a sealgate gateway route it
        return EhbpAttempt(enclave, key, wire, encoder, out)

    def outgoing(self, attempt: EhbpAttempt) -> Any:
        """Same method and URL, sealed body and headers."""
        request = self.request
        return self.http.Request(
            request.method,
            request.url,
            headers=attempt.headers,
            content=attempt.wire,
            extensions=request.extensions,
        )

    def on_response_head(self, status: int, headers: Any) -> bool:
        nonce_header = self.core.mode.response_nonce_header
        if headers.get(nonce_header) is not None:
            return True
        if 200 <= status < 300:
            raise ResponseIntegrityError(
                f"a {status} response arrived without {nonce_header}: "
                "it is not from an enclave (or was stripped in transit); refusing it"
            )
        return False

    def opener(self, headers: Any) -> Opening:
        nonce = headers.get(self.core.mode.response_nonce_header)
        try:
            return EhbpOpening(self.attempt.encoder.response_decoder(nonce))
        except ProtocolError as exc:
            raise ResponseIntegrityError(f"bad response nonce header: {exc.message}") from None

    def response(self, outer: Any, stream: Any) -> Any:
        """The enclave's status and headers (they crossed in the clear), the opened body."""
        drop = FRAMING_NAMES | {self.core.mode.response_nonce_header.lower()}
        headers = [(k, v) for k, v in outer.headers.multi_items() if k.lower() not in drop]
        kind = outer.headers.get("content-type", "").split(";")[0].strip()
        return self.hand_out(outer, outer.status_code, headers, kind == PROBLEM_MEDIA_TYPE, stream)


class EhbpCore(SealingCore):
    """EHBP settings: what is sealed, which headers travel in the clear, padding."""

    exchange_class = EhbpExchange

    def __init__(
        self,
        fleet: Fleet,
        *,
        mode: Mode = EHBP,
        max_attempts: int = 4,
        forward_secret_headers: bool = False,
        max_body: int = 64 * 1024 * 1024,
        request_bucket: int = DEFAULT_REQUEST_BUCKET,
    ) -> None:
        if mode is not EHBP:
            raise ValueError("these transports speak EHBP; the native mode is client.native")
        super().__init__(fleet, max_attempts=max_attempts, max_body=max_body)
        self.mode = mode
        self.forward_secret_headers = forward_secret_headers
        self.request_bucket = request_bucket


class EhbpTransport(ExchangeTransport):
    """Synchronous EHBP transport (``httpx.Client(transport=...)``)."""

    core_class = EhbpCore


class AsyncEhbpTransport(AsyncExchangeTransport):
    """Asynchronous EHBP transport (``httpx.AsyncClient(transport=...)``)."""

    core_class = EhbpCore


#: The names the EHBP transports were first published with.
SealgateTransport = EhbpTransport
AsyncSealgateTransport = AsyncEhbpTransport
