"""QUIC variable-length integers (RFC 9000 §16), the length encoding of BHTTP and chunked OHTTP.

The two high bits of the first byte give the encoded size (1, 2, 4 or 8 bytes); the
rest is the value, big-endian. Decoding accepts any encoding of a value (RFC 9000
does not require the shortest); encoding always writes the shortest.
"""

from __future__ import annotations

__all__ = ["MAX_VARINT", "encode_varint", "decode_varint", "varint_size"]

MAX_VARINT = (1 << 62) - 1

_PREFIX = {1: 0x00, 2: 0x40, 4: 0x80, 8: 0xC0}


def varint_size(value: int) -> int:
    """Bytes needed to encode ``value``."""
    if value < 0 or value > MAX_VARINT:
        raise ValueError(f"varint out of range: {value}")
    if value < 1 << 6:
        return 1
    if value < 1 << 14:
        return 2
    if value < 1 << 30:
        return 4
    return 8


def encode_varint(value: int) -> bytes:
    """The shortest encoding of ``value`` (0 ≤ value < 2**62)."""
    if 0 <= value < 1 << 6:  # the common cases first: one chunk or field length
        return bytes((value,))
    if 0 <= value < 1 << 14:
        return (value | 0x4000).to_bytes(2, "big")
    size = varint_size(value)
    encoded = bytearray(value.to_bytes(size, "big"))
    encoded[0] |= _PREFIX[size]
    return bytes(encoded)


def decode_varint(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """``(value, next_offset)``, or ``None`` if ``data`` ends before the integer does."""
    if offset >= len(data):
        return None
    first = data[offset]
    if first < 0x40:  # one byte: every field-name and most length prefixes
        return first, offset + 1
    size = 1 << (first >> 6)
    end = offset + size
    if end > len(data):
        return None
    value = int.from_bytes(data[offset:end], "big") & ((1 << (8 * size - 2)) - 1)
    return value, end
