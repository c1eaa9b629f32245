"""Binary HTTP messages (RFC 9292): the plaintext that the native mode seals.

Known-length (framing indicators 0 and 1) and indeterminate-length (2 and 3) requests
and responses, with informational responses, trailers, padding and truncation (§3.8).
:class:`Request` and :class:`Response` encode and decode whole messages;
:class:`StreamEncoder` writes an indeterminate-length message piece by piece and
:class:`MessageDecoder` reads either form incrementally (``push``/``finish`` -> events),
so a streamed response is decoded token by token as its chunks are opened.

Every length is checked against :class:`Limits` before anything is buffered for it.
Field names and values, the method and the request target are validated so that a
decoded message can be re-serialised as HTTP/1.1 without smuggling anything: names
are RFC 9110 tokens, values and targets carry no CR, LF or NUL.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto

from ..public.errors import BinaryMessageTooLarge, EncoderStateError, MalformedBinaryMessage
from ..public.varint import decode_varint, encode_varint

__all__ = [
    "Field",
    "Limits",
    "Request",
    "Response",
    "RequestHead",
    "ResponseHead",
    "Informational",
    "Data",
    "Trailers",
    "EndOfMessage",
    "Event",
    "MessageDecoder",
    "StreamEncoder",
    "KNOWN_LENGTH_REQUEST",
    "KNOWN_LENGTH_RESPONSE",
    "INDETERMINATE_REQUEST",
    "INDETERMINATE_RESPONSE",
]

MEDIA_TYPE = "message/bhttp"

KNOWN_LENGTH_REQUEST = 0
KNOWN_LENGTH_RESPONSE = 1
INDETERMINATE_REQUEST = 2
INDETERMINATE_RESPONSE = 3

Field = tuple[bytes, bytes]

_U16 = struct.Struct(">H")

# RFC 9110 §5.6.2 tchar; §5.5 field values exclude CR, LF and NUL.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds a decoder enforces before allocating."""

    max_control: int = 8 * 1024  # each of method, scheme, authority, path
    max_field_section: int = 64 * 1024  # encoded bytes of one header or trailer section
    max_fields: int = 256  # field lines in one section
    max_content: int = 64 * 1024 * 1024  # total content bytes of one message
    max_informational: int = 8  # informational (1xx) responses before the final one


DEFAULT_LIMITS = Limits()


def _check_fields(fields: Iterable[Field]) -> None:
    for name, value in fields:
        if not _TOKEN.fullmatch(name):
            raise MalformedBinaryMessage(f"field name {name[:40]!r} is not an HTTP token")
        if _BAD_VALUE.search(value):
            raise MalformedBinaryMessage(f"value of field {name.decode()!r} contains CR, LF or NUL")


def _check_control(method: bytes, scheme: bytes, authority: bytes, path: bytes) -> None:
    if not _TOKEN.fullmatch(method):
        raise MalformedBinaryMessage("request method is not an HTTP token")
    for name, value in (("scheme", scheme), ("authority", authority), ("path", path)):
        if _BAD_TARGET.search(value):
            raise MalformedBinaryMessage(f"request {name} contains control characters or spaces")


def _lp(value: bytes) -> bytes:
    size = len(value)
    if size < 0x40:  # the common 1-byte length, written inline
        return bytes((size,)) + value
    return encode_varint(size) + value


def _field_lines(fields: Iterable[Field]) -> bytes:
    return b"".join(_lp(name.lower()) + _lp(value) for name, value in fields)


def _known_fields(fields: Sequence[Field]) -> bytes:
    return _lp(_field_lines(fields))


def _indeterminate_fields(fields: Sequence[Field]) -> bytes:
    return _field_lines(fields) + b"\x00"


def _sections(
    indeterminate: bool, headers: Sequence[Field], content: bytes, trailers: Sequence[Field]
) -> list[bytes]:
    if indeterminate:
        body = (_lp(content) if content else b"") + b"\x00"
        return [_indeterminate_fields(headers), body, _indeterminate_fields(trailers)]
    return [_known_fields(headers), _lp(content), _known_fields(trailers)]


def _assemble(start: bytes, sections: list[bytes], padding: int, truncate: bool) -> bytes:
    if padding < 0:
        raise ValueError("padding must not be negative")
    if truncate:  # every empty section, in either form, encodes as one zero byte
        while sections and sections[-1] == b"\x00":
            sections.pop()
    return start + b"".join(sections) + bytes(padding)


def _control(method: bytes, scheme: bytes, authority: bytes, path: bytes) -> bytes:
    return _lp(method) + _lp(scheme) + _lp(authority) + _lp(path)


def _check_status(status: int, *, informational: bool) -> None:
    low, high = (100, 199) if informational else (200, 599)
    if not low <= status <= high:
        kind = "informational" if informational else "final"
        raise MalformedBinaryMessage(f"{status} is not a valid {kind} status code")


def _lp_at(data: bytes, offset: int, end: int) -> tuple[bytes, int]:
    """The length-prefixed value at ``offset`` of a whole field section, and what follows."""
    first = data[offset]
    if first < 0x40:  # the common 1-byte length, read inline
        start = offset + 1
        stop = start + first
    else:
        decoded = decode_varint(data, offset)
        if decoded is None:
            raise MalformedBinaryMessage("field section ends inside a length")
        length, start = decoded
        stop = start + length
    if stop > end:
        raise MalformedBinaryMessage("field section ends inside a field")
    return data[start:stop], stop


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestHead:
    """Request control data and header section."""

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: tuple[Field, ...] = ()


@dataclass(frozen=True, slots=True)
class Informational:
    """An informational (1xx) response and its header section."""

    status: int
    headers: tuple[Field, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """The final status code and header section of a response."""

    status: int
    headers: tuple[Field, ...] = ()


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of content, in order; boundaries carry no meaning."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Trailers:
    """The trailer section (only emitted when it is not empty)."""

    fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The message is complete and valid; ``padding`` zero bytes followed it."""

    padding: int = 0


Event = RequestHead | Informational | ResponseHead | Data | Trailers | EndOfMessage


# -- whole messages -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """A whole HTTP request."""

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()

    def __post_init__(self) -> None:
        _check_control(self.method, self.scheme, self.authority, self.path)
        _check_fields(self.headers)
        _check_fields(self.trailers)

    def to_bytes(
        self, *, indeterminate: bool = False, padding: int = 0, truncate: bool = False
    ) -> bytes:
        """Known-length (default) or indeterminate-length encoding, then ``padding`` zeros.

        ``truncate`` omits empty sections at the end (RFC 9292 §3.8).
        """
        framing = INDETERMINATE_REQUEST if indeterminate else KNOWN_LENGTH_REQUEST
        start = encode_varint(framing) + _control(
            self.method, self.scheme, self.authority, self.path
        )
        sections = _sections(indeterminate, self.headers, self.content, self.trailers)
        return _assemble(start, sections, padding, truncate)

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request:
        """Decode one complete request (either form); raises :class:`MalformedBinaryMessage`."""
        decoder = MessageDecoder(request=True, limits=limits)
        events = decoder.push(data) + decoder.finish()
        head = events[0]
        assert isinstance(head, RequestHead)
        return cls(
            head.method,
            head.scheme,
            head.authority,
            head.path,
            head.headers,
            b"".join(e.data for e in events if isinstance(e, Data)),
            next((e.fields for e in events if isinstance(e, Trailers)), ()),
        )


@dataclass(frozen=True, slots=True)
class Response:
    """A whole HTTP response, with any informational responses before it."""

    status: int
    headers: tuple[Field, ...] = ()
    content: bytes = b""
    trailers: tuple[Field, ...] = ()
    informational: tuple[Informational, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_status(self.status, informational=False)
        for info in self.informational:
            _check_status(info.status, informational=True)
            _check_fields(info.headers)
        _check_fields(self.headers)
        _check_fields(self.trailers)

    def to_bytes(
        self, *, indeterminate: bool = False, padding: int = 0, truncate: bool = False
    ) -> bytes:
        """Known-length (default) or indeterminate-length encoding, then ``padding`` zeros.

        ``truncate`` omits empty sections at the end (RFC 9292 §3.8).
        """
        fields = _indeterminate_fields if indeterminate else _known_fields
        framing = INDETERMINATE_RESPONSE if indeterminate else KNOWN_LENGTH_RESPONSE
        start = (
            encode_varint(framing)
            + b"".join(encode_varint(i.status) + fields(i.headers) for i in self.informational)
            + encode_varint(self.status)
        )
        sections = _sections(indeterminate, self.headers, self.content, self.trailers)
        return _assemble(start, sections, padding, truncate)

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Response:
        """Decode one complete response (either form); raises :class:`MalformedBinaryMessage`."""
        decoder = MessageDecoder(request=False, limits=limits)
        events = decoder.push(data) + decoder.finish()
        head = next(e for e in events if isinstance(e, ResponseHead))
        return cls(
            head.status,
            head.headers,
            b"".join(e.data for e in events if isinstance(e, Data)),
            next((e.fields for e in events if isinstance(e, Trailers)), ()),
            tuple(e for e in events if isinstance(e, Informational)),
        )


# -- streaming encoder --------------------------------------------------------------------


class StreamEncoder:
    """Writes one indeterminate-length message: ``head``, any number of ``data``, ``end``."""

    def __init__(self) -> None:
        self._state = "head"

    def _advance(self, expected: str, to: str) -> None:
        if self._state != expected:
            raise EncoderStateError(f"BHTTP stream encoder: {to} called in state {self._state}")
        self._state = to

    def request_head(
        self, method: bytes, scheme: bytes, authority: bytes, path: bytes, headers: Sequence[Field]
    ) -> bytes:
        """Framing indicator, control data and header section of a request."""
        _check_control(method, scheme, authority, path)
        _check_fields(headers)
        self._advance("head", "data")
        return (
            encode_varint(INDETERMINATE_REQUEST)
            + _control(method, scheme, authority, path)
            + _indeterminate_fields(headers)
        )

    def response_head(
        self,
        status: int,
        headers: Sequence[Field],
        informational: Sequence[Informational] = (),
    ) -> bytes:
        """Framing indicator, informational responses, status and header section."""
        _check_status(status, informational=False)
        _check_fields(headers)
        for info in informational:
            _check_status(info.status, informational=True)
            _check_fields(info.headers)
        self._advance("head", "data")
        return (
            encode_varint(INDETERMINATE_RESPONSE)
            + b"".join(
                encode_varint(i.status) + _indeterminate_fields(i.headers) for i in informational
            )
            + encode_varint(status)
            + _indeterminate_fields(headers)
        )

    def data(self, content: bytes) -> bytes:
        """One content chunk (nothing for empty content: a zero length ends the content)."""
        if self._state != "data":
            raise EncoderStateError(f"BHTTP stream encoder: data called in state {self._state}")
        size = len(content)
        if size < 0x40:  # RFC 9000 §16 lengths, the 1- and 2-byte forms written inline
            return bytes((size,)) + content if size else b""
        if size < 0x4000:
            return _U16.pack(size | 0x4000) + content
        return encode_varint(size) + content

    def end(self, trailers: Sequence[Field] = (), padding: int = 0) -> bytes:
        """Content terminator, trailer section and ``padding`` zero bytes."""
        _check_fields(trailers)
        self._advance("data", "done")
        return b"\x00" + _indeterminate_fields(trailers) + bytes(padding)


# -- incremental decoder ------------------------------------------------------------------


class _S(Enum):
    FRAMING = auto()
    CONTROL = auto()
    STATUS = auto()
    HEADERS = auto()
    CONTENT = auto()
    TRAILERS = auto()
    PADDING = auto()
    FAILED = auto()


class MessageDecoder:
    """Incremental RFC 9292 decoder for one request or one response.

    ``push(data)`` returns the events that ``data`` completed; ``finish()`` is called at
    the end of the message and returns the rest, ending with :class:`EndOfMessage`.
    Content is emitted as it arrives, in :class:`Data` events; field sections are
    buffered whole, up to ``limits.max_field_section``.
    """

    def __init__(self, *, request: bool, limits: Limits = DEFAULT_LIMITS) -> None:
        self.request = request
        self.limits = limits
        self._buf = bytearray()
        self._state = _S.FRAMING
        self._known_length = True
        self._control: list[bytes] = []
        self._status = 0
        self._informational = 0
        self._remaining = -1  # known-length content, or current indeterminate chunk; -1: unset
        self._content_total = 0
        self._boundary = False  # at the start of a section, nothing of it consumed
        self._padding = 0
        self._ended = False

    # public API ---------------------------------------------------------------------
    def push(self, data: bytes) -> list[Event]:
        """Feed bytes; return the events now complete."""
        if self._state is _S.CONTENT and self._remaining == -1 and not self._buf:
            piece = self._whole_chunk(data)
            if piece is not None:
                return [Data(piece)]
        if self._state is _S.FAILED or self._ended:
            raise EncoderStateError("BHTTP decoder used after it failed or finished")
        events: list[Event] = []
        try:
            if self._state is _S.FRAMING and not self._buf:
                head = self._whole_head(data)
                if head is not None:
                    events.append(head[0])
                    data = data[head[1] :]
            self._buf += data
            while self._step(events):
                pass
        except MalformedBinaryMessage:
            self._state = _S.FAILED
            raise
        return events

    def finish(self) -> list[Event]:
        """End of input: complete a truncated message (§3.8) or raise if it is incomplete."""
        if self._state is _S.FAILED or self._ended:
            raise EncoderStateError("BHTTP decoder used after it failed or finished")
        events: list[Event] = []
        try:
            self._finish(events)
        except MalformedBinaryMessage:
            self._state = _S.FAILED
            raise
        self._ended = True
        return events

    def _whole_chunk(self, data: bytes) -> bytes | None:
        """Fast path: ``data`` is exactly one whole indeterminate-length content chunk.

        Returns its content, with the state updated exactly as the general path would,
        or None (nothing changed) for every other input, which the general path handles.
        """
        if self._known_length or self._ended or not data:
            return None
        first = data[0]
        if first < 0x40:  # RFC 9000 §16: the 1- and 2-byte forms, decoded inline
            length, start = first, 1
        elif first < 0x80 and len(data) > 1:
            length, start = ((first & 0x3F) << 8) | data[1], 2
        else:
            return None
        if (
            length == 0
            or start + length != len(data)
            or self._content_total + length > self.limits.max_content
        ):
            return None
        self._content_total += length
        self._boundary = False
        return bytes(data[start:])

    def _whole_head(self, data: bytes) -> tuple[Event, int] | None:
        """Fast path: the framing indicator, control data or final status and the header
        section all at the start of ``data``: the head event and its encoded size.

        None (nothing changed) for anything else: an incomplete head, informational
        responses, long control data, any size over a limit; the general path takes
        those and raises what it raises. The checks on complete values are the same.
        """
        end = len(data)
        if type(data) is not bytes or end < 3:
            return None
        indicator = data[0]
        if indicator not in ((0, 2) if self.request else (1, 3)):
            return None
        limits = self.limits
        control: list[bytes] = []
        status = 0
        offset = 1
        if self.request:
            for _ in range(4):
                length = data[offset] if offset < end else 0x40
                if length >= 0x40 or length > limits.max_control:
                    return None
                offset += 1 + length
                control.append(data[offset - length : offset])
            if offset > end:
                return None
        else:  # final statuses (200-599) are 2-byte varints
            first = data[1]
            if not 0x40 <= first < 0x80:
                return None
            status = ((first & 0x3F) << 8) | data[2]
            if not 200 <= status <= 599:
                return None
            offset = 3
        if indicator < 2:  # known-length field section
            decoded = decode_varint(data, offset)
            if decoded is None or decoded[0] > limits.max_field_section:
                return None
            start, after = decoded[1], decoded[1] + decoded[0]
            if after > end:
                return None
            section = data[start:after]
        else:  # indeterminate: field lines up to a zero-length name
            start = offset
            count = 0
            while True:
                decoded = decode_varint(data, offset)
                if decoded is None or offset - start > limits.max_field_section:
                    return None
                if decoded[0] == 0:
                    break
                count += 1
                decoded = decode_varint(data, decoded[1] + decoded[0])
                if decoded is None or count > limits.max_fields:
                    return None
                offset = decoded[1] + decoded[0]
            section, after = data[start:offset], decoded[1]
        if self.request:
            _check_control(*control)
        fields = self._parse_field_lines(section)
        self._known_length = indicator < 2
        self._state = _S.CONTENT
        self._boundary = True
        if self.request:
            self._control = control
            return self._request_head(fields), after
        self._status = status
        return ResponseHead(status, fields), after

    # parsing helpers ------------------------------------------------------------------
    def _varint(self) -> int | None:
        buf = self._buf
        if buf and buf[0] < 0x40:  # the common 1-byte form, read inline
            value = buf[0]
            del buf[:1]
            return value
        decoded = decode_varint(buf)
        if decoded is None:
            return None
        value, end = decoded
        del buf[:end]
        return value

    def _take_lp(self, limit: int, what: str) -> bytes | None:
        buf = self._buf
        if buf and buf[0] < 0x40:  # the common 1-byte length, read inline
            length, start = buf[0], 1
        else:
            decoded = decode_varint(buf)
            if decoded is None:
                return None
            length, start = decoded
        if length > limit:
            raise BinaryMessageTooLarge(f"{what} of {length} bytes exceeds the limit of {limit}")
        if len(self._buf) < start + length:
            return None
        value = bytes(self._buf[start : start + length])
        del self._buf[: start + length]
        return value

    def _parse_field_lines(self, data: bytes) -> tuple[Field, ...]:
        if not data:
            return ()
        fields: list[Field] = []
        offset = 0
        end = len(data)
        max_fields = self.limits.max_fields
        while offset < end:
            name, offset = _lp_at(data, offset, end)
            if not name:
                raise MalformedBinaryMessage("a field line has an empty name")
            value, offset = _lp_at(data, offset, end)
            fields.append((name, value))
            if len(fields) > max_fields:
                raise BinaryMessageTooLarge(f"more than {max_fields} fields")
        _check_fields(fields)
        return tuple(fields)

    def _fields(self) -> tuple[Field, ...] | None:
        """One field section in the message's form, or None if more bytes are needed."""
        limit = self.limits.max_field_section
        if self._known_length:
            section = self._take_lp(limit, "field section")
            if section is None:
                return None
            return self._parse_field_lines(section)
        # Indeterminate: field lines until a zero-length name. Scan without consuming.
        if self._buf[:1] == b"\x00":  # an empty section, as trailers nearly always are
            del self._buf[:1]
            return ()
        view = memoryview(self._buf)
        offset = 0
        count = 0
        while True:
            if offset > limit:
                raise BinaryMessageTooLarge(f"field section exceeds the limit of {limit} bytes")
            if offset < len(view) and view[offset] < 0x40:  # 1-byte name length, inline
                name_length, after_name_length = view[offset], offset + 1
            else:
                decoded = decode_varint(view, offset)
                if decoded is None:
                    return None
                name_length, after_name_length = decoded
            if name_length == 0:
                lines = bytes(view[:offset])
                del view
                del self._buf[:after_name_length]
                return self._parse_field_lines(lines)
            count += 1
            if count > self.limits.max_fields:
                raise BinaryMessageTooLarge(f"more than {self.limits.max_fields} fields")
            name_end = after_name_length + name_length
            decoded = decode_varint(view, name_end) if name_end <= len(view) else None
            if decoded is None:
                if name_end - offset > limit:
                    raise BinaryMessageTooLarge(f"field section exceeds the limit of {limit} bytes")
                return None
            value_length, value_start = decoded
            offset = value_start + value_length
            if offset > len(view):
                if offset > limit:
                    raise BinaryMessageTooLarge(f"field section exceeds the limit of {limit} bytes")
                return None

    def _request_head(self, headers: tuple[Field, ...]) -> RequestHead:
        method, scheme, authority, path = self._control
        return RequestHead(method, scheme, authority, path, headers)

    def _step(self, events: list[Event]) -> bool:
        """Advance by one element; False when more input is needed."""
        state = self._state
        if state is _S.FRAMING:
            indicator = self._varint()
            if indicator is None:
                return False
            allowed = (0, 2) if self.request else (1, 3)
            if indicator not in allowed:
                kind = "request" if self.request else "response"
                raise MalformedBinaryMessage(f"framing indicator {indicator} is not a {kind}")
            self._known_length = indicator < 2
            self._state = _S.CONTROL if self.request else _S.STATUS
            return True
        if state is _S.CONTROL:
            value = self._take_lp(self.limits.max_control, "request control data")
            if value is None:
                return False
            self._control.append(value)
            if len(self._control) == 4:
                method, scheme, authority, path = self._control
                _check_control(method, scheme, authority, path)
                self._state = _S.HEADERS
                self._boundary = True
            return True
        if state is _S.STATUS:
            status = self._varint()
            if status is None:
                return False
            if 100 <= status <= 199:
                self._informational += 1
                if self._informational > self.limits.max_informational:
                    raise BinaryMessageTooLarge("too many informational responses")
            else:
                _check_status(status, informational=False)
            self._status = status
            self._state = _S.HEADERS
            self._boundary = True
            return True
        if state is _S.HEADERS:
            fields = self._fields()
            if fields is None:
                return False
            if self.request:
                events.append(self._request_head(fields))
                self._state = _S.CONTENT
            elif self._status < 200:
                events.append(Informational(self._status, fields))
                self._state = _S.STATUS
            else:
                events.append(ResponseHead(self._status, fields))
                self._state = _S.CONTENT
            return True
        if state is _S.CONTENT:
            return self._content(events)
        if state is _S.TRAILERS:
            fields = self._fields()
            if fields is None:
                return False
            self._boundary = False
            if fields:
                events.append(Trailers(fields))
            self._state = _S.PADDING
            return True
        if state is _S.PADDING:
            if self._buf:
                if self._buf.count(0) != len(self._buf):  # in C: padding is often 1 KiB
                    raise MalformedBinaryMessage("non-zero bytes after the end of the message")
                self._padding += len(self._buf)
                self._buf.clear()
            return False
        return False

    def _content(self, events: list[Event]) -> bool:
        if self._remaining == -1:  # expecting a length: of the content, or of the next chunk
            length = self._varint()
            if length is None:
                return False
            self._boundary = False
            if length == 0:
                # Known-length: empty content. Indeterminate: the content terminator.
                self._end_content()
                return True
            self._content_total += length
            if self._content_total > self.limits.max_content:
                raise BinaryMessageTooLarge(
                    f"content exceeds the limit of {self.limits.max_content} bytes"
                )
            self._remaining = length
        if not self._buf:
            return False
        piece = bytes(self._buf[: self._remaining])
        del self._buf[: len(piece)]
        self._remaining -= len(piece)
        events.append(Data(piece))
        if self._remaining == 0:
            self._remaining = -1
            if self._known_length:
                self._end_content()
        return True

    def _end_content(self) -> None:
        self._remaining = -1
        self._state = _S.TRAILERS
        self._boundary = True

    def _finish(self, events: list[Event]) -> None:
        state = self._state
        truncatable = not self._buf and self._boundary
        if state is _S.HEADERS and truncatable and (self.request or self._status >= 200):
            # §3.8 allows omitting empty trailing sections; the RFC 9458 example omits the
            # header section too, so every section after the control data may be absent.
            self._state = _S.CONTENT
            if self.request:
                events.append(self._request_head(()))
            else:
                events.append(ResponseHead(self._status, ()))
            state = _S.CONTENT
        if state is _S.CONTENT and truncatable:
            state = _S.TRAILERS
        if state is _S.TRAILERS and truncatable:
            state = _S.PADDING
        if state is not _S.PADDING:
            raise MalformedBinaryMessage(
                "binary HTTP message is truncated inside "
                + {
                    _S.FRAMING: "its framing indicator",
                    _S.CONTROL: "its request control data",
                    _S.STATUS: "its status code",
                    _S.HEADERS: "its header section",
                    _S.CONTENT: "its content",
                    _S.TRAILERS: "its trailer section",
                }.get(state, "itself")
            )
        events.append(EndOfMessage(self._padding))
