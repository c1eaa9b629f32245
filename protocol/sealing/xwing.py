"""The hybrid KEM MLKEM768-X25519 (KEM id ``0x647a``, draft-ietf-hpke-pq), byte-identical to X-Wing.

::

    expand(seed)   = SHAKE256(seed, 96) -> ML-KEM-768 seed (64) | X25519 scalar (32)
    pk             = pk_M (1184) | pk_X (32)                       # Npk  = 1216
    enc            = ct_M (1088) | ct_X (32)                       # Nenc = 1120
    shared_secret  = SHA3-256(ss_M | ss_X | ct_X | pk_X | "\\.//^\\")
    DeriveKeyPair  : seed = SHAKE256(ikm | "HPKE-v1" | "KEM" | 0x647a
                                     | lp("DeriveKeyPair") | I2OSP(32, 2), 32)

The private key is the 32-byte seed; ML-KEM-768 and X25519 come from ``cryptography``
(ML-KEM needs cryptography >= 47 built against an OpenSSL or AWS-LC that has it).
Secrets stay in memory: no export method, redacted repr, no pickling.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ..public.errors import MalformedEncapsulation, MalformedKeyConfig, UnsupportedSuite
from ..public.keyconfig import KeyConfig
from ..public.suites import KEM_MLKEM768_X25519, SUPPORTED_SUITE

__all__ = [
    "KEM_ID",
    "PUBLIC_KEY_SIZE",
    "ENC_SIZE",
    "SEED_SIZE",
    "HybridPrivateKey",
    "derive_seed",
    "encapsulate",
]

KEM_ID = KEM_MLKEM768_X25519
SEED_SIZE = 32  # Nsk
SHARED_SECRET_SIZE = 32
_MLKEM_PK = 1184
_MLKEM_CT = 1088
_X25519 = 32
PUBLIC_KEY_SIZE = _MLKEM_PK + _X25519  # Npk = 1216
ENC_SIZE = _MLKEM_CT + _X25519  # Nenc = 1120
_LABEL = b"\\.//^\\"  # 5c2e2f2f5e5c
_HPKE_V1 = b"HPKE-v1"


def _combine(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + _LABEL).digest()


def _expand(seed: bytes) -> tuple[MLKEM768PrivateKey, X25519PrivateKey]:
    expanded = hashlib.shake_256(seed).digest(64 + _X25519)
    try:
        mlkem = MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    except UnsupportedAlgorithm as exc:  # pragma: no cover - depends on the OpenSSL build
        raise UnsupportedSuite(
            "this build of 'cryptography' has no ML-KEM-768: install cryptography>=48 wheels"
        ) from exc
    return mlkem, X25519PrivateKey.from_private_bytes(expanded[64:])


def derive_seed(ikm: bytes) -> bytes:
    """``DeriveKeyPair(ikm)``'s private key: SHAKE256 LabeledDerive (draft-ietf-hpke-pq)."""
    label = b"DeriveKeyPair"
    labeled = (
        ikm
        + _HPKE_V1
        + b"KEM"
        + struct.pack(">H", KEM_ID)
        + struct.pack(">H", len(label))
        + label
        + struct.pack(">H", SEED_SIZE)
    )
    return hashlib.shake_256(labeled).digest(SEED_SIZE)


@functools.lru_cache(maxsize=256)
def _split_public_key(public_key: bytes) -> tuple[MLKEM768PublicKey, X25519PublicKey, bytes]:
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise MalformedKeyConfig(
            f"MLKEM768-X25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}"
        )
    pk_x = bytes(public_key[_MLKEM_PK:])
    try:
        return (
            MLKEM768PublicKey.from_public_bytes(bytes(public_key[:_MLKEM_PK])),
            X25519PublicKey.from_public_bytes(pk_x),
            pk_x,
        )
    except ValueError as exc:
        raise MalformedKeyConfig("the MLKEM768-X25519 public key is not valid") from exc


def encapsulate(public_key: bytes) -> tuple[bytes, bytes]:
    """``(shared_secret, enc)`` for a 1216-byte public key, with fresh randomness."""
    pk_m, pk_x_obj, pk_x = _split_public_key(bytes(public_key))
    ss_m, ct_m = pk_m.encapsulate()
    ephemeral = X25519PrivateKey.generate()
    ct_x = ephemeral.public_key().public_bytes_raw()
    try:
        ss_x = ephemeral.exchange(pk_x_obj)
    except ValueError as exc:  # an all-zero output: a low-order point in the key config
        raise MalformedKeyConfig("the X25519 half of the public key is a low-order point") from exc
    return _combine(ss_m, ss_x, ct_x, pk_x), ct_m + ct_x


class HybridPrivateKey:
    """An MLKEM768-X25519 private key (its 32-byte seed, expanded once) that never leaves memory."""

    __slots__ = ("_mlkem", "_pk_x", "_x25519", "public_key")

    kem_id = KEM_ID

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an MLKEM768-X25519 private key is a {SEED_SIZE}-byte seed")
        self._mlkem, self._x25519 = _expand(bytes(seed))
        self._pk_x = self._x25519.public_key().public_bytes_raw()
        self.public_key: bytes = self._mlkem.public_key().public_bytes_raw() + self._pk_x

    @classmethod
    def generate(cls) -> HybridPrivateKey:
        """A fresh key from the operating system's CSPRNG."""
        return cls(os.urandom(SEED_SIZE))

    @classmethod
    def derive(cls, ikm: bytes) -> HybridPrivateKey:
        """``DeriveKeyPair(ikm)``; meant for published test vectors, not for production keys."""
        return cls(derive_seed(ikm))

    def decapsulate(self, enc: bytes) -> bytes:
        """The shared secret for ``enc``; a wrong length is :class:`MalformedEncapsulation`.

        An altered ML-KEM ciphertext decapsulates (implicit rejection) to a secret the
        sender does not have, so tampering surfaces as a failed AEAD open right after.
        """
        if len(enc) != ENC_SIZE:
            raise MalformedEncapsulation(
                f"MLKEM768-X25519 encapsulated key must be {ENC_SIZE} bytes, got {len(enc)}"
            )
        ct_x = bytes(enc[_MLKEM_CT:])
        try:
            ss_m = self._mlkem.decapsulate(bytes(enc[:_MLKEM_CT]))
            ss_x = self._x25519.exchange(X25519PublicKey.from_public_bytes(ct_x))
        except ValueError as exc:  # a low-order X25519 point: the exchange is all zeros
            raise MalformedEncapsulation(
                "the X25519 half of the encapsulated key is a low-order point"
            ) from exc
        return _combine(ss_m, ss_x, ct_x, self._pk_x)

    def key_config(self, key_id: int = 0) -> KeyConfig:
        """The public key configuration to publish for this key."""
        return KeyConfig(key_id, KEM_ID, self.public_key, (SUPPORTED_SUITE,))

    def __repr__(self) -> str:
        return f"HybridPrivateKey(public_key={self.public_key.hex()[:16]}…, private=<redacted>)"

    def __reduce__(self) -> str:
        raise TypeError("HybridPrivateKey cannot be pickled: it must never leave memory")
