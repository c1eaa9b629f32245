"""The per-event fast paths decode exactly as the general parsers do, for any split.

Each fast path (one whole content chunk per ``MessageDecoder.push``, one whole sealed
chunk per ``_ChunkReader.push``, whole SSE events per ``SsePadder.push``) is compared
against the general path on the same input: a decoder whose fast path is switched
off, or the same bytes fed one at a time (which never takes a fast path).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealgate.protocol.public.errors import ProtocolError
from sealgate.protocol.public.varint import encode_varint
from sealgate.protocol.sealing.bhttp import (
    Event,
    Informational,
    Limits,
    MessageDecoder,
    Request,
    Response,
    StreamEncoder,
)
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.ohttp import (
    SEND_CHUNK,
    ChunkedRequestOpener,
    ChunkedRequestSealer,
    _ChunkReader,
)
from sealgate.protocol.sealing.padding import SsePadder, strip_sse_padding

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEY = PrivateKey.generate()
CONFIG = KEY.key_config(key_id=3)
LOOKUP = {3: (CONFIG, KEY)}.get


class _GeneralDecoder(MessageDecoder):
    """The reference: the same decoder with its fast paths switched off."""

    def _whole_chunk(self, data: bytes) -> bytes | None:
        return None

    def _whole_head(self, data: bytes) -> tuple[Event, int] | None:
        return None


def _pieces(wire: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    return [wire[a:b] for a, b in itertools.pairwise(bounds)]


def _run(decoder: MessageDecoder, pieces: list[bytes]) -> list[object]:
    """Events, or the error type and the events before it."""
    events: list[object] = []
    try:
        for piece in pieces:
            events += decoder.push(piece)
        events += decoder.finish()
    except ProtocolError as exc:
        events.append(type(exc))
    return events


def _stream(contents: list[bytes], trailers: bool) -> tuple[bytes, list[int]]:
    """An indeterminate-length response and the offsets where its content chunks start."""
    encoder = StreamEncoder()
    wire = encoder.response_head(200, [(b"content-type", b"text/event-stream")])
    bounds = [len(wire)]
    for content in contents:
        wire += encoder.data(content)
        bounds.append(len(wire))
    wire += encoder.end([(b"x-done", b"1")] if trailers else [])
    return wire, bounds


CONTENTS = st.lists(
    st.one_of(st.binary(min_size=1, max_size=80), st.integers(60, 20000).map(b"d".__mul__)),
    max_size=6,
)


@SETTINGS
@given(CONTENTS, st.booleans(), st.lists(st.integers(0, 100_000), max_size=12), st.booleans())
def test_message_decoder_fast_path_matches_general_path(
    contents: list[bytes], trailers: bool, cuts: list[int], chunk_aligned: bool
) -> None:
    wire, bounds = _stream(contents, trailers)
    # Chunk-aligned pushes take the fast path on every content chunk; the extra cuts
    # split some chunks so that both paths alternate within one message.
    pieces = _pieces(wire, cuts + (bounds if chunk_aligned else []))
    assert _run(MessageDecoder(request=False), pieces) == _run(
        _GeneralDecoder(request=False), pieces
    )


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8), st.integers(1, 200))
def test_message_decoder_paths_agree_on_arbitrary_bytes(
    tail: bytes, cuts: list[int], max_content: int
) -> None:
    """Garbage after a valid head, and a small content limit: same events, same errors."""
    head, _ = _stream([], False)
    wire = head[: head.rindex(b"\x00\x00")]  # the head alone: the decoder is in the content
    pieces = [wire, *_pieces(tail, cuts)]
    limits = Limits(max_content=max_content)
    fast = _run(MessageDecoder(request=False, limits=limits), pieces)
    general = _run(_GeneralDecoder(request=False, limits=limits), pieces)
    assert fast == general


def test_fast_path_enforces_the_content_limit() -> None:
    wire, bounds = _stream([b"a" * 50, b"b" * 50], False)
    decoder = MessageDecoder(request=False, limits=Limits(max_content=60))
    decoder.push(wire[: bounds[1]])
    with pytest.raises(ProtocolError):
        decoder.push(wire[bounds[1] : bounds[2]])


def _read(reader: _ChunkReader, pieces: list[bytes]) -> list[object]:
    out: list[object] = []
    try:
        for piece in pieces:
            out += reader.push(piece)
        out.append(reader.final_chunk())
    except ProtocolError as exc:
        out.append(type(exc))
    return out


@SETTINGS
@given(
    st.lists(
        st.one_of(st.binary(min_size=1, max_size=80), st.integers(60, 20000).map(b"c".__mul__)),
        max_size=5,
    ),
    st.binary(max_size=100),
    st.lists(st.integers(0, 100_000), max_size=8),
    st.sampled_from([30, 200, 1 << 16]),
)
def test_chunk_reader_fast_path_matches_byte_at_a_time(
    chunks: list[bytes], final: bytes, cuts: list[int], max_chunk: int
) -> None:
    wire = b"".join(encode_varint(len(c)) + c for c in chunks) + b"\x00" + final
    bounds, offset = [], 0
    for chunk in chunks:
        offset += len(encode_varint(len(chunk))) + len(chunk)
        bounds.append(offset)
    pieces = _pieces(wire, cuts + bounds)  # chunk-aligned: the fast path where it applies
    one_at_a_time = [wire[i : i + 1] for i in range(len(wire))]
    assert _read(_ChunkReader(max_chunk), pieces) == _read(_ChunkReader(max_chunk), one_at_a_time)


@SETTINGS
@given(
    st.lists(st.one_of(st.integers(1, 100), st.integers(16300, SEND_CHUNK)), max_size=5),
    st.lists(st.integers(0, 100_000), max_size=6),
)
def test_sealed_chunks_of_every_length_prefix_size_open(sizes: list[int], cuts: list[int]) -> None:
    """The sealer writes 1-, 2- and 4-byte chunk lengths inline; the opener reads them all."""
    request = ChunkedRequestSealer(CONFIG)
    opener = ChunkedRequestOpener(LOOKUP)
    opener.push(request.header + request.seal_final(b"r"))
    opener.finish()
    sealer = opener.response_sealer()
    nonce = sealer.start()
    # Up to SEND_CHUNK bytes is one chunk per seal(); its length takes 1, 2 or 4 bytes.
    contents = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    sealed = [sealer.seal(c) for c in contents]
    wire = nonce + b"".join(sealed) + sealer.seal_final(b"end")
    for pieces in ([nonce, *sealed, wire[-(len(b"end") + 17) :]], _pieces(wire, cuts)):
        response = request.response_opener()
        out = [p for piece in pieces for p in response.push(piece)]
        assert out == contents
        assert response.finish() == b"end"


_LINE = st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"") + b"\n")
# The first line has text, so that its first byte alone is not a whole line.
LINES = st.tuples(
    st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\n", b"x") + b"\n"),
    st.lists(_LINE, max_size=3),
).map(lambda t: [t[0], *t[1]])


@SETTINGS
@given(st.lists(LINES, max_size=6), st.sampled_from([16, 128, 1024]), st.booleans())
def test_sse_padder_fast_path_matches_buffered_path(
    events: list[list[bytes]], bucket: int, prefixed: bool
) -> None:
    """Whole events pushed at once (fast path) pad exactly as the same events pushed with
    their first byte apart (held in the buffer, so the rest takes the general path)."""
    fast = SsePadder(bucket, length_prefixed=prefixed)
    general = SsePadder(bucket, length_prefixed=prefixed)
    for lines in events:
        event = b"".join(lines)
        expected = general.push(event[:1]) + general.push(event[1:])
        pieces = fast.push(event)
        assert pieces == expected
        assert b"".join(strip_sse_padding(p) for p in pieces) == event
        for piece in pieces:
            size = len(piece) + (len(encode_varint(len(piece))) if prefixed else 0)
            assert size % bucket == 0


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
_FIELDS = st.lists(
    st.tuples(
        _TOKEN.map(str.encode),
        st.binary(max_size=90).map(lambda b: b.translate(None, b"\r\n\0")),
    ),
    max_size=5,
).map(tuple)
_MESSAGES = st.one_of(
    st.builds(
        Request,
        st.sampled_from([b"GET", b"POST"]),
        st.just(b"https"),
        st.sampled_from([b"", b"api.example.com"]),
        st.sampled_from([b"/", b"/v1/chat/completions", b"/" + b"p" * 70]),
        _FIELDS,
        st.binary(max_size=200),
        _FIELDS,
    ),
    st.builds(
        Response,
        st.integers(200, 599),
        _FIELDS,
        st.binary(max_size=200),
        _FIELDS,
        st.lists(st.builds(Informational, st.integers(100, 199), _FIELDS), max_size=1).map(tuple),
    ),
)


@SETTINGS
@given(
    _MESSAGES,
    st.booleans(),
    st.integers(0, 20),
    st.lists(st.integers(0, 2000), max_size=6),
    st.sampled_from([Limits(), Limits(max_field_section=40, max_fields=2, max_control=10)]),
)
def test_message_decoder_head_fast_path_matches_general_path(
    message: Request | Response, indeterminate: bool, padding: int, cuts: list[int], limits: Limits
) -> None:
    """Whole heads in the first push (fast path) or split anywhere, within or over the limits."""
    wire = message.to_bytes(indeterminate=indeterminate, padding=padding)
    request = isinstance(message, Request)
    for pieces in ([wire], _pieces(wire, cuts)):
        fast = _run(MessageDecoder(request=request, limits=limits), pieces)
        assert fast == _run(_GeneralDecoder(request=request, limits=limits), pieces)


@SETTINGS
@given(st.binary(max_size=120), st.booleans(), st.binary(max_size=3))
def test_head_fast_path_agrees_on_arbitrary_bytes(
    wire: bytes, request: bool, prefix: bytes
) -> None:
    for data in (wire, prefix + wire):
        fast = _run(MessageDecoder(request=request), [data])
        assert fast == _run(_GeneralDecoder(request=request), [data])


@SETTINGS
@given(
    st.lists(st.binary(max_size=12), min_size=4, max_size=4),
    st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=8)), max_size=3),
    st.booleans(),
    st.binary(max_size=8),
)
def test_head_fast_path_checks_control_data_and_fields_like_the_general_path(
    control: list[bytes], fields: list[tuple[bytes, bytes]], indeterminate: bool, rest: bytes
) -> None:
    """Heads that are complete but may hold bytes no HTTP/1.1 message may carry."""
    lines = b"".join(encode_varint(len(n)) + n + encode_varint(len(v)) + v for n, v in fields)
    section = lines + b"\x00" if indeterminate else encode_varint(len(lines)) + lines
    framing = b"\x02" if indeterminate else b"\x00"
    wire = framing + b"".join(encode_varint(len(c)) + c for c in control) + section + rest
    fast = _run(MessageDecoder(request=True), [wire])
    assert fast == _run(_GeneralDecoder(request=True), [wire])
