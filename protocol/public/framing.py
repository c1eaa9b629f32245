"""Length-prefixed frames: ``uint32 big-endian length || ciphertext``.

:class:`FrameReader` splits a byte stream into frames incrementally, refusing a
length prefix above its limit before buffering anything for it. It knows nothing
of cryptography, so the gateway could use it to count frames without a key.
"""

from __future__ import annotations

import struct

from .errors import FrameTooLarge, TruncatedMessage

__all__ = ["FrameReader", "frame", "LENGTH_PREFIX_SIZE", "DEFAULT_MAX_FRAME_SIZE"]

LENGTH_PREFIX_SIZE = 4
MAX_LENGTH = 0xFFFF_FFFF
DEFAULT_MAX_FRAME_SIZE = 1024 * 1024 + 16  # 1 MiB of plaintext plus the AEAD tag

_PREFIX = struct.Struct(">I")


def frame(ciphertext: bytes) -> bytes:
    """Prefix ``ciphertext`` with its length."""
    if len(ciphertext) > MAX_LENGTH:
        raise FrameTooLarge("a frame cannot exceed 2**32 - 1 bytes")
    return _PREFIX.pack(len(ciphertext)) + ciphertext


class FrameReader:
    """Incremental frame splitter: ``push(bytes) -> [frame payloads]``, then ``finish()``."""

    __slots__ = ("_buffer", "_max_frame_size")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if not 0 < max_frame_size <= MAX_LENGTH:
            raise ValueError("max_frame_size must be between 1 and 2**32 - 1")
        self._buffer = bytearray()
        self._max_frame_size = max_frame_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a whole frame."""
        return len(self._buffer)

    def push(self, data: bytes) -> list[bytes]:
        """Add bytes; return every frame payload they complete (possibly empty payloads)."""
        self._buffer += data
        frames: list[bytes] = []
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= LENGTH_PREFIX_SIZE:
            (length,) = _PREFIX.unpack_from(buffer, offset)
            if length > self._max_frame_size:
                raise FrameTooLarge(
                    f"frame of {length} bytes exceeds the limit of {self._max_frame_size} bytes"
                )
            end = offset + LENGTH_PREFIX_SIZE + length
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[offset + LENGTH_PREFIX_SIZE : end]))
            offset = end
        if offset:
            del buffer[:offset]
        return frames

    def finish(self) -> None:
        """Raise :class:`TruncatedMessage` if the stream ended inside a frame."""
        if self._buffer:
            raise TruncatedMessage(
                f"body ended inside a frame ({len(self._buffer)} bytes of an incomplete frame)"
            )
