"""The header rules of :mod:`sealgate.protocol.public.headers`, spelled as httpx gives names.

httpx hands the client ``str`` names; the protocol defines the rules once, as the
lower-case bytes servers compare. Nothing here adds a name: each set is built from there.
"""

from __future__ import annotations

from collections.abc import Iterable

from sealgate.protocol.public.headers import ENCAPSULATION_PREFIXES, FRAMING, HOP_BY_HOP

__all__ = ["ENCAPSULATION", "FRAMING_NAMES", "HOP", "NOT_FORWARDED", "names"]


def names(fields: Iterable[bytes]) -> frozenset[str]:
    """Wire names (lower-case bytes) as lower-case ``str``."""
    return frozenset(field.decode("ascii") for field in fields)


#: One message's framing: recomputed for each message, never copied into another.
FRAMING_NAMES = names(FRAMING)
#: Connection-specific and framing fields (RFC 9110 §7.6.1): one hop's, never passed on.
HOP = names(HOP_BY_HOP | FRAMING)
#: What a client or a forwarding proxy never copies from one message into the next: the
#: hop's own fields, and ``Host`` (each request names its own target).
NOT_FORWARDED = HOP | {"host"}
#: Prefixes of the encapsulation headers the SDK writes itself (a caller's copy is dropped).
ENCAPSULATION = tuple(prefix.decode("ascii") for prefix in ENCAPSULATION_PREFIXES)
