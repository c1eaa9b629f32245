"""Prometheus metrics of the gateway: routing metadata only."""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

__all__ = ["GatewayMetrics"]


_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)


class _RequestStats:
    """Request counts and latency buckets as plain numbers on the hot path.

    Updating prometheus_client's Counter and Histogram costs a lock and a bucket loop per
    request; this keeps a dict increment and a bisect, and hands the totals to
    prometheus_client as metric families when ``/metrics`` is scraped.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.latency: dict[str, list[float]] = {}  # outcome -> bucket counts..., +Inf, sum

    def record(self, enclave: str, outcome: str, seconds: float) -> None:
        key = (enclave, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1
        buckets = self.latency.get(outcome)
        if buckets is None:
            buckets = self.latency[outcome] = [0.0] * (len(_BUCKETS) + 2)
        buckets[bisect.bisect_left(_BUCKETS, seconds)] += 1
        buckets[-1] += seconds

    def forget(self, enclave: str) -> None:
        for key in [k for k in self.counts if k[0] == enclave]:
            del self.counts[key]

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "sealgate_gateway_requests",
            "Requests by enclave (id) and outcome.",
            labels=["enclave", "outcome"],
        )
        for (enclave, outcome), count in sorted(self.counts.items()):
            requests.add_metric([enclave, outcome], count)
        yield requests
        latency = HistogramMetricFamily(
            "sealgate_gateway_request_duration_seconds",
            "Time from request head to the end of the response, by outcome class.",
            labels=["outcome"],
        )
        bounds = [*(str(b) for b in _BUCKETS), "+Inf"]
        for outcome, counts in sorted(self.latency.items()):
            cumulative = 0.0
            series = []
            for bound, observed in zip(bounds, counts[:-1], strict=True):
                cumulative += observed
                series.append((bound, cumulative))
            latency.add_metric([outcome], series, counts[-1])
        yield latency


class GatewayMetrics:
    """Per-worker registry: request stats, gauges and counters (routing metadata only)."""

    def __init__(
        self, active_streams: Callable[[], float], connections: Callable[[], float]
    ) -> None:
        self.registry = CollectorRegistry()
        self.stats = _RequestStats()
        self.registry.register(self.stats)
        self.active_streams = Gauge(
            "sealgate_gateway_active_streams",
            "Exchanges currently forwarded to an enclave.",
            registry=self.registry,
        )
        self.active_streams.set_function(active_streams)
        self.connections = Gauge(
            "sealgate_gateway_client_connections",
            "Open client connections.",
            registry=self.registry,
        )
        self.connections.set_function(connections)
        self.enclave_healthy = Gauge(
            "sealgate_gateway_enclave_healthy",
            "1 if the enclave is in the routing table, else 0.",
            ["enclave"],
            registry=self.registry,
        )
        self.connect_failures = Counter(
            "sealgate_gateway_enclave_connect_failures",
            "Failed connections to an enclave.",
            ["enclave"],
            registry=self.registry,
        )
        self.failovers = Counter(
            "sealgate_gateway_multi_failovers",
            "Multi-recipient requests passed to their next candidate, by reason "
            "(connect_failed, refused_421/422/503: all before the enclave opened them).",
            ["reason"],
            registry=self.registry,
        )
        self.rejected_connections = Counter(
            "sealgate_gateway_rejected_connections",
            "Connections refused at the concurrent-connection limit.",
            registry=self.registry,
        )

    def record(self, enclave: str, outcome: str, seconds: float) -> None:
        """One finished request."""
        self.stats.record(enclave, outcome, seconds)

    def forget_enclave(self, enclave: str) -> None:
        """Drop per-enclave series of a member that left the fleet."""
        self.stats.forget(enclave)
        for metric in (self.enclave_healthy, self.connect_failures):
            with contextlib.suppress(KeyError):
                metric.remove(enclave)
