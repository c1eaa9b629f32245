"""A minimal sealed-HTTP caller built from the protocol objects, for server tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
from sealgate.protocol import SEALGATE, KeyConfig, Mode, RequestEncoder


@dataclass
class SealedResult:
    status: int
    headers: httpx.Headers
    chunks: list[bytes] = field(default_factory=list)
    encrypted: bool = False

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def sealed_request(
    client: httpx.Client,
    method: str,
    url: str,
    key: KeyConfig,
    body: bytes = b"",
    *,
    mode: Mode = SEALGATE,
    headers: dict[str, str] | None = None,
) -> SealedResult:
    """Seal ``body``, send it, and open the response (or return a plaintext one as is)."""
    encoder = RequestEncoder(key, mode)
    wire = encoder.finish(body)
    all_headers = {**(headers or {}), **encoder.headers, "content-type": "application/json"}
    with client.stream(method, url, content=wire, headers=all_headers) as response:
        nonce = response.headers.get(mode.response_nonce_header)
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
    from sealgate.protocol import decode_key_configs

    response = client.get(base_url + "/.well-known/hpke-keys")
    response.raise_for_status()
    return decode_key_configs(response.content)[0]


@contextlib.contextmanager
def sealed_stream(
    client: httpx.Client, url: str, key: KeyConfig, body: bytes = b"{}"
) -> Iterator[Iterator[bytes]]:
    """POST a sealed body; yield the decrypted, non-empty frames as they arrive.

    Exhausting the iterator also checks the end-of-message marker (``finish()``).
    """
    encoder = RequestEncoder(key, SEALGATE)
    with client.stream(
        "POST", url, content=encoder.finish(body), headers=encoder.headers
    ) as response:
        decoder = encoder.response_decoder(response.headers["sealgate-response-nonce"])

        def frames() -> Iterator[bytes]:
            for raw in response.iter_raw():
                yield from (chunk for chunk in decoder.push(raw) if chunk)
            decoder.finish()

        yield frames()
