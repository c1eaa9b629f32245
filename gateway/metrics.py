"""Prometheus metrics of the gateway: routing metadata only, summed over every worker.

The data plane counts in plain numbers (a dict increment and a bisect per request); they
become metric families only when ``/metrics`` is scraped. With ``--workers N`` each worker
also publishes a snapshot of its numbers to a directory the parent created before forking
(:func:`publish`, twice a second and on every scrape), and a scrape of any worker sums the
snapshots: counters over every worker that ever ran (a dead worker's counts stay), gauges
over live workers only (the parent marks a worker dead when it exits).

Why not prometheus_client's multiprocess mode: it writes every observation to a shared
mmap under a lock, about 6 µs per request against 0.4 µs for the plain counts, a few per
cent of a worker's whole budget per request in ``bench/gateway_bench.py``. A snapshot is at
most half a second behind, far below any scrape interval.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["GatewayMetrics", "mark_worker_dead"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)
_LIVE = "worker-{pid}.json"
_DEAD = "dead-{pid}.json"


def mark_worker_dead(directory: Path, pid: int) -> None:
    """The worker ``pid`` exited: keep its counts, drop its gauges from every sum."""
    with contextlib.suppress(FileNotFoundError):
        os.replace(directory / _LIVE.format(pid=pid), directory / _DEAD.format(pid=pid))


class _Numbers:
    """One worker's metrics as plain numbers (what a snapshot holds)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}  # (enclave, outcome) -> count
        self.latency: dict[str, list[float]] = {}  # outcome -> bucket counts..., +Inf, sum
        self.connect_failures: dict[str, int] = {}
        self.failovers: dict[str, int] = {}
        self.rejected_connections = 0
        self.enclave_healthy: dict[str, int] = {}
        self.active_streams = 0.0
        self.client_connections = 0.0

    def to_json(self, pid: int) -> dict[str, Any]:
        return {
            "pid": pid,
            "requests": [[e, o, n] for (e, o), n in self.requests.items()],
            "latency": self.latency,
            "connect_failures": self.connect_failures,
            "failovers": self.failovers,
            "rejected_connections": self.rejected_connections,
            "enclave_healthy": self.enclave_healthy,
            "active_streams": self.active_streams,
            "client_connections": self.client_connections,
        }


class _Sum:
    """Snapshots added up: counters from every worker, gauges from live ones."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], float] = {}
        self.latency: dict[str, list[float]] = {}
        self.connect_failures: dict[str, float] = {}
        self.failovers: dict[str, float] = {}
        self.rejected_connections = 0.0
        self.per_worker: dict[str, float] = {}
        self.enclave_healthy: dict[str, float] = {}
        self.active_streams = 0.0
        self.client_connections = 0.0
        self.workers = 0

    def add(self, snap: dict[str, Any], live: bool) -> None:
        total = 0.0
        for enclave, outcome, count in snap["requests"]:
            key = (str(enclave), str(outcome))
            self.requests[key] = self.requests.get(key, 0) + count
            total += count
        self.per_worker[str(snap["pid"])] = total
        for outcome, counts in snap["latency"].items():
            mine = self.latency.setdefault(outcome, [0.0] * (len(_BUCKETS) + 2))
            for i, value in enumerate(counts):
                mine[i] += value
        for name in ("connect_failures", "failovers"):
            into: dict[str, float] = getattr(self, name)
            for label, count in snap[name].items():
                into[label] = into.get(label, 0) + count
        self.rejected_connections += snap["rejected_connections"]
        if not live:
            return
        self.workers += 1
        self.active_streams += snap["active_streams"]
        self.client_connections += snap["client_connections"]
        for enclave, healthy in snap["enclave_healthy"].items():
            # Healthy only if it is in every live worker's routing table.
            self.enclave_healthy[enclave] = min(healthy, self.enclave_healthy.get(enclave, 1))


def _family(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    label: str,
    values: dict[str, float],
) -> Metric:
    """A family with one label, a sample per value (sorted by label)."""
    family = kind(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class GatewayMetrics:
    """One worker's metrics; ``shared`` is the directory of every worker's snapshot, if any."""

    def __init__(
        self,
        active_streams: Callable[[], float],
        connections: Callable[[], float],
        shared: Path | None = None,
    ) -> None:
        self._numbers = _Numbers()
        self._active_streams = active_streams
        self._connections = connections
        self._shared = shared
        self._pid = os.getpid()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    # -- counting (the data plane) ---------------------------------------------------------
    def record(self, enclave: str, outcome: str, seconds: float) -> None:
        """One finished request."""
        numbers = self._numbers
        key = (enclave, outcome)
        numbers.requests[key] = numbers.requests.get(key, 0) + 1
        buckets = numbers.latency.get(outcome)
        if buckets is None:
            buckets = numbers.latency[outcome] = [0.0] * (len(_BUCKETS) + 2)
        buckets[bisect.bisect_left(_BUCKETS, seconds)] += 1
        buckets[-1] += seconds

    def connect_failed(self, enclave: str) -> None:
        failures = self._numbers.connect_failures
        failures[enclave] = failures.get(enclave, 0) + 1

    def failed_over(self, reason: str) -> None:
        self._numbers.failovers[reason] = self._numbers.failovers.get(reason, 0) + 1

    def connection_rejected(self) -> None:
        self._numbers.rejected_connections += 1

    def set_healthy(self, enclave: str, healthy: bool) -> None:
        self._numbers.enclave_healthy[enclave] = 1 if healthy else 0

    def forget_enclave(self, enclave: str) -> None:
        """Drop per-enclave series of a member that left the fleet."""
        numbers = self._numbers
        for key in [k for k in numbers.requests if k[0] == enclave]:
            del numbers.requests[key]
        numbers.connect_failures.pop(enclave, None)
        numbers.enclave_healthy.pop(enclave, None)

    # -- sharing and scraping -----------------------------------------------------------------
    def publish(self) -> None:
        """Write this worker's snapshot for the other workers' scrapes (no-op alone)."""
        if self._shared is None:
            return
        self._refresh_gauges()
        path = self._shared / _LIVE.format(pid=self._pid)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self._numbers.to_json(self._pid)))
        os.replace(partial, path)  # readers see the old snapshot or the new one, never half

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every worker's metrics."""
        return generate_latest(self.registry)

    def _refresh_gauges(self) -> None:
        self._numbers.active_streams = self._active_streams()
        self._numbers.client_connections = self._connections()

    def _total(self) -> _Sum:
        self._refresh_gauges()
        total = _Sum()
        total.add(self._numbers.to_json(self._pid), live=True)
        if self._shared is None:
            return total
        self.publish()
        for path in sorted(self._shared.glob("*.json")):
            live = path.name.startswith("worker-")
            if path.name == _LIVE.format(pid=self._pid):
                continue
            try:
                snap = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # a worker that exited between the listing and the read
            total.add(snap, live)
        return total

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector protocol: every family, summed over workers."""
        total = self._total()
        requests = CounterMetricFamily(
            "sealgate_gateway_requests",
            "Requests by enclave (id) and outcome.",
            labels=["enclave", "outcome"],
        )
        for (enclave, outcome), count in sorted(total.requests.items()):
            requests.add_metric([enclave, outcome], count)
        yield requests
        latency = HistogramMetricFamily(
            "sealgate_gateway_request_duration_seconds",
            "Time from request head to the end of the response, by outcome class.",
            labels=["outcome"],
        )
        bounds = [*(str(b) for b in _BUCKETS), "+Inf"]
        for outcome, counts in sorted(total.latency.items()):
            cumulative = 0.0
            series = []
            for bound, observed in zip(bounds, counts[:-1], strict=True):
                cumulative += observed
                series.append((bound, cumulative))
            latency.add_metric([outcome], series, counts[-1])
        yield latency
        yield _family(
            CounterMetricFamily,
            "sealgate_gateway_worker_requests",
            "Requests by worker process (pid), to see how the workers share the load.",
            "pid",
            total.per_worker,
        )
        yield from self._gauges(total)
        yield from self._counters(total)

    @staticmethod
    def _gauges(total: _Sum) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "sealgate_gateway_workers", "Live worker processes.", value=total.workers
        )
        yield GaugeMetricFamily(
            "sealgate_gateway_active_streams",
            "Exchanges currently forwarded to an enclave (sum over live workers).",
            value=total.active_streams,
        )
        yield GaugeMetricFamily(
            "sealgate_gateway_client_connections",
            "Open client connections (sum over live workers).",
            value=total.client_connections,
        )
        yield _family(
            GaugeMetricFamily,
            "sealgate_gateway_enclave_healthy",
            "1 if the enclave is in every live worker's routing table, else 0.",
            "enclave",
            total.enclave_healthy,
        )

    @staticmethod
    def _counters(total: _Sum) -> Iterator[Metric]:
        yield _family(
            CounterMetricFamily,
            "sealgate_gateway_enclave_connect_failures",
            "Failed connections to an enclave.",
            "enclave",
            total.connect_failures,
        )
        yield _family(
            CounterMetricFamily,
            "sealgate_gateway_multi_failovers",
            "Multi-recipient requests passed to their next candidate, by reason "
            "(connect_failed, refused_421/422/503: all before the enclave opened them).",
            "reason",
            total.failovers,
        )
        yield CounterMetricFamily(
            "sealgate_gateway_rejected_connections",
            "Connections refused at the concurrent-connection limit.",
            value=total.rejected_connections,
        )
