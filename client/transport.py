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
:class:`GatewayError`; it is never returned as enclave output.

Recovery re-encrypts from the buffered plaintext under a fresh HPKE context, and only
where the enclave cannot have processed the request: 421 (unknown key: the directory
changed), 422 (key rotated out: re-attest), 503 before forwarding (another enclave).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio
import httpx
from sealgate.protocol.public.errors import MalformedProblem, ProtocolError
from sealgate.protocol.public.headers import KEY_ID, VERIFIED_ENCLAVE
from sealgate.protocol.public.keyconfig import KeyConfig
from sealgate.protocol.public.modes import EHBP, Mode
from sealgate.protocol.public.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.sealing.ehbp_request import RequestEncoder
from sealgate.protocol.sealing.ehbp_response import ResponseDecoder
from sealgate.protocol.sealing.padding import DEFAULT_REQUEST_BUCKET, is_json, json_padding

from .errors import (
    ENCLAVE_ERROR_EXTENSION,
    EnclaveError,
    ForwardingFailed,
    GatewayError,
    RequestNotSent,
    ResponseIntegrityError,
)
from .fleet import Fleet, VerifiedEnclave
from .headers import ENCAPSULATION, NOT_FORWARDED
from .models import Router

__all__ = ["SealgateTransport", "AsyncSealgateTransport", "ENCLAVE_HEADER"]

#: Added by the transport (not by any server) to decrypted responses: who served it.
ENCLAVE_HEADER = VERIFIED_ENCLAVE
_SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_MAX_PLAINTEXT_ERROR = 64 * 1024


@dataclass(slots=True)
class _Attempt:
    enclave: VerifiedEnclave
    key: KeyConfig
    encoder: RequestEncoder
    headers: list[tuple[str, str]]
    wire: bytes


class _Retry:
    """What to do before the next attempt."""

    __slots__ = ("action", "delay")

    def __init__(self, action: str, delay: float = 0.0) -> None:
        self.action = action
        self.delay = delay


class _ProblemCapture:
    """Keeps a sealed error body (up to a cap) and, once it authenticated to its end, parses it."""

    __slots__ = ("_data", "_over", "error")

    def __init__(self, error: EnclaveError) -> None:
        self.error = error
        self._data = bytearray()
        self._over = False

    def feed(self, plaintext: bytes) -> None:
        if self._over:
            return
        self._data += plaintext
        if len(self._data) > _MAX_PLAINTEXT_ERROR:
            self._over = True
            self._data = bytearray()

    def finish(self) -> None:
        if self._over or not self._data:
            return
        try:
            self.error.problem = Problem.from_bytes(bytes(self._data))
        except MalformedProblem:
            self.error.problem = None


class _Core:
    """Sealing, opening and the recovery rules, shared by every transport flavour."""

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
        self.fleet = fleet
        self.mode = mode
        self.max_attempts = max(1, max_attempts)
        self.forward_secret_headers = forward_secret_headers
        self.max_body = max_body
        self.request_bucket = request_bucket

    def seal(
        self, headers: Any, body: bytes, exclude: set[str], model: str | None = None
    ) -> _Attempt:
        enclave, key = self.fleet.choose(exclude, model=model)
        encoder = RequestEncoder(key, self.mode)
        if body and self.request_bucket > 0 and is_json(headers.get("content-type", "")):
            # Trailing whitespace is still the same JSON text (RFC 8259 §2): only the
            # prompt's size bucket crosses the gateway.
            body = body + json_padding(len(body), self.request_bucket)
        wire = encoder.finish(body)
        out: list[tuple[str, str]] = []
        for name, value in headers.multi_items():
            lname = name.lower()
            if lname in NOT_FORWARDED or lname.startswith(ENCAPSULATION):
                continue
            if lname in _SECRET_HEADERS and not self.forward_secret_headers:
                continue  # headers are not encrypted: the gateway would see them
            out.append((name, value))
        out += list(encoder.headers.items())
        out.append((KEY_ID, key.fingerprint))  # lets a sealgate gateway route it
        return _Attempt(enclave, key, encoder, out, wire)

    def check_size(self, body: bytes) -> None:
        if len(body) > self.max_body:
            raise RequestNotSent(f"request body of {len(body)} bytes exceeds max_body")

    def sealed_request(self, http: ModuleType, request: Any, attempt: _Attempt) -> Any:
        """The request as it goes on the wire: same method and URL, sealed body and headers."""
        return http.Request(
            request.method,
            request.url,
            headers=attempt.headers,
            content=attempt.wire,
            extensions=request.extensions,
        )

    def opened_response(
        self, http: ModuleType, response: Any, attempt: _Attempt, stream_class: type, nonce: str
    ) -> Any:
        """The response the caller sees: plaintext headers and a decrypting body stream.

        An error status comes with an :class:`EnclaveError` in its extensions, whose
        problem document is filled in once the body authenticated to its end.
        """
        extensions = dict(response.extensions)
        capture = None
        if response.status_code >= 400:
            error = EnclaveError(response.status_code, attempt.enclave.id)
            extensions[ENCLAVE_ERROR_EXTENSION] = error
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
            if content_type == PROBLEM_MEDIA_TYPE:
                capture = _ProblemCapture(error)
        return http.Response(
            response.status_code,
            headers=self.response_headers(response.headers, attempt),
            stream=stream_class(response, self.decoder(attempt, nonce), capture),
            extensions=extensions,
        )

    def decoder(self, attempt: _Attempt, nonce: str) -> ResponseDecoder:
        try:
            return attempt.encoder.response_decoder(nonce)
        except ProtocolError as exc:
            raise ResponseIntegrityError(f"bad response nonce header: {exc.message}") from None

    def response_headers(self, headers: Any, attempt: _Attempt) -> list[tuple[str, str]]:
        drop = {"content-length", "transfer-encoding", self.mode.response_nonce_header.lower()}
        kept = [(k, v) for k, v in headers.multi_items() if k.lower() not in drop]
        kept.append((ENCLAVE_HEADER, f"{attempt.enclave.id}; key={attempt.key.fingerprint}"))
        return kept

    def refusal(
        self, status: int, headers: Any, body: bytes, attempt: _Attempt, exclude: set[str]
    ) -> _Retry:
        """Classify a response without encryption; return how to retry or raise."""
        if 200 <= status < 300:
            raise ResponseIntegrityError(
                f"a {status} response arrived without {self.mode.response_nonce_header}: "
                "it is not from an enclave (or was stripped in transit); refusing it"
            )
        problem: Problem | None = None
        if headers.get("content-type", "").split(";")[0].strip() == PROBLEM_MEDIA_TYPE:
            try:
                problem = Problem.from_bytes(body)
            except MalformedProblem:
                problem = None
        retry_after = _retry_after(headers)
        if problem is not None:
            if status == 421 and problem.is_(PROBLEMS.UNKNOWN_KEY):
                return _Retry("refresh")
            if status == 422 and problem.is_(PROBLEMS.KEY_CONFIG):
                return _Retry("rotated")
            if status == 503 and problem.is_(PROBLEMS.ENCLAVE_UNAVAILABLE):
                exclude.add(attempt.enclave.id)
                return _Retry("down", retry_after)
            if status == 503 and problem.is_(PROBLEMS.OVERLOADED):
                exclude.add(attempt.enclave.id)  # refused before decryption: safe elsewhere
                return _Retry("busy", retry_after)
            if status == 502 and problem.is_(PROBLEMS.FORWARDING_FAILED):
                raise ForwardingFailed(
                    status,
                    problem,
                    f"the gateway lost enclave {attempt.enclave.id} after forwarding the sealed "
                    "request; it may have been processed, so sealgate does not re-send it",
                )
        what = (
            f"{problem.title}: {problem.detail}"
            if problem and problem.detail
            else (problem.title if problem else "")
        )
        raise GatewayError(
            status,
            problem,
            f"unauthenticated {status} from the gateway path (not enclave output)"
            + (f": {what}" if what else ""),
        )

    def apply(self, retry: _Retry, attempt: _Attempt) -> None:
        """Update the fleet for a retry (blocking; the async transport runs it in a thread)."""
        if retry.action == "refresh":
            self.fleet.key_unknown()
        elif retry.action == "rotated":
            self.fleet.key_rotated(attempt.key, attempt.enclave.id)
        elif retry.action in ("down", "busy"):
            self.fleet.enclave_down(attempt.enclave.id, retry.delay or 1.0)

    def exhausted(self, status: int, retry: _Retry) -> GatewayError:
        """The error to raise if this was the last attempt."""
        return GatewayError(
            status,
            None,
            f"gave up after {self.max_attempts} attempts; the last answer was {status} "
            f"({retry.action}): no verified enclave could take the request. Nothing was "
            "processed twice: every retry was a request the enclave had refused or never received",
        )


def _retry_after(headers: Any) -> float:
    try:
        return float(headers.get("retry-after", "1"))
    except ValueError:
        return 1.0


_STREAMS: dict[str, tuple[type, type]] = {}


def _stream_classes(http: ModuleType) -> tuple[type, type]:
    """Decrypting byte streams deriving from ``http``'s own stream base classes."""
    cached = _STREAMS.get(http.__name__)
    if cached is not None:
        return cached
    core_error = ResponseIntegrityError

    class Decrypting(http.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(
            self, response: Any, decoder: ResponseDecoder, capture: _ProblemCapture | None
        ) -> None:
            self._response = response
            self._decoder = decoder
            self._capture = capture

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self._response.stream:
                    for plaintext in self._decoder.push(chunk):
                        if plaintext:
                            if self._capture is not None:
                                self._capture.feed(plaintext)
                            yield plaintext
                self._decoder.finish()
                if self._capture is not None:
                    self._capture.finish()
            except ProtocolError as exc:
                raise core_error(f"encrypted response failed verification: {exc.message}") from None
            finally:
                self._response.close()

        def close(self) -> None:
            self._response.close()

    class AsyncDecrypting(http.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(
            self, response: Any, decoder: ResponseDecoder, capture: _ProblemCapture | None
        ) -> None:
            self._response = response
            self._decoder = decoder
            self._capture = capture

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self._response.stream:
                    for plaintext in self._decoder.push(chunk):
                        if plaintext:
                            if self._capture is not None:
                                self._capture.feed(plaintext)
                            yield plaintext
                self._decoder.finish()
                if self._capture is not None:
                    self._capture.finish()
            except ProtocolError as exc:
                raise core_error(f"encrypted response failed verification: {exc.message}") from None
            finally:
                await self._response.aclose()

        async def aclose(self) -> None:
            await self._response.aclose()

    _STREAMS[http.__name__] = (Decrypting, AsyncDecrypting)
    return Decrypting, AsyncDecrypting


class SealgateTransport(httpx.BaseTransport):
    """Synchronous sealing transport (``httpx.Client(transport=...)``)."""

    _http: ModuleType = httpx

    def __init__(self, fleet: Fleet, inner: Any = None, **options: Any) -> None:
        self._core = _Core(fleet, **options)
        self._inner = inner if inner is not None else self._http.HTTPTransport()

    @property
    def fleet(self) -> Fleet:
        return self._core.fleet

    def handle_request(self, request: Any) -> Any:
        body = request.read()
        self._core.check_size(body)
        exclude: set[str] = set()
        last: GatewayError | None = None
        for _ in range(self._core.max_attempts):
            model = Router().route(request.method, request.url.path, body).model
            attempt = self._core.seal(request.headers, body, exclude, model)
            response = self._inner.handle_request(
                self._core.sealed_request(self._http, request, attempt)
            )
            nonce = response.headers.get(self._core.mode.response_nonce_header)
            if nonce is not None:
                sync_stream, _ = _stream_classes(self._http)
                try:
                    return self._core.opened_response(
                        self._http, response, attempt, sync_stream, nonce
                    )
                except ResponseIntegrityError:
                    response.close()
                    raise
            raw = _read_capped(response)
            retry = self._core.refusal(
                response.status_code, response.headers, raw, attempt, exclude
            )
            self._core.apply(retry, attempt)
            last = self._core.exhausted(response.status_code, retry)
            if retry.action in ("refresh", "rotated"):
                time.sleep(0.1)  # the gateway's directory lags an enclave's rotation by a poll
        assert last is not None
        raise last

    def close(self) -> None:
        self._inner.close()  # the fleet is shared; its owner (SecureClient) closes it


class AsyncSealgateTransport(httpx.AsyncBaseTransport):
    """Asynchronous sealing transport (``httpx.AsyncClient(transport=...)``)."""

    _http: ModuleType = httpx

    def __init__(self, fleet: Fleet, inner: Any = None, **options: Any) -> None:
        self._core = _Core(fleet, **options)
        self._inner = inner if inner is not None else self._http.AsyncHTTPTransport()

    @property
    def fleet(self) -> Fleet:
        return self._core.fleet

    async def handle_async_request(self, request: Any) -> Any:
        body = await request.aread()
        self._core.check_size(body)
        exclude: set[str] = set()
        last: GatewayError | None = None
        for _ in range(self._core.max_attempts):
            # Choosing may refresh the fleet (network + verification): keep it off the loop.
            model = Router().route(request.method, request.url.path, body).model
            attempt = await anyio.to_thread.run_sync(
                self._core.seal, request.headers, body, exclude, model
            )
            response = await self._inner.handle_async_request(
                self._core.sealed_request(self._http, request, attempt)
            )
            nonce = response.headers.get(self._core.mode.response_nonce_header)
            if nonce is not None:
                _, async_stream = _stream_classes(self._http)
                try:
                    return self._core.opened_response(
                        self._http, response, attempt, async_stream, nonce
                    )
                except ResponseIntegrityError:
                    await response.aclose()
                    raise
            raw = await _aread_capped(response)
            retry = self._core.refusal(
                response.status_code, response.headers, raw, attempt, exclude
            )
            await anyio.to_thread.run_sync(self._core.apply, retry, attempt)
            last = self._core.exhausted(response.status_code, retry)
            if retry.action in ("refresh", "rotated"):
                await anyio.sleep(0.1)
        assert last is not None
        raise last

    async def aclose(self) -> None:
        await self._inner.aclose()


def _read_capped(response: Any) -> bytes:
    data = bytearray()
    try:
        for chunk in response.stream:
            data += chunk
            if len(data) > _MAX_PLAINTEXT_ERROR:
                break
    finally:
        response.close()
    return bytes(data[:_MAX_PLAINTEXT_ERROR])


async def _aread_capped(response: Any) -> bytes:
    data = bytearray()
    try:
        async for chunk in response.stream:
            data += chunk
            if len(data) > _MAX_PLAINTEXT_ERROR:
                break
    finally:
        await response.aclose()
    return bytes(data[:_MAX_PLAINTEXT_ERROR])
