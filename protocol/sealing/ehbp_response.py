"""EHBP response bodies: sealed by the enclave under the key derived from the request's HPKE export.

:class:`ResponseEncoder` (enclave) and :class:`ResponseDecoder` (client) number
frames from 0; frame ``i`` uses nonce ``nonce_base XOR i`` (see ``response_key``).
"""

from __future__ import annotations

from ..public.framing import DEFAULT_MAX_FRAME_SIZE
from ..public.modes import Mode
from .ehbp_stream import DEFAULT_FRAME_PLAINTEXT, FrameDecoder, FrameEncoder
from .response_key import ResponseKey, derive_response_key

__all__ = ["ResponseEncoder", "ResponseDecoder"]


class ResponseEncoder(FrameEncoder):
    """Enclave side: seal a response body frame by frame as the engine produces it."""

    def __init__(
        self,
        mode: Mode,
        key: ResponseKey,
        nonce: bytes,
        *,
        frame_plaintext: int = DEFAULT_FRAME_PLAINTEXT,
    ) -> None:
        super().__init__(mode, frame_plaintext)
        self._key = key
        self.nonce = nonce
        self._sequence = 0

    @property
    def headers(self) -> dict[str, str]:
        """The response-nonce header the client needs to derive the key."""
        return {self.mode.response_nonce_header: self.nonce.hex()}

    def _seal(self, plaintext: bytes) -> bytes:
        ciphertext = self._key.seal(self._sequence, plaintext, b"")
        self._sequence += 1
        return ciphertext


class ResponseDecoder(FrameDecoder):
    """Client side: open a response body incrementally, failing closed on any defect."""

    def __init__(
        self, mode: Mode, key: ResponseKey, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    ) -> None:
        super().__init__(mode, max_frame_size)
        self._key = key
        self._sequence = 0

    @classmethod
    def from_secret(
        cls,
        mode: Mode,
        secret: bytes,
        enc: bytes,
        nonce: bytes,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> ResponseDecoder:
        """Build from a saved HPKE export (EHBP's session-recovery material) and the nonce."""
        return cls(mode, derive_response_key(secret, enc, nonce), max_frame_size=max_frame_size)

    def _open(self, ciphertext: bytes) -> bytes:
        plaintext = self._key.open(self._sequence, ciphertext, b"")
        self._sequence += 1
        return plaintext
