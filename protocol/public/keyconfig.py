"""Key configurations: RFC 9458 §3.1 ``key_config`` and the §3.2 ``application/ohttp-keys`` list.

::

    HPKE Symmetric Algorithms { HPKE KDF ID (16), HPKE AEAD ID (16) }
    Key Config {
      Key Identifier (8),
      HPKE KEM ID (16),
      HPKE Public Key (Npk * 8),
      HPKE Symmetric Algorithms Length (16) = 4..65532,
      HPKE Symmetric Algorithms (32) ...,
    }

The list format prefixes every config with a 2-byte length. EHBP servers send one
bare config instead; :func:`decode_key_configs` accepts both. This module is pure
parsing and hashing, with no key material beyond public keys, so the untrusted
gateway may use it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import MalformedKeyConfig, UnsupportedSuite
from .suites import (
    KEM_MLKEM768_X25519,
    KEM_NAMES,
    KEM_PUBLIC_KEY_SIZES,
    KEM_X25519_HKDF_SHA256,
    KNOWN_AEADS,
    KNOWN_KDFS,
    SUPPORTED_SUITE,
    SymmetricSuite,
)

__all__ = ["KeyConfig", "decode_key_configs", "encode_key_configs", "fingerprint_of"]

MEDIA_TYPE = "application/ohttp-keys"
FINGERPRINT_SIZE = 8


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """A public HPKE key with its identifier and the symmetric suites it may be used with."""

    key_id: int
    kem_id: int
    public_key: bytes
    suites: tuple[SymmetricSuite, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.key_id <= 0xFF:
            raise MalformedKeyConfig(f"key id must fit in one byte, got {self.key_id}")
        if not 0 <= self.kem_id <= 0xFFFF:
            raise MalformedKeyConfig("KEM id must fit in two bytes")
        expected = KEM_PUBLIC_KEY_SIZES.get(self.kem_id)
        if expected is None:
            raise UnsupportedSuite(f"unknown KEM 0x{self.kem_id:04x} in key config")
        if len(self.public_key) != expected:
            raise MalformedKeyConfig(
                f"public key for KEM 0x{self.kem_id:04x} must be {expected} bytes, "
                f"got {len(self.public_key)}"
            )
        if not self.suites:
            raise MalformedKeyConfig("key config lists no symmetric algorithms")
        if len(self.suites) > 0xFFFC // 4:
            raise MalformedKeyConfig("key config lists too many symmetric algorithms")
        for suite in self.suites:
            if suite.kdf_id not in KNOWN_KDFS or suite.aead_id not in KNOWN_AEADS:
                raise UnsupportedSuite(f"unknown symmetric algorithms ({suite}) in key config")

    @classmethod
    def for_x25519(cls, public_key: bytes, key_id: int = 0) -> KeyConfig:
        """The config sealgate and EHBP publish: X25519 with HKDF-SHA256/AES-256-GCM."""
        return cls(key_id, KEM_X25519_HKDF_SHA256, bytes(public_key), (SUPPORTED_SUITE,))

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyConfig:
        """Decode exactly one config; truncated input or trailing bytes are errors."""
        config, end = _decode_one(memoryview(data), 0)
        if end != len(data):
            raise MalformedKeyConfig(f"{len(data) - end} trailing bytes after key config")
        return config

    def to_bytes(self) -> bytes:
        """The RFC 9458 §3.1 encoding."""
        suites = b"".join(struct.pack(">HH", s.kdf_id, s.aead_id) for s in self.suites)
        return (
            struct.pack(">BH", self.key_id, self.kem_id)
            + self.public_key
            + struct.pack(">H", len(suites))
            + suites
        )

    @property
    def fingerprint(self) -> str:
        """Stable routing name of this key: hex of the first 8 bytes of SHA-256(encoding)."""
        return fingerprint_of(self.to_bytes())

    @property
    def post_quantum(self) -> bool:
        """True for the hybrid MLKEM768-X25519 KEM, whose secrets survive a quantum computer."""
        return self.kem_id == KEM_MLKEM768_X25519

    @property
    def kem_name(self) -> str:
        """The KEM's name for people: ``X25519``, ``MLKEM768-X25519``, or the hex id."""
        return KEM_NAMES.get(self.kem_id, f"0x{self.kem_id:04x}")

    def require_supported(self) -> None:
        """Raise :class:`UnsupportedSuite` unless sealgate can encrypt to this key."""
        if self.kem_id not in (KEM_X25519_HKDF_SHA256, KEM_MLKEM768_X25519):
            raise UnsupportedSuite(
                f"key {self.key_id} uses KEM 0x{self.kem_id:04x}; sealgate needs X25519 (0x0020) "
                "or MLKEM768-X25519 (0x647a)"
            )
        if SUPPORTED_SUITE not in self.suites:
            offered = ", ".join(str(s) for s in self.suites)
            raise UnsupportedSuite(
                f"key {self.key_id} offers {offered}; sealgate needs HKDF-SHA256 with AES-256-GCM"
            )

    def __str__(self) -> str:
        return f"KeyConfig(id={self.key_id}, fingerprint={self.fingerprint})"


def fingerprint_of(encoded_config: bytes) -> str:
    """Hex of the first 8 bytes of SHA-256 over an encoded key config."""
    return hashlib.sha256(encoded_config).digest()[:FINGERPRINT_SIZE].hex()


def _decode_one(view: memoryview, offset: int) -> tuple[KeyConfig, int]:
    if len(view) - offset < 3:
        raise MalformedKeyConfig("key config is truncated before its KEM id")
    key_id, kem_id = struct.unpack_from(">BH", view, offset)
    offset += 3
    pk_size = KEM_PUBLIC_KEY_SIZES.get(kem_id)
    if pk_size is None:
        raise UnsupportedSuite(f"unknown KEM 0x{kem_id:04x} in key config")
    if len(view) - offset < pk_size + 2:
        raise MalformedKeyConfig("key config is truncated inside its public key")
    public_key = bytes(view[offset : offset + pk_size])
    offset += pk_size
    (suites_len,) = struct.unpack_from(">H", view, offset)
    offset += 2
    if suites_len < 4 or suites_len % 4:
        raise MalformedKeyConfig(
            f"symmetric algorithms length must be a non-zero multiple of 4, got {suites_len}"
        )
    if len(view) - offset < suites_len:
        raise MalformedKeyConfig("key config is truncated inside its symmetric algorithms")
    suites = tuple(
        SymmetricSuite(*struct.unpack_from(">HH", view, offset + i))
        for i in range(0, suites_len, 4)
    )
    offset += suites_len
    return KeyConfig(key_id, kem_id, public_key, suites), offset


def encode_key_configs(configs: Iterable[KeyConfig]) -> bytes:
    """The ``application/ohttp-keys`` list: each config prefixed by its 2-byte length."""
    out = bytearray()
    for config in configs:
        encoded = config.to_bytes()
        out += struct.pack(">H", len(encoded)) + encoded
    return bytes(out)


def decode_key_configs(data: bytes) -> tuple[KeyConfig, ...]:
    """Decode an ``application/ohttp-keys`` body: a length-prefixed list or one bare config.

    The two encodings are told apart by trying the list first: a bare config starts
    with a one-byte key id and a KEM id, which read as a length almost never match
    the remaining bytes exactly. When the list reading fails, the bare reading decides.
    """
    if not data:
        raise MalformedKeyConfig("empty key config list")
    view = memoryview(data)
    try:
        return _decode_list(view)
    except (MalformedKeyConfig, UnsupportedSuite) as list_error:
        try:
            return (KeyConfig.from_bytes(data),)
        except (MalformedKeyConfig, UnsupportedSuite):
            raise list_error from None


def _decode_list(view: memoryview) -> tuple[KeyConfig, ...]:
    configs: list[KeyConfig] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < 2:
            raise MalformedKeyConfig("key config list is truncated inside a length prefix")
        (length,) = struct.unpack_from(">H", view, offset)
        offset += 2
        if length == 0 or len(view) - offset < length:
            raise MalformedKeyConfig("key config list entry length does not match the data")
        try:
            config, end = _decode_one(view[offset : offset + length], 0)
        except UnsupportedSuite:
            # RFC 9458 §3.2: clients ignore configurations they do not support.
            offset += length
            continue
        if end != length:
            raise MalformedKeyConfig("key config list entry has trailing bytes")
        configs.append(config)
        offset += length
    if not configs:
        raise UnsupportedSuite("key config list holds no configuration with a known KEM")
    return tuple(configs)
