"""The gateway process: data plane, fleet discovery and polling, local endpoints, shutdown.

Replicas share nothing: each one discovers and polls the fleet itself, so any
number can run behind an L4 load balancer or DNS.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sealgate.protocol.public.problem import PROBLEMS

from .config import GatewayConfig
from .directory import fleet_document
from .discovery import Discovery
from .fleet import Fleet
from .http11 import json_response, problem_response
from .metrics import GatewayMetrics
from .poller import Poller
from .proxy import ClientConnection, Exchange, UpstreamPool, access_record, format_access

__all__ = ["Gateway", "FLEET_PATH", "SourceRateLimiter", "carries_nonce", "source_key"]

log = logging.getLogger("sealgate.gateway")
access_log = logging.getLogger("sealgate.gateway.access")

FLEET_PATH = b"/.well-known/sealgate-fleet"


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


class Gateway:
    """One gateway worker."""

    def __init__(self, config: GatewayConfig, discovery: Discovery) -> None:
        self.config = config
        self.discovery = discovery
        self.fleet = Fleet()
        self.pool = UpstreamPool(self)
        self.connections: set[ClientConnection] = set()
        self.active_streams = 0
        self.draining = False
        self.now = time.monotonic()
        self.metrics = GatewayMetrics(lambda: self.active_streams, lambda: len(self.connections))
        self.poller = Poller(
            self.fleet, timeout=config.poll_timeout, attestation_refresh=config.attestation_refresh
        )
        self.local_paths = {FLEET_PATH, b"/healthz", b"/metrics"}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._fleet_cache: tuple[int, float, bytes] = (-1, 0.0, b"")
        self._known_ids: set[str] = set()
        self.nonce_limiter = (
            SourceRateLimiter(config.nonce_rate, config.nonce_burst, config.nonce_sources)
            if config.nonce_rate > 0
            else None
        )

    def nonce_wait(self, url: bytes, peer_host: Callable[[], str]) -> float:
        """0 if a request for ``url`` may go on, else seconds its source must wait (429).

        Only requests carrying a fresh nonce are counted: each one costs an enclave a
        hardware attestation, and the enclave's own budget is shared by every client.
        The source is the TCP peer: behind a load balancer that does not keep client
        addresses, every client shares one bucket.
        """
        if self.nonce_limiter is None or not carries_nonce(url):
            return 0.0
        return self.nonce_limiter.take(source_key(peer_host()))

    # -- local endpoints --------------------------------------------------------------------
    def local_response(self, path: bytes, method: bytes) -> bytes:
        """The complete response to a request for one of the gateway's own endpoints."""
        if method not in (b"GET", b"HEAD"):
            return problem_response(PROBLEMS.METHOD_NOT_ALLOWED("use GET"))
        response = self._local_get(path)
        if method == b"HEAD":  # the GET's head, Content-Length included; no body (RFC 9110 9.3.2)
            return response[: response.index(b"\r\n\r\n") + 4]
        return response

    def _local_get(self, path: bytes) -> bytes:
        if path == FLEET_PATH:
            version, built, body = self._fleet_cache
            if version != self.fleet.version or self.now - built > 1.0:
                body = fleet_document(self.fleet)
                self._fleet_cache = (self.fleet.version, self.now, body)
            return json_response(body)
        if path == b"/metrics":
            return json_response(
                generate_latest(self.metrics.registry), 200, CONTENT_TYPE_LATEST.encode()
            )
        healthy = self.fleet.healthy_count()
        body = json.dumps(
            {
                "status": "ok" if healthy else "no healthy enclave",
                "healthy_enclaves": healthy,
                "enclaves": len(self.fleet.members),
                "draining": self.draining,
            }
        ).encode()
        return json_response(body, 200 if healthy and not self.draining else 503)

    # -- per-exchange bookkeeping --------------------------------------------------------
    def record(self, exchange: Exchange) -> None:
        outcome = exchange.outcome or "ok"
        if outcome == "ok" and exchange.status >= 400:
            outcome = f"enclave_{exchange.status // 100}xx"
            exchange.outcome = outcome
        enclave = exchange.member.id if exchange.member is not None else "-"
        self.metrics.record(enclave, outcome, time.perf_counter() - exchange.started_at)
        if self.config.access_log and outcome != "local":
            access_log.info(format_access(access_record(exchange)))

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, sock: socket.socket) -> None:
        """Discover and poll once, then serve on ``sock`` (already bound)."""
        loop = asyncio.get_running_loop()
        await self.refresh_members()
        await self.poller.poll_all()
        self._server = await loop.create_server(
            lambda: ClientConnection(self), sock=sock, backlog=4096
        )
        self._tasks = [
            loop.create_task(self._every(0.5, self._sweep)),
            loop.create_task(self._every(self.config.poll_interval, self.poller.poll_all)),
            loop.create_task(self._every(self.config.discovery_interval, self.refresh_members)),
        ]

    async def refresh_members(self) -> None:
        urls = await self.discovery.members()
        added, removed = self.fleet.set_members(urls)
        for url in removed:
            self.pool.close_member(url)
            self.poller.forget(url)
        for url in added:
            log.info("enclave joined: %s", url)
        for url in removed:
            log.info("enclave left: %s", url)
        if added:
            await asyncio.gather(*(self.poller.poll(self.fleet.members[u]) for u in added))
        current = {m.id for m in self.fleet.members.values()}
        for member in self.fleet.members.values():
            self.metrics.enclave_healthy.labels(member.id).set(1 if member.healthy else 0)
        for gone in self._known_ids - current:
            self.metrics.forget_enclave(gone)
        self._known_ids = current

    async def _sweep(self) -> None:
        self.now = now = time.monotonic()
        for conn in list(self.connections):
            conn.check_timeouts(now)
        self.pool.sweep(now, self.config.pool_idle_timeout)
        for member in self.fleet.members.values():
            self.metrics.enclave_healthy.labels(member.id).set(1 if member.healthy else 0)

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:  # a background job must never take the data plane down
                log.exception("background job %s failed", getattr(job, "__name__", job))

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight exchanges finish (up to drain_timeout), close."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if not conn.queue:
                conn.close()  # idle keep-alive connections go now
        deadline = time.monotonic() + self.config.drain_timeout
        while any(c.queue for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.pool.close_all()
        await self.poller.aclose()
        if self._server is not None:
            await self._server.wait_closed()
