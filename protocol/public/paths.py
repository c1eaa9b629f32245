"""Every path sealgate's servers answer outside the inference API itself."""

from __future__ import annotations

__all__ = [
    "ATTESTATION",
    "EHBP_KEYS",
    "FLEET",
    "HEALTH",
    "METRICS",
    "OHTTP_GATEWAY",
    "OHTTP_KEYS",
    "WELL_KNOWN",
]

#: The prefix of every well-known path (RFC 8615).
WELL_KNOWN = "/.well-known/"
#: Enclave: the current X25519 key as one bare key config, what EHBP clients fetch.
EHBP_KEYS = "/.well-known/hpke-keys"
#: Enclave: every active key, as an RFC 9458 §3.2 key configuration list.
OHTTP_KEYS = "/.well-known/ohttp-keys"
#: Enclave: the native mode's sealed requests (``POST``) and its key list (``GET``), RFC 9540.
OHTTP_GATEWAY = "/.well-known/ohttp-gateway"
#: Enclave (relayed by the gateway): the attestation document, ``?nonce=<64 hex>`` for a fresh one.
ATTESTATION = "/.well-known/sealgate-attestation"
#: Gateway: the fleet directory (every enclave's keys, attestation and models).
FLEET = "/.well-known/sealgate-fleet"
#: Both servers: liveness/readiness, and Prometheus metrics.
HEALTH = "/healthz"
METRICS = "/metrics"
