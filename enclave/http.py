"""Small raw-ASGI helpers: problem responses and header filtering."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from sealgate.protocol.public.headers import ENCAPSULATION_PREFIXES, FRAMING, HOP_BY_HOP
from sealgate.protocol.public.problem import MEDIA_TYPE, Problem

__all__ = ["Receive", "Send", "Scope", "send_problem", "forwardable_request_headers"]

# What the enclave sets itself for the engine hop (length, Accept-Encoding) or that
# belongs to the client's hop only.
_NOT_FORWARDED = HOP_BY_HOP | FRAMING | {b"host", b"expect", b"accept-encoding"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def send_problem(
    send: Send,
    problem: Problem,
    *,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a complete plaintext problem+json response."""
    body = problem.to_bytes()
    headers = [
        (b"content-type", MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def forwardable_request_headers(
    headers: Iterable[tuple[bytes, bytes]], content_length: int
) -> list[tuple[bytes, bytes]]:
    """Headers for the engine: no hop-by-hop, host, length or encapsulation headers, and
    ``Accept-Encoding: identity`` whatever the client accepts.

    The client's Accept-Encoding describes the sealed body it receives, not the engine's
    answer, and compressing a response before sealing it would leak how well its secrets
    compress next to attacker-chosen text through the ciphertext length (CRIME/BREACH). So
    the engine is asked for identity, and whatever it compresses anyway is decoded before
    sealing (:func:`sealgate.enclave.engines.encoding.identity_body`).
    """
    kept = [
        (name, value)
        for name, value in headers
        if name not in _NOT_FORWARDED and not name.startswith(ENCAPSULATION_PREFIXES)
    ]
    kept.append((b"content-length", str(content_length).encode()))
    kept.append((b"accept-encoding", b"identity"))
    return kept
