"""HPKE algorithm identifiers (RFC 9180 §7) and the one suite sealgate speaks.

Both EHBP and the native mode (OHTTP key configs) use DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
AES-256-GCM. Other registered identifiers are known here only so that key
configurations listing them can be parsed (and then refused with a clear message).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "KEM_X25519_HKDF_SHA256",
    "KDF_HKDF_SHA256",
    "AEAD_AES_256_GCM",
    "KEM_PUBLIC_KEY_SIZES",
    "KNOWN_KDFS",
    "KNOWN_AEADS",
    "SymmetricSuite",
    "SUPPORTED_SUITE",
    "ENC_SIZE",
    "AEAD_KEY_SIZE",
    "AEAD_NONCE_SIZE",
    "AEAD_TAG_SIZE",
]

KEM_X25519_HKDF_SHA256 = 0x0020
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002

#: Serialized public key length per registered KEM (RFC 9180 §7.1, Npk).
KEM_PUBLIC_KEY_SIZES: dict[int, int] = {
    0x0010: 65,  # DHKEM(P-256, HKDF-SHA256)
    0x0011: 97,  # DHKEM(P-384, HKDF-SHA384)
    0x0012: 133,  # DHKEM(P-521, HKDF-SHA512)
    0x0020: 32,  # DHKEM(X25519, HKDF-SHA256)
    0x0021: 56,  # DHKEM(X448, HKDF-SHA512)
}
KNOWN_KDFS = frozenset({0x0001, 0x0002, 0x0003})
KNOWN_AEADS = frozenset({0x0001, 0x0002, 0x0003, 0xFFFF})

ENC_SIZE = 32  # X25519 encapsulated key
AEAD_KEY_SIZE = 32  # AES-256
AEAD_NONCE_SIZE = 12
AEAD_TAG_SIZE = 16


@dataclass(frozen=True, slots=True)
class SymmetricSuite:
    """One ``(kdf_id, aead_id)`` pair of a key configuration."""

    kdf_id: int
    aead_id: int

    def __str__(self) -> str:
        return f"kdf=0x{self.kdf_id:04x} aead=0x{self.aead_id:04x}"


SUPPORTED_SUITE = SymmetricSuite(KDF_HKDF_SHA256, AEAD_AES_256_GCM)
