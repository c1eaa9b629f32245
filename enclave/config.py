"""Enclave settings, passed in explicitly (no globals, no environment reads)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EnclaveConfig"]


@dataclass(frozen=True, slots=True)
class EnclaveConfig:
    """Limits, timeouts and policies of one enclave server."""

    #: ``(METHOD, /path)`` pairs forwarded without encryption; empty means none.
    plaintext_paths: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    #: Largest decrypted request body accepted (413 above it).
    max_body_size: int = 32 * 1024 * 1024
    #: Largest request frame (ciphertext) accepted (413 above it).
    max_frame_size: int = 1024 * 1024 + 16
    #: Concurrent sealed requests before answering 503 with Retry-After.
    max_concurrent_requests: int = 128
    #: Seconds to wait for each chunk of a request body (408 after it).
    body_timeout: float = 30.0
    #: Seconds from the request head to the end of its body (408 after it), however the
    #: body trickles in: 32 MiB at 1 Mbit/s still fits.
    body_deadline: float = 300.0
    #: Average bytes per second a body must keep up once ``body_min_rate_grace`` seconds
    #: have passed (408 below it; 0 disables). 1 KiB/s is far below any real link and far
    #: above a slow-drip attack.
    body_min_rate: float = 1024.0
    body_min_rate_grace: float = 10.0
    #: Request body bytes the enclave holds at once, over every request from its first
    #: body byte until its engine exchange ends (503 overloaded above it). This bounds
    #: body memory however many requests are receiving; one body can be up to
    #: ``max_body_size + max_frame_size`` of it.
    max_buffered_body_bytes: int = 1024 * 1024 * 1024
    #: Seconds a no-nonce attestation document is reused.
    attestation_cache_seconds: float = 60.0
    #: Fresh-nonce hardware reports per second, and the burst allowed above that rate.
    #: Each report answers a whole batch of nonces (see below).
    attestation_rate: float = 10.0
    attestation_burst: int = 20
    #: Fresh nonces arriving within this many seconds share one report (a Merkle root
    #: over them), at most ``attestation_batch_size`` per report; beyond
    #: ``attestation_batch_queue`` waiting batches a nonce gets 429 with Retry-After.
    attestation_batch_window: float = 0.005
    attestation_batch_size: int = 256
    attestation_batch_queue: int = 8
    #: Evidence generations running at once.
    attestation_concurrency: int = 2
    #: Seconds between key rotations (None: never) and how long a replaced key still decrypts.
    rotate_keys_every: float | None = None
    key_grace: float = 300.0
    #: Make a post-quantum MLKEM768-X25519 key beside each X25519 key (the native-mode SDK
    #: prefers it). False publishes X25519 keys only, as enclaves before it did.
    post_quantum_keys: bool = True
    #: Retry-After seconds sent with 503 overloaded.
    retry_after: int = 1
    #: Native mode (chunked OHTTP + BHTTP, :mod:`sealgate.enclave.native`): seconds a
    #: sealed request's inner Date may differ from the enclave's clock, and how many
    #: encapsulated keys are remembered to refuse replays (RFC 9458 §6.9).
    replay_window: float = 60.0
    replay_capacity: int = 100_000
    #: ``(METHOD, path)`` pairs the native mode forwards; a path ending in ``/`` allows
    #: one more path segment below it (``/v1/models/`` matches ``/v1/models/{id}``).
    native_routes: tuple[tuple[str, str], ...] = (
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/"),
        ("POST", "/v1/responses"),
    )
    #: Native mode: every sealed response chunk's plaintext is a multiple of this (0: off).
    chunk_bucket: int = 128
    #: Native mode: server-sent events produced within this many seconds of the first one
    #: not yet sent leave together, in one padded chunk: fewer, coarser chunks blur the
    #: token count and timing at the cost of up to this much latency (0: off, each event
    #: is sent the moment it exists).
    sse_coalesce_interval: float = 0.0
    #: EHBP: pad sealed responses to ``chunk_bucket`` too, in ways Tinfoil's clients pass
    #: through unchanged (SSE comment lines per frame, trailing whitespace after JSON).
    ehbp_padding: bool = True
    #: Models this enclave claims to serve. The engine's ``GET /v1/models`` must list each
    #: one: checked at start-up (a mismatch refuses to start) and every
    #: ``engine_check_interval`` seconds (``/healthz`` answers 503 until a check passes).
    #: Empty: the engine's models are only logged.
    models: tuple[str, ...] = ()
    engine_check_interval: float = 30.0
    #: Seconds each check may take (the start-up check delays start-up by at most this).
    engine_check_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be at least 1")
