"""The engine's slots: ``max_concurrent_requests`` exchanges with the engine at once.

A request takes a slot only once its body is complete and authenticated (while it
arrives it is the :mod:`.intake`'s), and is refused 503 with ``Retry-After`` when none
is free: before its body is read, and again before it is forwarded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import Gauge
from sealgate.protocol.public.problem import PROBLEMS

from .exchange import Outcome, Refused, retry_after

__all__ = ["EngineSlots"]


class EngineSlots:
    """Counts the requests holding an engine slot; refuses beyond ``limit``."""

    def __init__(self, limit: int, retry_after_seconds: int, gauge: Gauge) -> None:
        self.limit = limit
        self._retry_after = retry_after(retry_after_seconds)
        self._gauge = gauge
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Requests holding a slot (body complete, exchange with the engine running)."""
        return self._in_flight

    @property
    def load(self) -> float:
        """The share of slots taken (``/healthz`` reports it)."""
        return self._in_flight / self.limit

    def check(self, detail: str = "the enclave is at its concurrency limit") -> None:
        """Raise :class:`Refused` (503 overloaded) unless a slot is free now."""
        if self._in_flight >= self.limit:
            raise Refused(PROBLEMS.OVERLOADED(detail), Outcome.OVERLOADED, self._retry_after)

    def take(self) -> None:
        """Hold a slot (whether or not one is free: :meth:`check` first)."""
        self._in_flight += 1
        self._gauge.inc()

    def give_back(self) -> None:
        self._in_flight -= 1
        self._gauge.dec()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold a slot for the duration of the ``with`` block."""
        self.take()
        try:
            yield
        finally:
            self.give_back()
