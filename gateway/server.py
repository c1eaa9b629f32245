"""The gateway process: fleet discovery and polling, the data plane, shutdown.

Replicas share nothing: each one discovers and polls the fleet itself, so any
number can run behind an L4 load balancer or DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sealgate.protocol.public.logs import fields

from .config import GatewayConfig
from .discovery import Discovery
from .fleet import Fleet
from .local import LocalEndpoints
from .metrics import GatewayMetrics
from .poller import Poller
from .proxy import DataPlane
from .ratelimit import NonceLimiter

__all__ = ["Gateway"]

log = logging.getLogger("sealgate.gateway")

_SWEEP_INTERVAL = 0.5  # seconds between timeout checks (and metric snapshots)


class Gateway:
    """One gateway worker: discovery and polling keep ``fleet`` current; ``plane`` serves."""

    def __init__(
        self, config: GatewayConfig, discovery: Discovery, *, metrics_dir: Path | None = None
    ) -> None:
        self.config = config
        self.discovery = discovery
        self.fleet = Fleet()
        self.metrics = GatewayMetrics(
            lambda: self.plane.active_streams, lambda: len(self.plane.connections), metrics_dir
        )
        self.local = LocalEndpoints(self.fleet, self.metrics)
        self.plane = DataPlane(
            config,
            self.fleet,
            self.metrics,
            self.local,
            NonceLimiter(config.nonce_rate, config.nonce_burst, config.nonce_sources),
        )
        self.poller = Poller(
            self.fleet, timeout=config.poll_timeout, attestation_refresh=config.attestation_refresh
        )
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._known_ids: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, sock: socket.socket) -> None:
        """Discover and poll once, then serve on ``sock`` (already bound)."""
        loop = asyncio.get_running_loop()
        await self.refresh_members()
        await self.poller.poll_all()
        self._server = await loop.create_server(self.plane.connection, sock=sock, backlog=4096)
        self._tasks = [
            loop.create_task(self._every(_SWEEP_INTERVAL, self._sweep)),
            loop.create_task(self._every(self.config.poll_interval, self.poller.poll_all)),
            loop.create_task(self._every(self.config.discovery_interval, self.refresh_members)),
        ]

    async def refresh_members(self) -> None:
        urls = await self.discovery.members()
        added, removed = self.fleet.set_members(urls)
        for url in removed:
            self.plane.pool.close_member(url)
            self.poller.forget(url)
            log.info("enclave left", extra=fields(peer=url))
        for url in added:
            log.info(
                "enclave joined", extra=fields(peer=url, enclave_id=self.fleet.members[url].id)
            )
        if added:
            await asyncio.gather(*(self.poller.poll(self.fleet.members[u]) for u in added))
        current = {m.id for m in self.fleet.members.values()}
        self._publish_health()
        for gone in self._known_ids - current:
            self.metrics.forget_enclave(gone)
        self._known_ids = current

    def _publish_health(self) -> None:
        for member in self.fleet.members.values():
            self.metrics.set_healthy(member.id, member.healthy)

    async def _sweep(self) -> None:
        self.plane.sweep(time.monotonic())
        self._publish_health()
        self.metrics.publish()

    async def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:  # a background job must never take the data plane down
                name = getattr(job, "__name__", "job")
                log.exception(f"background job {name} failed")

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight exchanges finish (up to drain_timeout), close."""
        if self._server is not None:
            self._server.close()
        await self.plane.drain(self.config.drain_timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.metrics.publish()  # this worker's final counts stay in every scrape
        await self.poller.aclose()
        if self._server is not None:
            await self._server.wait_closed()
