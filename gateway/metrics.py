"""Prometheus metrics of the gateway: routing metadata only."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    """Per-worker registry; children are cached so the hot path does one dict lookup."""

    def __init__(
        self, active_streams: Callable[[], float], connections: Callable[[], float]
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sealgate_gateway_requests",
            "Requests by enclave (id) and outcome.",
            ["enclave", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sealgate_gateway_request_duration_seconds",
            "Time from request head to the end of the response, by outcome class.",
            ["outcome"],
            buckets=(
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                10,
                60,
            ),
            registry=self.registry,
        )
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
        self.rejected_connections = Counter(
            "sealgate_gateway_rejected_connections",
            "Connections refused at the concurrent-connection limit.",
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    def requests_child(self, enclave: str, outcome: str) -> Counter:
        key = (enclave, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(enclave, outcome)
        return child

    def observe(self, outcome: str, seconds: float) -> None:
        child = self._latency.get(outcome)
        if child is None:
            child = self._latency[outcome] = self.latency.labels(outcome)
        child.observe(seconds)

    def forget_enclave(self, enclave: str) -> None:
        """Drop per-enclave series of a member that left the fleet."""
        for key in [k for k in self._children if k[0] == enclave]:
            del self._children[key]
            self.requests.remove(*key)
        for metric in (self.enclave_healthy, self.connect_failures):
            with contextlib.suppress(KeyError):
                metric.remove(enclave)
