"""Gateway settings, passed in explicitly.

Each field is also a ``sealgate gateway`` option and a ``SEALGATE_GATEWAY_<FIELD>``
environment variable (``protocol/public/settings.py``): this is their one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

from sealgate.protocol.public.settings import setting

__all__ = ["ENV_PREFIX", "GatewayConfig"]

#: Every gateway setting can be given as ``SEALGATE_GATEWAY_<FIELD>`` (e.g. ``..._MAX_BODY_BYTES``).
ENV_PREFIX = "SEALGATE_GATEWAY"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Limits and timeouts of the data plane and the fleet poller."""

    max_header_bytes: int = setting(
        16 * 1024,
        help="Largest request head (request line + headers) accepted; 431 above it.",
        minimum=1,
    )
    max_body_bytes: int = setting(
        64 * 1024 * 1024, help="Largest request body accepted; 413 above it.", minimum=0
    )
    max_connections: int = setting(
        10_000,
        help="Open client connections per worker; more are answered 503 and closed.",
        minimum=1,
    )
    #: Counted from connection accept or the end of the previous response (keep-alive), or
    #: from the head's first byte when it is pipelined behind a response still in flight.
    #: Dripping bytes does not extend it (slowloris); an idle keep-alive connection is
    #: closed after it.
    header_timeout: float = setting(
        15.0,
        help="Seconds to receive a whole request head (a total deadline, not an idle timeout).",
        minimum=0,
    )
    body_timeout: float = setting(
        30.0,
        help="Seconds without request body bytes before 408; also the body rate's grace period.",
        minimum=0,
    )
    #: The body must arrive within ``body_timeout + bytes_received / body_min_rate`` seconds
    #: of the request starting (so a Content-Length body has a total deadline of
    #: ``body_timeout + length / body_min_rate``), else 408. Time the gateway itself holds
    #: the client back (backpressure from a slow enclave) is not counted.
    body_min_rate: float = setting(
        4096.0,
        help="Bytes/s a request body must average after --body-timeout, else 408 (0: off).",
        minimum=0,
    )
    upstream_idle_timeout: float = setting(
        600.0,
        help="Seconds without response bytes from an enclave before the exchange is aborted.",
        minimum=0,
    )
    connect_timeout: float = setting(3.0, help="Seconds to connect to an enclave.", minimum=0)
    pool_idle_timeout: float = setting(
        4.0,
        help="Seconds an idle pooled enclave connection is kept (below the enclave's keep-alive).",
        minimum=0,
    )
    pool_size: int = setting(256, help="Idle pooled connections per enclave.", minimum=0)
    poll_interval: float = setting(
        1.0, help="Seconds between health/key polls of each enclave.", minimum=0.01
    )
    poll_timeout: float = setting(2.0, help="Seconds a health/key poll may take.", minimum=0)
    attestation_refresh: float = setting(
        30.0,
        help="Seconds between refreshes of each enclave's attestation document.",
        minimum=0,
    )
    discovery_interval: float = setting(
        5.0, help="Seconds between DNS re-resolutions and fleet file re-reads.", minimum=0.01
    )
    drain_timeout: float = setting(
        30.0, help="Seconds to let in-flight streams finish on shutdown.", minimum=0
    )
    #: Kept while the first enclave decides, so that an EHBP key-config 422 (refused before
    #: any processing) can be replayed on another enclave.
    ehbp_replay_bytes: int = setting(
        1024 * 1024,
        help="Largest body of a request without key id (EHBP) kept for a replay (0: never).",
        minimum=0,
    )
    ehbp_max_attempts: int = setting(
        4,
        help="Enclaves a request without key id is offered to at most, the first included.",
        minimum=1,
    )
    access_log: bool = setting(True, help="Write one JSON access log line per request.")
    #: Any request with a ``nonce`` query parameter counts. Each one costs the enclave a
    #: hardware attestation, so one source must not use up the enclave's budget for everyone.
    nonce_rate: float = setting(
        2.0,
        help="Fresh-nonce attestation requests per second per client address (0: no limit).",
        minimum=0,
    )
    nonce_burst: int = setting(
        20,
        help="Fresh-nonce attestation requests a client address may make at once.",
        minimum=1,
    )
    nonce_sources: int = setting(
        10_000,
        help="Client addresses the nonce limit tracks (least recently seen forgotten first).",
        minimum=1,
    )
