"""The HPKE suite object and the enclave's private keys.

:class:`PrivateKey` is X25519 through pyhpke (RFC 9180); the post-quantum hybrid is
:class:`~sealgate.protocol.sealing.xwing.HybridPrivateKey`. Either is an :data:`EnclaveKey`.
Private keys live in process memory; they have no export method and a redacted repr.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, KEMKeyInterface

from ..public.errors import MalformedKeyConfig
from ..public.keyconfig import KeyConfig
from ..public.suites import ENC_SIZE, KEM_X25519_HKDF_SHA256
from .xwing import HybridPrivateKey

__all__ = ["PrivateKey", "SUITE", "EnclaveKey", "HybridPrivateKey"]

#: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM: the suite of both modes.
SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)


@functools.lru_cache(maxsize=256)
def public_key_object(raw: bytes) -> KEMKeyInterface:
    """Deserialize a raw X25519 public key, raising :class:`MalformedKeyConfig` if invalid."""
    if len(raw) != ENC_SIZE:
        raise MalformedKeyConfig(f"X25519 public key must be {ENC_SIZE} bytes, got {len(raw)}")
    try:
        return SUITE.kem.deserialize_public_key(bytes(raw))
    except ValueError as exc:
        raise MalformedKeyConfig("X25519 public key is not a valid curve point") from exc


class PrivateKey:
    """An X25519 HPKE private key that never leaves memory."""

    __slots__ = ("_key", "public_key")

    kem_id = KEM_X25519_HKDF_SHA256

    def __init__(self, key: X25519PrivateKey) -> None:
        self._key: KEMKeyInterface = KEMKey.from_pyca_cryptography_key(key)
        self.public_key: bytes = key.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> PrivateKey:
        """A fresh key from the operating system's CSPRNG."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> PrivateKey:
        """Load a raw 32-byte key; meant for published test vectors, not for production keys."""
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def key_config(self, key_id: int = 0) -> KeyConfig:
        """The public key configuration to publish for this key."""
        return KeyConfig.for_x25519(self.public_key, key_id)

    @property
    def kem_key(self) -> KEMKeyInterface:
        """The pyhpke key object, for setting up a recipient context."""
        return self._key

    def __repr__(self) -> str:
        return f"PrivateKey(public_key={self.public_key.hex()[:16]}…, private=<redacted>)"

    def __reduce__(self) -> str:
        raise TypeError("PrivateKey cannot be pickled: it must never leave memory")


#: Either kind of enclave key: both have ``kem_id``, ``public_key`` and ``key_config()``.
EnclaveKey = PrivateKey | HybridPrivateKey
