"""The routing table: which enclaves exist, which keys they hold, whether they are up.

Everything here is public metadata (URLs, key fingerprints, health, the attestation
documents the enclaves published). Nothing can decrypt. A circuit breaker takes an
enclave out of rotation after a failure and lets it back after a successful probe,
with exponential backoff between probes.

Clients that send no key id (EHBP clients such as Tinfoil's) fetch one key from
``/.well-known/hpke-keys`` and seal every request to it; nothing in such a request
says which key it was sealed to (``Ehbp-Encapsulated-Key`` is the client's ephemeral
share). So one *primary* enclave answers key discovery and receives those requests:
the healthy member with the lowest id, kept until it goes unhealthy or leaves, then
again the lowest id, so replicas with the same view of health agree. Members that
were primary before are offered first when such a request has to be tried elsewhere.
"""

from __future__ import annotations

import enum
import hashlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Member", "Fleet", "Route", "RouteStatus"]


class RouteStatus(enum.Enum):
    """Whether a request can be routed, and if not, why."""

    OK = "ok"
    UNKNOWN_KEY = "unknown_key"  # no member holds the key: the client re-encrypts (421)
    DOWN = "down"  # the member (or every member) is out of rotation: 503, retry later


@dataclass(slots=True)
class Member:
    """One enclave as the gateway sees it."""

    url: str
    id: str
    host: str
    port: int
    keys: tuple[str, ...] = ()
    healthy: bool = False
    load: float = 0.0
    attestation: bytes | None = None  # raw JSON of the enclave's latest published document
    failures: int = 0
    retry_at: float = 0.0  # circuit open until this time (monotonic)
    in_flight: int = 0
    last_error: str = ""
    ok_route: Route = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ok_route = Route(RouteStatus.OK, self)  # one immutable object, reused per request

    @classmethod
    def from_url(cls, url: str) -> Member:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"enclave URL must be http://host:port, got {url!r}")
        port = parts.port or 80
        member_id = hashlib.sha256(url.encode()).hexdigest()[:12]
        return cls(url=url.rstrip("/"), id=member_id, host=parts.hostname, port=port)


@dataclass(frozen=True, slots=True)
class Route:
    status: RouteStatus
    member: Member | None = None
    retry_after: int = 1


_UNKNOWN = Route(RouteStatus.UNKNOWN_KEY)
_FORMER_PRIMARIES = 8  # how many former primaries are remembered


class Fleet:
    """Members, the fingerprint → member map and the circuit breakers."""

    def __init__(
        self,
        *,
        base_backoff: float = 0.5,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.members: dict[str, Member] = {}
        self._by_key: dict[str, Member] = {}
        self._primary: Member | None = None
        self._former_primaries: list[str] = []  # URLs, most recent first
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self.version = 0  # bumped on every change clients can see

    # -- membership -----------------------------------------------------------------
    def set_members(self, urls: Iterable[str]) -> tuple[list[str], list[str]]:
        """Make the member set equal to ``urls``; return (added, removed)."""
        wanted = {u.rstrip("/") for u in urls}
        added = [u for u in wanted if u not in self.members]
        removed = [u for u in self.members if u not in wanted]
        for url in added:
            self.members[url] = Member.from_url(url)
        for url in removed:
            del self.members[url]
        if added or removed:
            self._reindex()
        return added, removed

    def _reindex(self) -> None:
        self._by_key = {key: m for m in self.members.values() for key in m.keys}
        self.version += 1

    # -- health and keys --------------------------------------------------------------
    def update(
        self, member: Member, keys: tuple[str, ...], load: float, attestation: bytes | None
    ) -> None:
        """Record a successful poll: keys, load hint, document; close the breaker."""
        changed = keys != member.keys or not member.healthy or attestation != member.attestation
        member.keys = keys
        member.load = load
        if attestation is not None:
            member.attestation = attestation
        member.healthy = True
        member.failures = 0
        member.retry_at = 0.0
        member.last_error = ""
        if changed:
            self._reindex()

    def fail(self, member: Member, reason: str) -> None:
        """Open the breaker: out of rotation until a probe succeeds after the backoff."""
        member.failures += 1
        member.last_error = reason
        backoff = min(self.max_backoff, self.base_backoff * 2 ** (member.failures - 1))
        member.retry_at = self._clock() + backoff * (0.75 + random.random() / 2)  # noqa: S311
        if member.healthy:
            member.healthy = False
            self.version += 1

    def due_for_probe(self, member: Member) -> bool:
        return member.healthy or self._clock() >= member.retry_at

    # -- routing ------------------------------------------------------------------------
    def route(self, fingerprint: str) -> Route:
        """The member holding ``fingerprint``, or why there is none."""
        member = self._by_key.get(fingerprint)
        if member is None:
            return _UNKNOWN
        if not member.healthy:
            wait = max(1, int(member.retry_at - self._clock() + 0.999))
            return Route(RouteStatus.DOWN, member, wait)
        return member.ok_route

    def primary(self) -> Route:
        """The member answering key discovery and requests sealed without a key id."""
        member = self._primary
        if member is None or not member.healthy or self.members.get(member.url) is not member:
            member = self._choose_primary()
            if member is None:
                return Route(RouteStatus.DOWN, None, 1)
        return member.ok_route

    def _choose_primary(self) -> Member | None:
        healthy = [m for m in self.members.values() if m.healthy]
        if not healthy:
            return None
        chosen = min(healthy, key=lambda m: m.id)
        old = self._primary
        if old is not None:
            former = [old.url] + [u for u in self._former_primaries if u != old.url]
            self._former_primaries = former[:_FORMER_PRIMARIES]
        self._primary = chosen
        self.version += 1
        return chosen

    @property
    def primary_id(self) -> str | None:
        """The current primary's id (None while no member is healthy)."""
        route = self.primary()
        return route.member.id if route.member is not None else None

    def fallback(self, tried: Iterable[Member]) -> Member | None:
        """Where to offer a request without key id that the members in ``tried`` refused.

        Former primaries first (most recent first: clients may still hold their keys),
        then the least busy of the rest; None when every healthy member was tried.
        """
        skip = {m.url for m in tried}
        candidates = [m for m in self.members.values() if m.healthy and m.url not in skip]
        if not candidates:
            return None
        rank = {url: i for i, url in enumerate(self._former_primaries)}
        last = len(rank)
        return min(candidates, key=lambda m: (rank.get(m.url, last), m.in_flight, m.id))

    def any_healthy(self) -> Route:
        """A healthy member for plaintext requests: random among the least loaded."""
        healthy = [m for m in self.members.values() if m.healthy]
        if not healthy:
            return Route(RouteStatus.DOWN, None, 1)
        best = min(m.in_flight for m in healthy)
        return Route(RouteStatus.OK, random.choice([m for m in healthy if m.in_flight == best]))  # noqa: S311

    def healthy_count(self) -> int:
        return sum(1 for m in self.members.values() if m.healthy)
