"""HPKE algorithm identifiers (RFC 9180 §7) and the suites sealgate speaks.

EHBP uses DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM; the native mode
uses the same symmetric algorithms with the post-quantum hybrid MLKEM768-X25519 by
default, and X25519 where an enclave offers nothing else. Other registered identifiers
are known here only so that key configurations listing them can be parsed (and then
refused with a clear message).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "KEM_X25519_HKDF_SHA256",
    "KEM_MLKEM768_X25519",
    "KEM_ENC_SIZES",
    "KEM_NAMES",
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
#: MLKEM768-X25519 (draft-ietf-hpke-pq; X-Wing): post-quantum hybrid, the native mode's default.
KEM_MLKEM768_X25519 = 0x647A
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002

#: Serialized public key length per registered KEM (RFC 9180 §7.1, Npk).
KEM_PUBLIC_KEY_SIZES: dict[int, int] = {
    0x0010: 65,  # DHKEM(P-256, HKDF-SHA256)
    0x0011: 97,  # DHKEM(P-384, HKDF-SHA384)
    0x0012: 133,  # DHKEM(P-521, HKDF-SHA512)
    0x0020: 32,  # DHKEM(X25519, HKDF-SHA256)
    0x0021: 56,  # DHKEM(X448, HKDF-SHA512)
    0x647A: 1216,  # MLKEM768-X25519 (draft-ietf-hpke-pq)
}
#: Encapsulated key length per KEM (Nenc); equal to Npk for the DHKEMs.
KEM_ENC_SIZES: dict[int, int] = {**KEM_PUBLIC_KEY_SIZES, 0x647A: 1120}
#: Names shown to people (``sealgate verify``).
KEM_NAMES: dict[int, str] = {
    0x0010: "P-256",
    0x0011: "P-384",
    0x0012: "P-521",
    0x0020: "X25519",
    0x0021: "X448",
    0x647A: "MLKEM768-X25519",
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
