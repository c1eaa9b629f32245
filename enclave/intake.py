"""Receiving request bodies: time limits per body, one byte budget over all of them.

Anyone can build a valid sealed head from a public key, so a body still arriving holds
no engine slot (:mod:`.slots`); instead it is held to an idle timeout, a total deadline
and a minimum average rate (408), and every body byte the enclave holds counts against
``max_buffered_body_bytes`` (503), which bounds their memory. Both modes read their
bodies through one :class:`BodyIntake`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sealgate.protocol.public.problem import PROBLEMS

from .config import EnclaveConfig
from .exchange import ClientGone, Exchange, Outcome, Refused, retry_after
from .http import Receive
from .metrics import EnclaveMetrics

__all__ = ["BodyIntake", "body_deadline"]


class BodyIntake:
    """Feeds request bodies to their decoders within the limits of ``config``."""

    def __init__(self, config: EnclaveConfig, metrics: EnclaveMetrics) -> None:
        self._config = config
        self._metrics = metrics
        self._receiving = 0
        self._buffered = 0

    @property
    def receiving(self) -> int:
        """Requests whose body is still arriving (they hold no engine slot)."""
        return self._receiving

    @property
    def buffered_bytes(self) -> int:
        """Request body bytes held now, counted against ``max_buffered_body_bytes``."""
        return self._buffered

    async def read(self, receive: Receive, take: Callable[[bytes], None], ex: Exchange) -> None:
        """Feed body chunks to ``take`` until the body ends; raise :class:`Refused` (408,
        413, 503) or :class:`ClientGone`. The bytes stay counted until :meth:`release`."""
        self._receiving += 1
        self._metrics.receiving_bodies.inc()
        try:
            await self._read(receive, take, ex)
        finally:
            self._receiving -= 1
            self._metrics.receiving_bodies.dec()

    def release(self, ex: Exchange) -> None:
        """The exchange is over: its body no longer counts against the budget."""
        self._buffered -= ex.buffered
        ex.buffered = 0

    async def _read(self, receive: Receive, take: Callable[[bytes], None], ex: Exchange) -> None:
        config = self._config
        started = last = time.monotonic()
        while True:
            deadline, reason = body_deadline(config, started, last, ex.bytes_in)
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                raise Refused(PROBLEMS.REQUEST_TIMEOUT(reason), Outcome.TIMEOUT) from None
            last = time.monotonic()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            ex.bytes_in += len(chunk)
            if ex.bytes_in > config.max_body_size + config.max_frame_size:
                raise Refused(
                    PROBLEMS.BODY_TOO_LARGE("request body is too large"), Outcome.TOO_LARGE
                )
            if chunk:
                ex.buffered += len(chunk)
                self._buffered += len(chunk)
                if self._buffered > config.max_buffered_body_bytes:
                    raise Refused(
                        PROBLEMS.OVERLOADED("the enclave holds too many request bodies"),
                        Outcome.OVERLOADED,
                        retry_after(config.retry_after),
                    )
                take(chunk)
            if not message.get("more_body", False):
                return


def body_deadline(
    config: EnclaveConfig, started: float, last: float, received: int
) -> tuple[float, str]:
    """When a body still arriving times out, and why.

    The earliest of: its idle timeout, its total deadline, and the moment its average
    rate since the head falls below the minimum (never before the grace period).
    """
    limits = [
        (last + config.body_timeout, f"no request body data for {config.body_timeout:g} seconds"),
        (
            started + config.body_deadline,
            f"the request body was not complete within {config.body_deadline:g} seconds",
        ),
    ]
    if config.body_min_rate > 0:
        # received / elapsed < rate  <=>  elapsed > received / rate
        at = started + max(config.body_min_rate_grace, received / config.body_min_rate)
        limits.append(
            (at, f"the request body arrived slower than {config.body_min_rate:g} bytes/second")
        )
    return min(limits)
