"""Gateway settings, passed in explicitly."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GatewayConfig"]


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Limits and timeouts of the data plane and the fleet poller."""

    #: Largest request head (request line + headers) accepted; 431 above it.
    max_header_bytes: int = 16 * 1024
    #: Largest request body accepted; 413 above it.
    max_body_bytes: int = 64 * 1024 * 1024
    #: Open client connections per worker; more are answered 503 and closed.
    max_connections: int = 10_000
    #: Seconds to receive a complete request head (slowloris); also keep-alive idle time.
    header_timeout: float = 15.0
    #: Seconds without request body bytes before 408 (or abort once forwarded).
    body_timeout: float = 30.0
    #: Seconds without response bytes from an enclave before the exchange is aborted.
    upstream_idle_timeout: float = 600.0
    #: Seconds to connect to an enclave.
    connect_timeout: float = 3.0
    #: Seconds an idle pooled enclave connection is kept (below the enclave's keep-alive).
    pool_idle_timeout: float = 4.0
    #: Idle pooled connections per enclave.
    pool_size: int = 256
    #: Seconds between health/key polls of each enclave, and the poll timeout.
    poll_interval: float = 1.0
    poll_timeout: float = 2.0
    #: Seconds between refreshes of each enclave's attestation document.
    attestation_refresh: float = 30.0
    #: Seconds between DNS re-resolutions / static file re-reads.
    discovery_interval: float = 5.0
    #: Seconds to let in-flight streams finish on shutdown.
    drain_timeout: float = 30.0
    #: Write one structured access log line per request.
    access_log: bool = True
