"""Response key schedule (EHBP v0.3 §4.3, the same construction as RFC 9458 §4.4).

::

    secret     = HPKE Export(label, 32)           # per request
    prk        = HKDF-Extract(salt = enc || response_nonce, secret)
    key        = HKDF-Expand(prk, "key", 32)      # AES-256-GCM
    nonce_base = HKDF-Expand(prk, "nonce", 12)
    nonce(i)   = nonce_base XOR i                 # i big-endian, frame counter

HKDF and AES-GCM come from ``cryptography``; nothing here is hand-written crypto.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from ..public.errors import DecryptionFailed, SequenceOverflow
from ..public.suites import AEAD_KEY_SIZE, AEAD_NONCE_SIZE

__all__ = ["ResponseKey", "derive_response_key", "frame_nonce", "MAX_SEQUENCE"]

EXPORT_SIZE = 32
RESPONSE_NONCE_SIZE = 32
MAX_SEQUENCE = (1 << 64) - 1


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    # RFC 5869 §2.2: PRK = HMAC-Hash(salt, IKM).
    return hmac.new(salt, ikm, sha256).digest()


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def frame_nonce(nonce_base: bytes, sequence: int) -> bytes:
    """The AEAD nonce of frame ``sequence``: ``nonce_base`` XOR the big-endian counter."""
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise SequenceOverflow("response frame counter exhausted; no more frames can be sealed")
    size = len(nonce_base)
    return (int.from_bytes(nonce_base, "big") ^ sequence).to_bytes(size, "big")


class ResponseKey:
    """AES-256-GCM key and nonce base for one response; seals and opens numbered frames."""

    __slots__ = ("_aead", "_base")

    def __init__(self, key: bytes, nonce_base: bytes) -> None:
        self._aead = AESGCM(key)
        self._base = int.from_bytes(nonce_base, "big")

    def _nonce(self, sequence: int) -> bytes:
        if not 0 <= sequence <= MAX_SEQUENCE:
            raise SequenceOverflow("response frame counter exhausted; no more frames can be sealed")
        return (self._base ^ sequence).to_bytes(AEAD_NONCE_SIZE, "big")

    def seal(self, sequence: int, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt frame ``sequence``."""
        return self._aead.encrypt(self._nonce(sequence), plaintext, aad)

    def open(self, sequence: int, ciphertext: bytes, aad: bytes) -> bytes:
        """Decrypt frame ``sequence``; :class:`DecryptionFailed` if it does not authenticate."""
        try:
            return self._aead.decrypt(self._nonce(sequence), ciphertext, aad)
        except InvalidTag:
            raise DecryptionFailed(
                f"response frame {sequence} failed authentication "
                "(tampered, reordered, truncated or not bound to this request)"
            ) from None

    def __repr__(self) -> str:
        return "ResponseKey(<redacted>)"


def derive_key_material(
    secret: bytes,
    enc: bytes,
    response_nonce: bytes,
    key_size: int = AEAD_KEY_SIZE,
    nonce_size: int = AEAD_NONCE_SIZE,
) -> tuple[bytes, bytes]:
    """Raw ``(key, nonce_base)``; the sizes are parameters so RFC 9458's vectors apply too."""
    prk = _hkdf_extract(enc + response_nonce, secret)
    return _hkdf_expand(prk, b"key", key_size), _hkdf_expand(prk, b"nonce", nonce_size)


def derive_response_key(secret: bytes, enc: bytes, response_nonce: bytes) -> ResponseKey:
    """The response key of a request whose HPKE export is ``secret``."""
    if len(secret) != EXPORT_SIZE:
        raise ValueError(f"exported secret must be {EXPORT_SIZE} bytes")
    if len(response_nonce) != RESPONSE_NONCE_SIZE:
        raise ValueError(f"response nonce must be {RESPONSE_NONCE_SIZE} bytes")
    return ResponseKey(*derive_key_material(secret, enc, response_nonce))
