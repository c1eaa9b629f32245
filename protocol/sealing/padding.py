"""Length padding: what crosses the gateway reveals only bucketed sizes.

Streamed tokens are the leak that matters (Weiss et al., USENIX Security 2024, rebuilt
responses from token lengths alone). Each sealed chunk's plaintext is made a multiple
of a bucket size, so completions with the same number of events but different texts
give identical chunk-size sequences on the wire. Binary HTTP only allows padding at
the end of a message (RFC 9292 §3.8), so inside a stream the padding is carried by
the application format, where every parser ignores it:

- **the response head** gets a ``sealgate-padding`` header field (spaces), which the
  SDK removes before the application sees the headers;
- **server-sent events** are cut at line ends and each piece ends with an SSE comment
  line of spaces (``":" SP* LF``; WHATWG HTML §9.2.6: lines starting with a colon are
  ignored), which the SDK removes again, so the application reads the engine's bytes;
- **everything else** (whole requests, non-streamed responses, the final chunk) is
  padded with zero bytes after the message, which RFC 9292 allows.

EHBP (body only, so there is no head and no room after the message) gets what its
clients cannot tell apart from the engine's output: SSE comment lines, sized so each
frame's plaintext is a bucket multiple (``SsePadder(length_prefixed=False)``), and
trailing whitespace after a JSON body (:func:`json_padding`; RFC 8259 §2 allows
whitespace after the value), both by the enclave; the SDK's EHBP mode pads JSON request
bodies the same way.

What still leaks: the number of chunks (≈ events) and their timing, and sizes
rounded up to the bucket. An optional coalescing interval (enclave side) batches
events to blur timing at the cost of latency.
"""

from __future__ import annotations

from ..public.varint import encode_varint, varint_size
from .bhttp import Field

__all__ = [
    "PADDING_FIELD",
    "DEFAULT_REQUEST_BUCKET",
    "DEFAULT_CHUNK_BUCKET",
    "padding_to",
    "padded_field",
    "pad_head",
    "SsePadder",
    "strip_sse_padding",
    "json_padding",
    "is_json",
]

PADDING_FIELD = b"sealgate-padding"
DEFAULT_REQUEST_BUCKET = 1024
DEFAULT_CHUNK_BUCKET = 128


def padding_to(size: int, bucket: int) -> int:
    """Zero bytes to add so that ``size`` becomes a multiple of ``bucket`` (0 disables)."""
    if bucket <= 0:
        return 0
    return -size % bucket


def padded_field(head_size: int, bucket: int) -> Field | None:
    """A ``sealgate-padding`` field that brings an encoded head of ``head_size`` to the bucket.

    ``head_size`` is the size without the field; the field line adds its own length
    prefixes, so the value length is solved for exactly.
    """
    if bucket <= 0:
        return None
    name = encode_varint(len(PADDING_FIELD)) + PADDING_FIELD
    base = head_size + len(name)
    target = base + 1  # the smallest line: an empty value with its 1-byte length
    target += padding_to(target, bucket)
    while True:
        for length_size in (1, 2, 4):
            value = target - base - length_size
            if value >= 0 and varint_size(value) == length_size:
                return (PADDING_FIELD, b" " * value)
        target += bucket


def pad_head(head: bytes, bucket: int) -> bytes:
    """An indeterminate-length BHTTP head (ending in its header-section terminator, 0x00)
    with a :func:`padded_field` line inserted before that terminator: one encoding, no
    second pass."""
    field = padded_field(len(head), bucket)
    if field is None:
        return head
    name, value = field
    line = encode_varint(len(name)) + name + encode_varint(len(value)) + value
    return head[:-1] + line + b"\x00"


def json_padding(size: int, bucket: int) -> bytes:
    """Spaces to append to a JSON text of ``size`` bytes to reach a multiple of ``bucket``."""
    return b" " * padding_to(size, bucket)


def is_json(content_type: bytes | str) -> bool:
    """True for ``application/json`` and ``+json`` media types (parameters ignored)."""
    if isinstance(content_type, str):
        content_type = content_type.encode("latin-1")
    kind = content_type.split(b";")[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json")
    )


class SsePadder:
    """Cuts a ``text/event-stream`` body at line ends into padded content pieces.

    Each piece returned by :meth:`push` is whole lines plus one comment line, sized so
    that its BHTTP content chunk (length prefix + data) is a multiple of ``bucket``,
    or (``length_prefixed=False``, for EHBP frames) the piece itself is. A partial
    line waits for its end; :meth:`finish` returns what is left, unpadded (the native
    mode pads its final chunk with zeros after the message instead).
    """

    def __init__(
        self,
        bucket: int = DEFAULT_CHUNK_BUCKET,
        max_piece: int = 15 * 1024,
        *,
        length_prefixed: bool = True,
    ) -> None:
        if bucket < 4:
            raise ValueError("bucket must be at least 4 bytes")
        self.bucket = bucket
        self.max_piece = max_piece
        self.length_prefixed = length_prefixed
        self._buffer = bytearray()
        self._comments: dict[int, bytes] = {}

    def _pad(self, lines: bytes) -> bytes:
        minimum = len(lines) + 2  # ":" LF
        comment = self._comments.get(minimum)
        if comment is None:
            comment = b":" + b" " * (self._padded(minimum) - minimum) + b"\n"
            if len(self._comments) < 4096:  # sizes repeat: events are alike
                self._comments[minimum] = comment
        return lines + comment

    def _padded(self, minimum: int) -> int:
        """The padded piece size for a piece of at least ``minimum`` bytes."""
        if not self.length_prefixed:
            return minimum + padding_to(minimum, self.bucket)
        target = varint_size(minimum) + minimum
        target += padding_to(target, self.bucket)
        while True:
            for length_size in (1, 2, 4):
                data = target - length_size
                if data >= minimum and varint_size(data) == length_size:
                    return data
            target += self.bucket

    def push(self, data: bytes) -> list[bytes]:
        """Padded pieces for every complete line so far (lines longer than
        ``max_piece`` are cut, the rest of the line following in later pieces)."""
        if not self._buffer and data.endswith(b"\n") and len(data) <= self.max_piece:
            return [self._pad(bytes(data))]  # the common case: whole events, nothing held
        self._buffer += data
        end = self._buffer.rfind(b"\n") + 1
        if end == 0 and len(self._buffer) < self.max_piece:
            return []
        if end == 0:  # one very long line: pass it on in pieces, padding only at a line end
            piece = bytes(self._buffer[: self.max_piece])
            del self._buffer[: self.max_piece]
            return [piece]
        ready = bytes(self._buffer[:end])
        del self._buffer[:end]
        pieces = []
        while len(ready) > self.max_piece:
            cut = ready.rfind(b"\n", 0, self.max_piece) + 1 or self.max_piece
            pieces.append(ready[:cut] if ready[cut - 1 : cut] != b"\n" else self._pad(ready[:cut]))
            ready = ready[cut:]
        if ready:
            pieces.append(self._pad(ready))
        return pieces

    def finish(self) -> bytes:
        """The unterminated rest of the stream, if any."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


def strip_sse_padding(piece: bytes) -> bytes:
    """Remove the padding comment line :class:`SsePadder` appended to ``piece``, if any.

    That is a last line of only ``":"`` and spaces; found from the end with ``rfind``
    (this runs once per streamed event on the client).
    """
    last = len(piece) - 1
    if last < 1 or piece[last] != 0x0A:  # LF
        return piece
    start = piece.rfind(b"\n", 0, last) + 1
    # ":" then only spaces up to the final LF (counted in place, nothing copied)
    if piece[start] != 0x3A or piece.count(b" ", start + 1, last) != last - start - 1:
        return piece
    return piece[:start]
