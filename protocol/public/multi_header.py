"""The cleartext header of a multi-recipient request: which enclaves may open it.

Public by design: the untrusted gateway reads it to choose a candidate and to fail
over between candidates without a client round trip, so this module holds no key
material and imports nothing that can decrypt (:mod:`.multi_recipient` does the
cryptography). ::

    Multi-Recipient Request Header {
      Version (8) = 1,
      Candidate Count (8) = 1..8,
      Candidate (..) ... {
        Key Fingerprint (64),          # first 8 bytes of SHA-256(key config)
        Key Identifier (8), HPKE KEM ID (16), HPKE KDF ID (16), HPKE AEAD ID (16),
        Encapsulated Key (8 * Nenc),
        Wrapped Key Length (16),
        Wrapped Key (..),              # HPKE-sealed data key for this candidate
      },
    }

The chunks of the sealed body follow (see :mod:`.multi_recipient`).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from .errors import MalformedEncapsulation, UnsupportedSuite
from .suites import KEM_ENC_SIZES

__all__ = [
    "MEDIA_TYPE",
    "RESPONSE_MEDIA_TYPE",
    "VERSION",
    "MAX_CANDIDATES",
    "Candidate",
    "MultiHeader",
    "binding_of",
]

MEDIA_TYPE = "message/sealgate-multi-req"
RESPONSE_MEDIA_TYPE = "message/sealgate-multi-res"
VERSION = 1
MAX_CANDIDATES = 8
MAX_WRAPPED_KEY = 1024
_LABEL = b"sealgate multi-recipient v1"
_CANDIDATE = struct.Struct(">8sBHHH")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One enclave key the request is wrapped to."""

    fingerprint: str
    key_id: int
    kem_id: int
    kdf_id: int
    aead_id: int
    enc: bytes
    wrapped_key: bytes

    @property
    def hdr(self) -> bytes:
        """The RFC 9458-style algorithm header that goes into this candidate's HPKE ``info``."""
        return struct.pack(">BHHH", self.key_id, self.kem_id, self.kdf_id, self.aead_id)

    def to_bytes(self) -> bytes:
        return (
            _CANDIDATE.pack(
                bytes.fromhex(self.fingerprint), self.key_id, self.kem_id, self.kdf_id, self.aead_id
            )
            + self.enc
            + struct.pack(">H", len(self.wrapped_key))
            + self.wrapped_key
        )


def binding_of(candidates: tuple[Candidate, ...] | list[Candidate]) -> bytes:
    """SHA-256 over the label and every candidate's fingerprint, algorithms and ``enc``.

    The wrapped keys and the body are sealed under this value, so neither can be spliced
    into another request or re-addressed to another candidate list. Wrapped keys are
    not covered (they are derived from it), so a gateway may drop the ones it does not
    forward.
    """
    digest = hashlib.sha256(_LABEL)
    digest.update(bytes([len(candidates)]))
    for c in candidates:
        digest.update(bytes.fromhex(c.fingerprint) + c.hdr + c.enc)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class MultiHeader:
    """The parsed header: the candidates, in the client's order of preference."""

    candidates: tuple[Candidate, ...]

    @property
    def binding(self) -> bytes:
        return binding_of(self.candidates)

    def to_bytes(self) -> bytes:
        return bytes([VERSION, len(self.candidates)]) + b"".join(
            c.to_bytes() for c in self.candidates
        )

    def candidate(self, fingerprint: str) -> Candidate | None:
        """The candidate entry for ``fingerprint``, if the request names it."""
        return next((c for c in self.candidates if c.fingerprint == fingerprint), None)

    @classmethod
    def parse(cls, data: bytes | bytearray) -> tuple[MultiHeader, int] | None:
        """``(header, size)`` from the start of ``data``; None if more bytes are needed."""
        if len(data) < 2:
            return None
        if data[0] != VERSION:
            raise MalformedEncapsulation(f"unknown multi-recipient version {data[0]}")
        count = data[1]
        if not 1 <= count <= MAX_CANDIDATES:
            raise MalformedEncapsulation(f"multi-recipient request names {count} candidates")
        offset = 2
        candidates: list[Candidate] = []
        for _ in range(count):
            if len(data) < offset + _CANDIDATE.size:
                return None
            fp, key_id, kem_id, kdf_id, aead_id = _CANDIDATE.unpack_from(data, offset)
            offset += _CANDIDATE.size
            enc_size = KEM_ENC_SIZES.get(kem_id)
            if enc_size is None:
                raise UnsupportedSuite(f"candidate uses unknown KEM 0x{kem_id:04x}")
            if len(data) < offset + enc_size + 2:
                return None
            enc = bytes(data[offset : offset + enc_size])
            offset += enc_size
            (wrapped_size,) = struct.unpack_from(">H", data, offset)
            offset += 2
            if wrapped_size > MAX_WRAPPED_KEY:
                raise MalformedEncapsulation("a wrapped key is larger than any suite produces")
            if len(data) < offset + wrapped_size:
                return None
            wrapped = bytes(data[offset : offset + wrapped_size])
            offset += wrapped_size
            candidates.append(Candidate(fp.hex(), key_id, kem_id, kdf_id, aead_id, enc, wrapped))
        if len({c.fingerprint for c in candidates}) != count:
            raise MalformedEncapsulation("a multi-recipient request names one key twice")
        return cls(tuple(candidates)), offset
