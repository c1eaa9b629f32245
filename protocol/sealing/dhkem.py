"""DHKEM(X25519, HKDF-SHA256) (RFC 9180 §4.1) on ``cryptography``, for measurement.

The native mode's X25519 suite runs through pyhpke; this is the same KEM with the
:mod:`.keyschedule` key schedule, proven by the RFC 9180 vectors, so the benchmark can
show what a ``cryptography``-based classical seal costs next to pyhpke's. ::

    dh            = X25519(skE, pkR)
    kem_context   = enc || pkR                       # enc = pkE
    eae_prk       = LabeledExtract("", "eae_prk", dh)             suite_id = "KEM" || 0x0020
    shared_secret = LabeledExpand(eae_prk, "shared_secret", kem_context, 32)
"""

from __future__ import annotations

import hmac
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ..public.errors import MalformedEncapsulation
from ..public.suites import KEM_X25519_HKDF_SHA256

__all__ = ["encapsulate", "decapsulate"]

_PREFIX = b"HPKE-v1KEM" + struct.pack(">H", KEM_X25519_HKDF_SHA256)
_NSECRET = 32


def _extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    eae_prk = hmac.digest(b"", _PREFIX + b"eae_prk" + dh, "sha256")
    info = struct.pack(">H", _NSECRET) + _PREFIX + b"shared_secret" + kem_context
    return hmac.digest(eae_prk, info + b"\x01", "sha256")  # one block: Nsecret == Nh


def encapsulate(
    public_key: bytes, ephemeral: X25519PrivateKey | None = None
) -> tuple[bytes, bytes]:
    """``(shared_secret, enc)``; ``ephemeral`` is for published test vectors only."""
    ephemeral = X25519PrivateKey.generate() if ephemeral is None else ephemeral
    enc = ephemeral.public_key().public_bytes_raw()
    try:
        dh = ephemeral.exchange(X25519PublicKey.from_public_bytes(public_key))
    except ValueError as exc:
        raise MalformedEncapsulation("the recipient's X25519 key is not usable") from exc
    return _extract_and_expand(dh, enc + public_key), enc


def decapsulate(enc: bytes, private_key: X25519PrivateKey) -> bytes:
    """The shared secret for ``enc`` (32 bytes) under ``private_key``."""
    if len(enc) != 32:
        raise MalformedEncapsulation(f"X25519 encapsulated key must be 32 bytes, got {len(enc)}")
    try:
        dh = private_key.exchange(X25519PublicKey.from_public_bytes(enc))
    except ValueError as exc:
        raise MalformedEncapsulation("the encapsulated key is a low-order point") from exc
    return _extract_and_expand(dh, enc + private_key.public_key().public_bytes_raw())
