"""HTTP/1.1 bits the data plane writes itself: heads, problem responses, hop-by-hop rules."""

from __future__ import annotations

from sealgate.protocol.public import headers
from sealgate.protocol.public.problem import MEDIA_TYPE, Problem

__all__ = ["problem_response", "json_response", "HOP_BY_HOP", "REASONS"]

#: Not forwarded as received: hop-by-hop fields (RFC 9110 7.6.1), plus the framing and
#: expectation fields the data plane re-creates itself (RFC 9112 6, RFC 9110 10.1.1).
HOP_BY_HOP = headers.HOP_BY_HOP | headers.FRAMING | {b"expect"}

REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    421: b"Misdirected Request",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}


def _response(
    status: int, content_type: bytes, body: bytes, close: bool, extra: list[tuple[bytes, bytes]]
) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s" % (status, REASONS.get(status, b"Status")),
        b"content-type: " + content_type,
        b"content-length: %d" % len(body),
        b"cache-control: no-store",
    ]
    lines += [name + b": " + value for name, value in extra]
    if close:
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def problem_response(
    problem: Problem, *, close: bool = False, retry_after: int | None = None
) -> bytes:
    """A complete ``application/problem+json`` response."""
    extra = [] if retry_after is None else [(b"retry-after", str(retry_after).encode())]
    return _response(problem.status, MEDIA_TYPE.encode(), problem.to_bytes(), close, extra)


def json_response(
    body: bytes, status: int = 200, content_type: bytes = b"application/json"
) -> bytes:
    """A complete response with a body the gateway generated itself."""
    return _response(status, content_type, body, False, [])
