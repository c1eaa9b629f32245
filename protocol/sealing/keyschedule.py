"""The RFC 9180 key schedule (base mode) and encryption context, for KEMs pyhpke lacks.

pyhpke stays in charge of the classical DHKEM suites; this module serves the hybrid
MLKEM768-X25519 KEM (:mod:`~sealgate.protocol.sealing.xwing`). It is the §5.1 schedule
exactly — HMAC-based Extract/Expand with the ``"HPKE-v1"`` labels and suite_id
``"HPKE" || kem_id || kdf_id || aead_id`` — with the §5.2 sequence-number nonces and
the §5.3 exporter. Extract and Expand are HMAC from the standard library (OpenSSL);
the AEADs are ``cryptography``'s. :class:`Context` has the ``seal``/``open``/``export``
interface of pyhpke's contexts, so :mod:`~sealgate.protocol.sealing.ohttp` uses either.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..public.errors import DecryptionFailed, SequenceOverflow, UnsupportedSuite

__all__ = ["Context", "key_schedule", "KDFS", "AEADS"]

_VERSION = b"HPKE-v1"
_MODE_BASE = 0x00

#: RFC 9180 §7.2: HKDF hash per KDF id.
KDFS: dict[int, Callable[..., Any]] = {
    0x0001: hashlib.sha256,
    0x0002: hashlib.sha384,
    0x0003: hashlib.sha512,
}
#: RFC 9180 §7.3: (Nk, Nn, AEAD class) per AEAD id.
AEADS: dict[int, tuple[int, int, type[AESGCM] | type[ChaCha20Poly1305]]] = {
    0x0001: (16, 12, AESGCM),
    0x0002: (32, 12, AESGCM),
    0x0003: (32, 12, ChaCha20Poly1305),
}


class _Kdf:
    """LabeledExtract / LabeledExpand (RFC 9180 §4) over HKDF with one hash."""

    __slots__ = ("_hash", "_prefix", "nh")

    def __init__(self, kdf_id: int, suite_id: bytes) -> None:
        self._hash = KDFS[kdf_id]
        self._prefix = _VERSION + suite_id
        self.nh: int = self._hash().digest_size

    def extract(self, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        # RFC 5869 §2.2: an empty salt is HashLen zeros, which HMAC pads to the same key.
        return hmac.digest(salt, self._prefix + label + ikm, self._hash)

    def expand(self, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        if length > 255 * self.nh:
            raise ValueError(f"HKDF-Expand cannot produce {length} bytes")
        labeled = struct.pack(">H", length) + self._prefix + label + info
        out = b""
        block = b""
        counter = 1
        while len(out) < length:  # RFC 5869 §2.3
            block = hmac.digest(prk, block + labeled + bytes((counter,)), self._hash)
            out += block
            counter += 1
        return out[:length]


class Context:
    """An HPKE encryption context (RFC 9180 §5.2, §5.3): both roles, one sequence number."""

    __slots__ = ("_aead", "_exporter_secret", "_kdf", "_nn", "_nonce", "_sequence")

    def __init__(self, kdf: _Kdf, aead_id: int, key: bytes, base_nonce: bytes, exporter: bytes):
        _, nn, aead = AEADS[aead_id]
        self._aead = aead(key)
        self._nonce = int.from_bytes(base_nonce, "big")
        self._nn = nn
        self._sequence = 0
        self._kdf = kdf
        self._exporter_secret = exporter

    def _next_nonce(self) -> bytes:
        if self._sequence >= (1 << (8 * self._nn)) - 1:
            raise SequenceOverflow("HPKE sequence number exhausted (RFC 9180 §5.2)")
        return (self._nonce ^ self._sequence).to_bytes(self._nn, "big")

    def seal(self, pt: bytes, aad: bytes = b"") -> bytes:
        ct = self._aead.encrypt(self._next_nonce(), pt, aad)
        self._sequence += 1
        return ct

    def open(self, ct: bytes, aad: bytes = b"") -> bytes:
        """Decrypt; a failed tag is :class:`DecryptionFailed` and leaves the sequence unchanged."""
        try:
            pt = self._aead.decrypt(self._next_nonce(), ct, aad)
        except InvalidTag:
            raise DecryptionFailed("HPKE ciphertext failed authentication") from None
        self._sequence += 1
        return pt

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """``Context.Export`` (RFC 9180 §5.3)."""
        return self._kdf.expand(self._exporter_secret, b"sec", exporter_context, length)

    def __repr__(self) -> str:
        return "Context(<redacted>)"

    def __reduce__(self) -> str:
        raise TypeError("an HPKE context cannot be pickled: it holds secrets")


@functools.lru_cache(maxsize=1024)
def _schedule_context(kem_id: int, kdf_id: int, aead_id: int, info: bytes) -> tuple[_Kdf, bytes]:
    """The suite's KDF and ``key_schedule_context``: public values, the same for every
    request sealed to one key config, so they are computed once per (suite, info)."""
    if kdf_id not in KDFS or aead_id not in AEADS:
        raise UnsupportedSuite(f"no HPKE key schedule for KDF 0x{kdf_id:04x}, AEAD 0x{aead_id:04x}")
    kdf = _Kdf(kdf_id, b"HPKE" + struct.pack(">HHH", kem_id, kdf_id, aead_id))
    psk_id_hash = kdf.extract(b"", b"psk_id_hash", b"")  # base mode: no PSK, empty psk_id
    info_hash = kdf.extract(b"", b"info_hash", info)
    return kdf, bytes((_MODE_BASE,)) + psk_id_hash + info_hash


def key_schedule(
    kem_id: int, kdf_id: int, aead_id: int, shared_secret: bytes, info: bytes
) -> tuple[Context, bytes, bytes, bytes]:
    """``KeyScheduleS/R`` in base mode: ``(context, key, base_nonce, exporter_secret)``.

    The three secrets are returned for the published vectors' sake; callers other
    than tests use only the context.
    """
    kdf, context = _schedule_context(kem_id, kdf_id, aead_id, bytes(info))
    nk, nn, _ = AEADS[aead_id]
    secret = kdf.extract(shared_secret, b"secret", b"")  # psk = "" in base mode
    key = kdf.expand(secret, b"key", context, nk)
    base_nonce = kdf.expand(secret, b"base_nonce", context, nn)
    exporter_secret = kdf.expand(secret, b"exp", context, kdf.nh)
    return Context(kdf, aead_id, key, base_nonce, exporter_secret), key, base_nonce, exporter_secret
