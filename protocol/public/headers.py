"""Header names sealgate defines, and the header rules every sealgate hop applies.

Names are given once, in their canonical spelling; servers that see lower-case bytes
(ASGI, httptools) use :func:`wire`.
"""

from __future__ import annotations

__all__ = [
    "ANSWERED_BY",
    "ENCAPSULATION_PREFIXES",
    "FRAMING",
    "HOP_BY_HOP",
    "KEY_ID",
    "ROUTE_TAG",
    "VERIFIED_ENCLAVE",
    "wire",
]

#: Request, in the clear: the fingerprint of the key a request is sealed to, so the gateway
#: can route it to an enclave holding that key without reading anything sealed.
KEY_ID = "Sealgate-Key-Id"
#: Request, in the clear: an opaque client-chosen tag the gateway may use for stickiness
#: (it never sees a model name or a prompt).
ROUTE_TAG = "Sealgate-Route-Tag"
#: Response, added by the client SDK after it opened the response: which attested enclave
#: answered. Any copy arriving from the network is dropped first.
VERIFIED_ENCLAVE = "Sealgate-Verified-Enclave"
#: Response, added by the client SDK to answers it produced itself (the model list).
ANSWERED_BY = "Sealgate-Answered-By"

#: Connection-specific fields that a proxy must not forward (RFC 9110 §7.6.1).
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
#: Fields that describe one hop's message framing; each hop recomputes them.
FRAMING = frozenset({b"content-length", b"transfer-encoding"})

#: Prefixes of the encapsulation headers; they stop at the enclave, never reach the engine.
ENCAPSULATION_PREFIXES = (b"sealgate-", b"ehbp-")


def wire(name: str) -> bytes:
    """``name`` as servers compare it: lower-case bytes."""
    return name.lower().encode("ascii")
