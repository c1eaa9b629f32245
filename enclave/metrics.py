"""Prometheus metrics of one enclave (own registry; no plaintext, no key material in labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["EnclaveMetrics"]


class EnclaveMetrics:
    """Counters, gauges and histograms exposed at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sealgate_enclave_requests",
            "Requests handled, by encapsulation mode and outcome.",
            ["mode", "outcome"],
            registry=self.registry,
        )
        self.decryption_failures = Counter(
            "sealgate_enclave_decryption_failures",
            "Request bodies that failed to decrypt, by error type.",
            ["reason"],
            registry=self.registry,
        )
        self.active_streams = Gauge(
            "sealgate_enclave_active_streams",
            "Requests holding an engine slot (body complete, engine exchange running).",
            registry=self.registry,
        )
        self.receiving_bodies = Gauge(
            "sealgate_enclave_receiving_bodies",
            "Requests whose body is still arriving (they hold no engine slot).",
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "sealgate_enclave_upstream_latency_seconds",
            "Time from forwarding a request to the engine's response headers.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.replays = Counter(
            "sealgate_enclave_replays",
            "Native-mode requests refused by the replay guard (replayed, stale, cache_full).",
            ["reason"],
            registry=self.registry,
        )
        self.key_rotations = Counter(
            "sealgate_enclave_key_rotations", "HPKE key rotations.", registry=self.registry
        )
        self.attestations = Counter(
            "sealgate_enclave_attestations",
            "Attestation documents served, by kind (cached, fresh, rate_limited).",
            ["kind"],
            registry=self.registry,
        )
