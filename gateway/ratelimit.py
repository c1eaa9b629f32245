"""The per-source limit on fresh-nonce attestation requests.

Each request carrying a ``nonce`` costs an enclave a hardware attestation, and the
enclave's own budget is shared by every client: one source must not use it up. The
source is the TCP peer (an IPv4 address or an IPv6 /64); behind a load balancer that does
not keep client addresses, every client shares one bucket.
"""

from __future__ import annotations

import collections
import ipaddress
import time
from collections.abc import Callable
from urllib.parse import unquote_plus

__all__ = ["NonceLimiter", "SourceRateLimiter", "carries_nonce", "source_key"]


def carries_nonce(url: bytes) -> bool:
    """True if the request target has a ``nonce`` query parameter, however it is spelled.

    Any path counts (the enclave only honours it on its attestation endpoint, but a
    percent-encoded or absolute-form target must not slip past), and the name is compared
    after percent-decoding, case-insensitively.
    """
    _, sep, query = url.partition(b"?")
    if not sep:
        return False
    query = query.partition(b"#")[0]
    if b"nonce" not in query.lower() and b"%" not in query:
        return False
    for part in query.split(b"&"):
        name = part.partition(b"=")[0].decode("latin-1")
        if unquote_plus(name).strip().lower() == "nonce":
            return True
    return False


def source_key(host: str) -> str:
    """What a per-source limit counts: an IPv4 address, or an IPv6 /64 (one subscriber's
    allocation, so rotating through it gains nothing)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class SourceRateLimiter:
    """A token bucket per client address: ``rate`` per second, ``burst`` saved up.

    Memory is bounded: at most ``max_sources`` addresses are tracked and the least recently
    seen one is forgotten first (a forgotten source starts again with a full bucket).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        max_sources: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.max_sources = max(1, max_sources)
        self._clock = clock
        self._buckets: collections.OrderedDict[str, list[float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, source: str) -> float:
        """Take a token for ``source``: 0 if allowed, else seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[source] = [float(self.burst), now]
        else:
            self._buckets.move_to_end(source)
            bucket[0] = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1:
            bucket[0] -= 1
            return 0.0
        return (1 - bucket[0]) / self.rate


class NonceLimiter:
    """Counts only requests that carry a fresh nonce, per source (``rate`` 0: no limit)."""

    def __init__(self, rate: float, burst: int, max_sources: int) -> None:
        self._buckets = SourceRateLimiter(rate, burst, max_sources) if rate > 0 else None

    def wait(self, url: bytes, peer_host: Callable[[], str]) -> float:
        """0 if a request for ``url`` may go on, else seconds its source must wait (429)."""
        if self._buckets is None or not carries_nonce(url):
            return 0.0
        return self._buckets.take(source_key(peer_host()))
