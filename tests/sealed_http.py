"""A minimal sealed-HTTP caller built from the protocol objects, for server tests.

The native mode (default) sends the whole request as Binary HTTP in chunked OHTTP to
``/.well-known/ohttp-gateway`` and reports the *inner* status and headers; ``mode=EHBP``
seals the body only, as Tinfoil's clients do.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from sealgate.protocol.public.keyconfig import KeyConfig
from sealgate.protocol.public.modes import EHBP, Mode
from sealgate.protocol.sealing.bhttp import (
    Data,
    EndOfMessage,
    MessageDecoder,
    Request,
    ResponseHead,
)
from sealgate.protocol.sealing.ehbp_request import RequestEncoder
from sealgate.protocol.sealing.ohttp import ChunkedRequestSealer
from sealgate.protocol.sealing.padding import PADDING_FIELD, strip_sse_padding
from sealgate.protocol.sealing.replay import http_date

#: ``mode=NATIVE`` (the default) selects chunked OHTTP + Binary HTTP.
NATIVE = "native"
GATEWAY_PATH = "/.well-known/ohttp-gateway"
CHUNKED_RESPONSE = "message/ohttp-chunked-res"


@dataclass
class SealedResult:
    status: int
    headers: httpx.Headers
    chunks: list[bytes] = field(default_factory=list)
    encrypted: bool = False

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def native_parts(
    method: str, url: str, key: KeyConfig, body: bytes, headers: dict[str, str] | None = None
) -> tuple[str, dict[str, str], bytes, ChunkedRequestSealer]:
    """(outer URL, outer headers, outer body, sealer) of a native request for ``url``."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    inner = [
        (b"content-type", b"application/json"),
        (b"date", http_date(time.time()).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    message = Request(method.encode(), b"https", b"", target.encode(), tuple(inner), body)
    plaintext = message.to_bytes()
    plaintext += bytes(-len(plaintext) % 1024)
    sealer = ChunkedRequestSealer(key)
    outer_headers = {
        "content-type": "message/ohttp-chunked-req",
        "sealgate-key-id": key.fingerprint,
    }
    outer_url = f"{parts.scheme}://{parts.netloc}{GATEWAY_PATH}"
    return outer_url, outer_headers, sealer.header + sealer.seal_final(plaintext), sealer


class NativeOpening:
    """Outer response bytes -> the inner head and content pieces (SSE padding removed)."""

    def __init__(self, sealer: ChunkedRequestSealer) -> None:
        self._opener = sealer.response_opener()
        self._decoder = MessageDecoder(request=False)
        self.head: ResponseHead | None = None
        self.ended = False
        self._sse = False

    def push(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        for plaintext in self._opener.push(data):
            out += self._events(self._decoder.push(plaintext))
        return out

    def finish(self) -> list[bytes]:
        out = self._events(self._decoder.push(self._opener.finish()))
        out += self._events(self._decoder.finish())
        assert self.ended and self.head is not None
        return out

    def headers(self) -> httpx.Headers:
        assert self.head is not None
        return httpx.Headers(
            [(k.decode(), v.decode()) for k, v in self.head.headers if k.lower() != PADDING_FIELD]
        )

    def _events(self, events: list[Any]) -> list[bytes]:
        out = []
        for event in events:
            if isinstance(event, ResponseHead):
                self.head = event
                kind = dict(event.headers).get(b"content-type", b"").split(b";")[0]
                self._sse = kind.strip().lower() == b"text/event-stream"
            elif isinstance(event, Data):
                piece = strip_sse_padding(event.data) if self._sse else event.data
                if piece:
                    out.append(piece)
            elif isinstance(event, EndOfMessage):
                self.ended = True
        return out


def _is_sealed(response: httpx.Response) -> bool:
    media = response.headers.get("content-type", "").split(";")[0].strip()
    return response.status_code == 200 and media == CHUNKED_RESPONSE


def sealed_request(
    client: httpx.Client,
    method: str,
    url: str,
    key: KeyConfig,
    body: bytes = b"",
    *,
    mode: Mode | str = NATIVE,
    headers: dict[str, str] | None = None,
) -> SealedResult:
    """Seal the request, send it, and open the response (or return a plaintext one as is)."""
    if mode is EHBP:
        return _ehbp_request(client, method, url, key, body, headers)
    outer_url, outer_headers, wire, sealer = native_parts(method, url, key, body, headers)
    with client.stream("POST", outer_url, content=wire, headers=outer_headers) as response:
        if not _is_sealed(response):
            return SealedResult(
                response.status_code, response.headers, [response.read()], encrypted=False
            )
        opening = NativeOpening(sealer)
        chunks: list[bytes] = []
        for raw in response.iter_raw():
            chunks += opening.push(raw)
        chunks += opening.finish()
    assert opening.head is not None
    return SealedResult(opening.head.status, opening.headers(), chunks, encrypted=True)


def _ehbp_request(
    client: httpx.Client,
    method: str,
    url: str,
    key: KeyConfig,
    body: bytes,
    headers: dict[str, str] | None,
) -> SealedResult:
    encoder = RequestEncoder(key, EHBP)
    wire = encoder.finish(body)
    all_headers = {**(headers or {}), **encoder.headers, "content-type": "application/json"}
    with client.stream(method, url, content=wire, headers=all_headers) as response:
        nonce = response.headers.get(EHBP.response_nonce_header)
        result = SealedResult(response.status_code, response.headers, encrypted=nonce is not None)
        if nonce is None:
            result.chunks.append(response.read())
            return result
        decoder = encoder.response_decoder(nonce)
        for raw in response.iter_raw():
            result.chunks += decoder.push(raw)
        decoder.finish()
    return result


def fetch_key(client: httpx.Client, base_url: str) -> KeyConfig:
    from sealgate.protocol.public.keyconfig import decode_key_configs

    response = client.get(base_url + "/.well-known/hpke-keys")
    response.raise_for_status()
    return decode_key_configs(response.content)[0]


@contextlib.contextmanager
def sealed_stream(
    client: httpx.Client, url: str, key: KeyConfig, body: bytes = b"{}"
) -> Iterator[Iterator[bytes]]:
    """POST a sealed request (native mode); yield the decrypted content pieces as they arrive.

    Exhausting the iterator also checks the end of the message (the final chunk).
    """
    outer_url, outer_headers, wire, sealer = native_parts("POST", url, key, body)
    with client.stream("POST", outer_url, content=wire, headers=outer_headers) as response:
        assert _is_sealed(response), response.status_code
        opening = NativeOpening(sealer)

        def pieces() -> Iterator[bytes]:
            for raw in response.iter_raw():
                yield from opening.push(raw)
            yield from opening.finish()

        yield pieces()
