"""EHBP request bodies: sealed to an enclave key with HPKE base mode (RFC 9180 §5.1).

The client's :class:`RequestEncoder` sets up an HPKE sender context with EHBP's
``info`` label and seals each frame with it; the enclave's :class:`RequestDecoder`
opens them with the matching recipient context. Both derive the response key from
the same context's exporter, which binds the response to this request.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pyhpke import PyHPKEError

from ..public.errors import DecryptionFailed, MalformedEncapsulation, UnknownKey
from ..public.framing import DEFAULT_MAX_FRAME_SIZE
from ..public.keyconfig import KeyConfig
from ..public.modes import EHBP, Mode
from ..public.suites import ENC_SIZE
from .ehbp_response import ResponseDecoder, ResponseEncoder
from .ehbp_stream import DEFAULT_FRAME_PLAINTEXT, FrameDecoder, FrameEncoder
from .hpke import SUITE, PrivateKey, public_key_object
from .response_key import EXPORT_SIZE, RESPONSE_NONCE_SIZE, derive_response_key

__all__ = ["RequestEncoder", "RequestDecoder", "parse_hex_header"]


def parse_hex_header(name: str, value: str | None, size: int) -> bytes:
    """Decode a lowercase-hex header of exactly ``size`` bytes or raise MalformedEncapsulation."""
    if value is None:
        raise MalformedEncapsulation(f"missing {name} header")
    value = value.strip()
    if len(value) != 2 * size:
        raise MalformedEncapsulation(f"{name} must be {2 * size} hex digits, got {len(value)}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedEncapsulation(f"{name} is not hexadecimal") from None


class RequestEncoder(FrameEncoder):
    """Client side: seal a request body to ``key_config`` (``push``/``finish`` -> frames)."""

    def __init__(
        self,
        key_config: KeyConfig,
        mode: Mode = EHBP,
        *,
        frame_plaintext: int = DEFAULT_FRAME_PLAINTEXT,
    ) -> None:
        super().__init__(mode, frame_plaintext)
        key_config.require_supported()
        self.key_config = key_config
        enc, self._context = SUITE.create_sender_context(
            public_key_object(key_config.public_key), info=mode.request_info
        )
        self.enc: bytes = bytes(enc)
        self._secret = self._context.export(mode.response_export_label, EXPORT_SIZE)

    @property
    def headers(self) -> dict[str, str]:
        """Headers that must accompany the sealed body."""
        return {self.mode.encapsulated_key_header: self.enc.hex()}

    def _seal(self, plaintext: bytes) -> bytes:
        return self._context.seal(plaintext, b"")

    def response_decoder(
        self, nonce_header: str | None, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    ) -> ResponseDecoder:
        """The decoder for this request's response, given its response-nonce header value."""
        nonce = parse_hex_header(self.mode.response_nonce_header, nonce_header, RESPONSE_NONCE_SIZE)
        return ResponseDecoder(
            self.mode,
            derive_response_key(self._secret, self.enc, nonce),
            max_frame_size=max_frame_size,
        )

    def __repr__(self) -> str:
        return f"RequestEncoder(mode={self.mode}, key={self.key_config.fingerprint})"


class RequestDecoder(FrameDecoder):
    """Enclave side: open a request body sealed to one of ``keys``.

    With several candidate keys (EHBP requests carry no key id; during rotation the
    previous key is still accepted) the first frame decides which key the body was
    sealed to; the contexts that failed it are discarded, so a failed open never has
    to be undone. If it opens under none of them the body was sealed to a key this
    enclave does not hold: :class:`UnknownKey`, which servers answer with EHBP's
    key-config problem so the client re-fetches keys.
    """

    def __init__(
        self,
        mode: Mode,
        enc: bytes,
        keys: Sequence[PrivateKey],
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        super().__init__(mode, max_frame_size)
        if len(enc) != ENC_SIZE:
            raise MalformedEncapsulation(f"encapsulated key must be {ENC_SIZE} bytes")
        if not keys:
            raise UnknownKey("no decryption key is available for this request")
        self.enc = bytes(enc)
        try:
            self._candidates = [
                (key, SUITE.create_recipient_context(self.enc, key.kem_key, info=mode.request_info))
                for key in keys
            ]
        except ValueError:  # an invalid (e.g. all-zero, low-order) point
            raise MalformedEncapsulation("encapsulated key is not a valid X25519 point") from None

    @property
    def key(self) -> PrivateKey:
        """The key the body was sealed to (the first candidate until a frame decided)."""
        return self._candidates[0][0]

    def _open(self, ciphertext: bytes) -> bytes:
        for candidate in self._candidates:
            try:
                plaintext = candidate[1].open(ciphertext, b"")
            except PyHPKEError:
                continue
            self._candidates = [candidate]
            return plaintext
        if self.frames_opened == 0:
            # EHBP names no key: a first frame that opens under no key we hold means the
            # client used a stale key config; tell it so (422) rather than "tampered".
            raise UnknownKey(
                "request was sealed to a key this enclave does not hold; fetch its keys again"
            )
        raise DecryptionFailed(
            "request frame failed authentication (tampered, reordered, or sealed to another key)"
        )

    def response_encoder(
        self, nonce: bytes | None = None, *, frame_plaintext: int = DEFAULT_FRAME_PLAINTEXT
    ) -> ResponseEncoder:
        """The encoder for the response; ``nonce`` defaults to 32 fresh random bytes."""
        nonce = os.urandom(RESPONSE_NONCE_SIZE) if nonce is None else nonce
        secret = self._candidates[0][1].export(self.mode.response_export_label, EXPORT_SIZE)
        return ResponseEncoder(
            self.mode,
            derive_response_key(secret, self.enc, nonce),
            nonce,
            frame_plaintext=frame_plaintext,
        )

    def __repr__(self) -> str:
        return f"RequestDecoder(mode={self.mode}, frames={self.frames_opened})"
