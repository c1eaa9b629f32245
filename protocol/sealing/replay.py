"""Replay rejection for sealed requests (RFC 9458 §6.9), sans-IO.

A sealed request carries its creation time (the BHTTP ``Date`` field) inside the
encryption. The enclave accepts it only within ``window`` seconds of its own clock
and remembers the request's encapsulated key (``enc``, unique per HPKE context) until
the request could no longer be accepted anyway (``date + window``). A second use of
the same ``enc`` inside that time is a replay; after it, the date check refuses it.

Memory is bounded: at most ``capacity`` keys are remembered, each a 16-byte digest of
``enc`` with its expiry in a dict and a heap: at most :data:`ENTRY_BYTES` (256) bytes
each in CPython 3.11 (160-200 measured with tracemalloc, depending on where the dict
is in its growth; tests/protocol/test_padding_and_replay.py checks it), so the
default 100,000 entries take under 26 MB. When the cache is full of keys that are
still inside their window, new requests are refused with :class:`ReplayCacheFull`
(503, retry later) rather than forgetting an old key, which would re-open a replay.
Size ``capacity`` for the enclave's maximum request rate times twice the window.

Keys live only in memory and are regenerated when the enclave restarts, so a request
captured before a restart cannot be replayed after it: no key can open it.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from ..public.errors import ProtocolError, ReplayedRequest

__all__ = [
    "ReplayGuard",
    "StaleRequest",
    "ReplayCacheFull",
    "DEFAULT_WINDOW",
    "DEFAULT_CAPACITY",
    "ENTRY_BYTES",
    "http_date",
    "parse_http_date",
]

DEFAULT_WINDOW = 60.0
DEFAULT_CAPACITY = 100_000
#: Upper bound of the memory one remembered request costs (see the module docstring).
ENTRY_BYTES = 256


class StaleRequest(ReplayedRequest):
    """The request's ``Date`` is missing or outside the window; re-seal with a corrected clock.

    ``server_time`` is the enclave's clock (RFC 9458 §6.9.2): a client adds the
    difference to its own clock and seals a new request (never re-sends this one).
    """

    def __init__(self, message: str, server_time: float) -> None:
        super().__init__(message)
        self.server_time = server_time


class ReplayCacheFull(ProtocolError):
    """Too many requests inside one window to remember them all; retry shortly."""

    status_hint = 503

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def http_date(unix_seconds: float) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7) for ``unix_seconds``."""
    return _imf_fixdate(int(unix_seconds))


@functools.lru_cache(maxsize=4)  # one date per second serves every request in it
def _imf_fixdate(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC), usegmt=True)


@functools.lru_cache(maxsize=64)  # requests in the same second carry the same date
def parse_http_date(value: str) -> float | None:
    """Seconds since the epoch of an HTTP date, or None if it does not parse."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


class ReplayGuard:
    """Remembers accepted encapsulated keys for their window; refuses repeats and stale dates."""

    def __init__(self, window: float = DEFAULT_WINDOW, capacity: int = DEFAULT_CAPACITY) -> None:
        if window <= 0 or capacity <= 0:
            raise ValueError("window and capacity must be positive")
        self.window = window
        self.capacity = capacity
        self._seen: dict[bytes, float] = {}
        self._expiry: list[tuple[float, bytes]] = []
        self.replays = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, key = heapq.heappop(self._expiry)
            self._seen.pop(key, None)

    def seen(self, enc: bytes, now: float) -> bool:
        """Whether ``enc`` was accepted and is still remembered (a cheap early check)."""
        self._expire(now)
        return hashlib.sha256(enc).digest()[:16] in self._seen

    def accept(self, enc: bytes, date: str | None, now: float) -> None:
        """Accept a request once; raise :class:`ReplayedRequest` (or a subclass) otherwise.

        Check and insert happen together, so two concurrent copies of one request
        cannot both pass.
        """
        self._expire(now)
        key = hashlib.sha256(enc).digest()[:16]
        if key in self._seen:
            self.replays += 1
            raise ReplayedRequest(
                "this sealed request was already received: seal every request anew"
            )
        sent = parse_http_date(date) if date is not None else None
        if sent is None:
            self.stale += 1
            raise StaleRequest(
                "the sealed request has no valid Date: seal it with the current time", now
            )
        if abs(now - sent) > self.window:
            self.stale += 1
            raise StaleRequest(
                f"the sealed request is dated {now - sent:+.0f}s from the enclave's clock, outside "
                f"the ±{self.window:.0f}s window: correct the clock by the enclave's time and "
                "seal a new request",
                now,
            )
        if len(self._seen) >= self.capacity:
            retry = self._expiry[0][0] - now if self._expiry else self.window
            raise ReplayCacheFull(
                "too many sealed requests inside one replay window; retry shortly",
                max(retry, 0.1),
            )
        expires = sent + self.window
        self._seen[key] = expires
        heapq.heappush(self._expiry, (expires, key))
