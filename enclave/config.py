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
    #: Seconds a no-nonce attestation document is reused.
    attestation_cache_seconds: float = 60.0
    #: Fresh (nonce) attestations per second, and the burst allowed above that rate.
    attestation_rate: float = 10.0
    attestation_burst: int = 20
    #: Evidence generations running at once.
    attestation_concurrency: int = 2
    #: Seconds between key rotations (None: never) and how long a replaced key still decrypts.
    rotate_keys_every: float | None = None
    key_grace: float = 300.0
    #: Retry-After seconds sent with 503 overloaded.
    retry_after: int = 1
