"""Undo an engine's Content-Encoding, so the enclave only ever seals identity bodies.

The enclave asks the engine for ``Accept-Encoding: identity``; an engine that compresses
anyway is decoded here, chunk by chunk, so a token stream is still released token by
token. Compressing before encrypting would be a length side channel (CRIME/BREACH: how
well a secret compresses next to attacker-chosen text shows in the ciphertext size), and
the client could not undo an encoding whose header the enclave does not forward.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from .base import EngineUnavailable, RawHeaders

__all__ = ["identity_body"]

#: Decompressed bytes produced per step, so one compressed chunk never expands in one go.
_STEP = 64 * 1024
# zlib window bits (RFC 9110 §8.4.1): gzip (RFC 1952) and zlib-wrapped deflate (RFC 1950).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def identity_body(headers: RawHeaders, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``body`` with every coding named in its Content-Encoding headers undone.

    Raises :class:`EngineUnavailable` for a coding the enclave cannot decode (it fails
    closed rather than seal bytes the client cannot read).
    """
    codings = [
        coding.strip().lower()
        for name, value in headers
        if name.lower() == b"content-encoding"
        for coding in value.decode("latin-1").split(",")
        if coding.strip() and coding.strip().lower() != "identity"
    ]
    for coding in codings:
        if coding not in _WBITS:
            raise EngineUnavailable(
                f"the engine answered with Content-Encoding {coding!r}, which the enclave cannot "
                "decode; configure the engine not to compress (the enclave asks for identity)"
            )
    # Codings are listed in the order they were applied (RFC 9110 §8.4): undo the last first.
    for coding in reversed(codings):
        body = _decompressed(body, coding)
    return body


async def _decompressed(body: AsyncIterator[bytes], coding: str) -> AsyncIterator[bytes]:
    wbits = _WBITS[coding]
    decoder = zlib.decompressobj(wbits)
    received = False
    try:
        async for chunk in body:
            received = received or bool(chunk)
            pending = chunk
            while pending:  # each step consumes input or yields output
                if decoder.eof:  # bytes after the end of the compressed stream
                    if coding == "deflate":
                        raise EngineUnavailable("the engine sent data after its deflate stream")
                    decoder = zlib.decompressobj(wbits)  # another gzip member (RFC 1952 §2.2)
                data = decoder.decompress(pending, _STEP)
                pending = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
                if data:
                    yield data
    except zlib.error as exc:
        raise EngineUnavailable(f"the engine's {coding} body is corrupt ({exc})") from None
    if received and not decoder.eof:
        raise EngineUnavailable(f"the engine's {coding} body ended early")
