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
    #: Total seconds to receive a complete request head, counted from connection accept or
    #: the end of the previous response (keep-alive), or from the head's first byte when it is
    #: pipelined behind a response still in flight. Dripping bytes does not extend it
    #: (slowloris); an idle keep-alive connection is closed after it.
    header_timeout: float = 15.0
    #: Seconds without request body bytes before 408; also the grace period of the body rate
    #: rule below.
    body_timeout: float = 30.0
    #: Minimum average request body rate in bytes/s once ``body_timeout`` has passed: the
    #: body must arrive within ``body_timeout + bytes_received / body_min_rate`` seconds of
    #: the request starting (so a Content-Length body has a total deadline of
    #: ``body_timeout + length / body_min_rate``), else 408. Time the gateway itself holds
    #: the client back (backpressure from a slow enclave) is not counted. 0 disables.
    body_min_rate: float = 4096.0
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
    #: Largest body of a request without key id (EHBP) the gateway keeps a copy of while
    #: the first enclave decides, so that an EHBP key-config 422 (refused before any
    #: processing) can be replayed on another enclave; 0 never replays.
    ehbp_replay_bytes: int = 1024 * 1024
    #: Enclaves such a request is offered to at most, the primary included.
    ehbp_max_attempts: int = 4
    #: Write one structured access log line per request.
    access_log: bool = True
    #: Fresh-nonce attestation requests (any request with a ``nonce`` query parameter) per
    #: second per client address, and the burst allowed above that; 429 beyond. Each one
    #: costs the enclave a hardware attestation, so one source must not use up the enclave's
    #: budget for everyone. 0 disables.
    nonce_rate: float = 2.0
    nonce_burst: int = 20
    #: Client addresses tracked by the nonce limiter (bounded memory; least recently seen
    #: addresses are forgotten first).
    nonce_sources: int = 10_000
