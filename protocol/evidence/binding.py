"""Attestation binding: the 64 bytes an enclave puts in its hardware report_data.

::

    report_data = SHA-512( lp("sealgate attestation v1")
                        || lp(nonce)                           # may be empty
                        || lp(SHA-256(application/ohttp-keys list))
                        || lp(SHA-256(TLS public key) or 32 zero bytes)
                        [|| lp(GPU evidence digest)] )        # only with GPU evidence

The last field is present only when the document carries GPU evidence
(:mod:`~sealgate.protocol.evidence.gpu`); without it the encoding is unchanged.

The nonce field holds one of three kinds of value, told apart by length and prefix:
a client's 32-byte nonce, a time nonce ``sealgate-time:<unix seconds>`` (at most 26
bytes), or a nonce batch's ``sealgate-batch:`` || root (47 bytes, see
:mod:`~sealgate.protocol.evidence.nonce_batch`), which binds many clients' nonces at once.

``lp(x)`` is ``uint16-be(len(x)) || x``, so no two inputs share an encoding. SEV-SNP
and TDX both carry exactly 64 bytes of report_data, which SHA-512 fills. A client
recomputes this from the attestation document and compares it with the value the
hardware signed: equality proves that these keys (and this nonce, for freshness)
were chosen by the measured code.
"""

from __future__ import annotations

import hashlib
import struct

__all__ = ["report_data", "BINDING_LABEL", "REPORT_DATA_SIZE", "NO_TLS_KEY"]

BINDING_LABEL = b"sealgate attestation v1"
REPORT_DATA_SIZE = 64
NO_TLS_KEY = bytes(32)
MAX_NONCE_SIZE = 1024


def _lp(field: bytes) -> bytes:
    return struct.pack(">H", len(field)) + field


def report_data(
    key_configs: bytes,
    nonce: bytes = b"",
    tls_key_hash: bytes | None = None,
    gpu_digest: bytes | None = None,
) -> bytes:
    """Compute report_data for an encoded key-config list, a nonce, a TLS key hash and GPUs."""
    if len(nonce) > MAX_NONCE_SIZE:
        raise ValueError(f"nonce must be at most {MAX_NONCE_SIZE} bytes")
    tls = NO_TLS_KEY if tls_key_hash is None else tls_key_hash
    if len(tls) != 32:
        raise ValueError("TLS key hash must be a 32-byte SHA-256 digest")
    encoded = _lp(BINDING_LABEL) + _lp(nonce) + _lp(hashlib.sha256(key_configs).digest()) + _lp(tls)
    if gpu_digest is not None:
        if len(gpu_digest) != 32:
            raise ValueError("the GPU evidence digest must be 32 bytes")
        encoded += _lp(gpu_digest)
    return hashlib.sha512(encoded).digest()
