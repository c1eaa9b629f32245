"""HTTP header rules every sealgate hop applies (RFC 9110 §7.6.1 hop-by-hop fields)."""

from __future__ import annotations

__all__ = ["HOP_BY_HOP", "ENCAPSULATION_PREFIXES"]

#: Connection-specific fields that a proxy must not forward (lower-case bytes, as ASGI and
#: httptools give them).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

#: Prefixes of the encapsulation headers; they stop at the enclave, never reach the engine.
ENCAPSULATION_PREFIXES = (b"sealgate-", b"ehbp-")
