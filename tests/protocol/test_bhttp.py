"""Binary HTTP (RFC 9292): the RFC's examples byte for byte, round trips, limits, properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealgate.protocol.public.errors import (
    BinaryMessageTooLarge,
    EncoderStateError,
    MalformedBinaryMessage,
    ProtocolError,
)
from sealgate.protocol.public.varint import decode_varint, encode_varint
from sealgate.protocol.sealing.bhttp import (
    Data,
    EndOfMessage,
    Informational,
    Limits,
    MessageDecoder,
    Request,
    Response,
    ResponseHead,
    StreamEncoder,
    Trailers,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def bhttp_vectors(vectors: Path) -> list[dict]:
    data = json.loads((vectors / "ohttp" / "rfc9292_vectors.json").read_text())
    return data["rfc9292_examples"] + data["other_bhttp_vectors"]


def _fields(pairs: list[list[str]]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((n.encode(), v.encode()) for n, v in pairs)


def test_every_vector_decodes_and_reencodes_byte_for_byte(bhttp_vectors: list[dict]) -> None:
    assert len(bhttp_vectors) >= 7
    for vector in bhttp_vectors:
        raw = bytes.fromhex(vector["hex"])
        expected = vector["decoded"]
        framing = expected["framing_indicator"]
        truncated = "9458" in vector["name"]  # RFC 9458's example omits its empty sections
        content = bytes.fromhex(expected["content_hex"])
        if framing in (0, 2):
            message: Request | Response = Request.from_bytes(raw)
            assert isinstance(message, Request)
            assert message.method.decode() == expected["method"]
            assert message.scheme.decode() == expected["scheme"]
            assert message.authority.decode() == expected["authority"]
            assert message.path.decode() == expected["path"]
        else:
            message = Response.from_bytes(raw)
            assert isinstance(message, Response)
            assert message.status == expected["status"]
            assert [i.status for i in message.informational] == [
                i["status"] for i in expected["informational"]
            ]
            for info, want in zip(message.informational, expected["informational"], strict=True):
                assert info.headers == _fields(want["headers"])
        assert message.headers == _fields(expected["headers"]), vector["name"]
        assert message.content == content
        assert message.trailers == _fields(expected["trailers"])
        encoded = message.to_bytes(
            indeterminate=framing >= 2, padding=expected["padding_len"], truncate=truncated
        )
        assert encoded == raw, vector["name"]


def test_vectors_decode_one_byte_at_a_time(bhttp_vectors: list[dict]) -> None:
    for vector in bhttp_vectors:
        raw = bytes.fromhex(vector["hex"])
        request = vector["decoded"]["framing_indicator"] in (0, 2)
        decoder = MessageDecoder(request=request)
        events = []
        for i in range(len(raw)):
            events += decoder.push(raw[i : i + 1])
        events += decoder.finish()
        assert isinstance(events[-1], EndOfMessage)
        assert events[-1].padding == vector["decoded"]["padding_len"]
        content = b"".join(e.data for e in events if isinstance(e, Data))
        assert content == bytes.fromhex(vector["decoded"]["content_hex"])


def test_streamed_response_yields_content_as_it_arrives() -> None:
    encoder = StreamEncoder()
    decoder = MessageDecoder(request=False)
    head = encoder.response_head(200, [(b"content-type", b"text/event-stream")])
    events = decoder.push(head)
    assert events == [ResponseHead(200, ((b"content-type", b"text/event-stream"),))]
    assert decoder.push(encoder.data(b"data: one\n\n")) == [Data(b"data: one\n\n")]
    assert decoder.push(encoder.data(b"")) == []
    assert decoder.push(encoder.data(b"data: two\n\n")) == [Data(b"data: two\n\n")]
    tail = decoder.push(encoder.end([(b"x-usage", b"3")], padding=5))
    assert tail == [Trailers(((b"x-usage", b"3"),))]
    assert decoder.finish() == [EndOfMessage(5)]
    with pytest.raises(EncoderStateError):
        encoder.data(b"late")


def test_streamed_request_round_trips() -> None:
    encoder = StreamEncoder()
    wire = encoder.request_head(b"POST", b"https", b"", b"/v1/chat", [(b"a", b"1")])
    wire += encoder.data(b"{") + encoder.data(b"}") + encoder.end()
    assert Request.from_bytes(wire) == Request(
        b"POST", b"https", b"", b"/v1/chat", ((b"a", b"1"),), b"{}"
    )


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"\x01", "response framing in a request decoder"),
        (b"\x04", "unknown framing indicator"),
        (b"\x00\x03GET\x05https\x00\x01/\x00\x00\x00\x01", "non-zero padding"),
        (b"\x00\x03GET\x05https\x00\x01/\x02\x00\x00", "empty field name"),
        (b"\x00\x03G T\x05https\x00\x01/", "method is not a token"),
        (b"\x00\x03GET\x05https\x00\x02/\n", "line feed in the path"),
        (b"\x00\x03GET\x05https\x00\x01/\x06\x01a\x03x\ry", "CR in a field value"),
        (b"\x00\x03GET\x05https\x00\x01/\x00\x05ab", "content shorter than its length"),
        (b"\x02\x03GET\x05https\x00\x01/\x00\x02ab", "indeterminate content without terminator"),
        (b"\x00\x03GET\x05https", "truncated inside control data"),
    ],
)
def test_malformed_requests_are_typed_errors(wire: bytes, why: str) -> None:
    with pytest.raises(MalformedBinaryMessage):
        Request.from_bytes(wire)


@pytest.mark.parametrize(
    "wire",
    [b"\x01\x40\x63", b"\x01\x42\x58", b"\x03\x40\x66\x00"],  # 99, 600, 102 with no final response
)
def test_bad_statuses_are_refused(wire: bytes) -> None:
    with pytest.raises(MalformedBinaryMessage):
        Response.from_bytes(wire)


def test_limits_are_checked_on_the_length_before_buffering() -> None:
    limits = Limits(max_field_section=100, max_content=1000, max_control=10, max_fields=2)
    huge_content = b"\x00\x03GET\x05https\x00\x01/\x00" + encode_varint(1 << 40)
    with pytest.raises(BinaryMessageTooLarge):
        MessageDecoder(request=True, limits=limits).push(huge_content)
    huge_section = b"\x00\x03GET\x05https\x00\x01/" + encode_varint(1 << 30)
    with pytest.raises(BinaryMessageTooLarge):
        MessageDecoder(request=True, limits=limits).push(huge_section)
    huge_path = b"\x00\x03GET\x05https\x00" + encode_varint(1 << 20)
    with pytest.raises(BinaryMessageTooLarge):
        MessageDecoder(request=True, limits=limits).push(huge_path)
    endless_fields = b"\x02\x03GET\x05https\x00\x01/" + b"\x01a\x01b" * 60
    with pytest.raises(BinaryMessageTooLarge):
        MessageDecoder(request=True, limits=limits).push(endless_fields)
    many_chunks = b"\x03\x40\xc8\x00" + (encode_varint(200) + bytes(200)) * 6
    with pytest.raises(BinaryMessageTooLarge):
        MessageDecoder(request=False, limits=limits).push(many_chunks)


def test_encoder_refuses_what_would_smuggle() -> None:
    with pytest.raises(MalformedBinaryMessage):
        Request(b"GET", b"https", b"", b"/ HTTP/1.1\r\nHost: x")
    with pytest.raises(MalformedBinaryMessage):
        Response(200, ((b"x-a", b"1\r\nset-cookie: a"),))
    with pytest.raises(MalformedBinaryMessage):
        Response(200, ((b"bad name", b"1"),))


TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12).map(
    str.encode
)
VALUES = st.binary(max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
)
FIELDS = st.lists(st.tuples(TOKENS, VALUES), max_size=6).map(tuple)
REQUESTS = st.builds(
    Request,
    st.sampled_from([b"GET", b"POST", b"DELETE"]),
    st.just(b"https"),
    st.sampled_from([b"", b"api.example.com"]),
    st.sampled_from([b"/", b"/v1/chat/completions", b"/v1/models?x=1"]),
    FIELDS,
    st.binary(max_size=300),
    FIELDS,
)
RESPONSES = st.builds(
    Response,
    st.integers(200, 599),
    FIELDS,
    st.binary(max_size=300),
    FIELDS,
    st.lists(st.builds(Informational, st.integers(100, 199), FIELDS), max_size=2).map(tuple),
)


def _decode_in_pieces(wire: bytes, cuts: list[int], request: bool) -> Request | Response:
    decoder = MessageDecoder(request=request)
    events = []
    last = 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        events += decoder.push(wire[last:cut])
        last = cut
    events += decoder.push(wire[last:])
    events += decoder.finish()
    content = b"".join(e.data for e in events if isinstance(e, Data))
    trailers = next((e.fields for e in events if isinstance(e, Trailers)), ())
    if request:
        head = events[0]
        return Request(
            head.method, head.scheme, head.authority, head.path, head.headers, content, trailers
        )
    head = next(e for e in events if isinstance(e, ResponseHead))
    informational = tuple(e for e in events if isinstance(e, Informational))
    return Response(head.status, head.headers, content, trailers, informational)


@SETTINGS
@given(REQUESTS, st.booleans(), st.integers(0, 20), st.booleans(), st.lists(st.integers(0, 1000)))
def test_any_request_round_trips_in_any_split(
    request: Request, indeterminate: bool, padding: int, truncate: bool, cuts: list[int]
) -> None:
    wire = request.to_bytes(indeterminate=indeterminate, padding=padding, truncate=truncate)
    assert _decode_in_pieces(wire, cuts, request=True) == request


@SETTINGS
@given(RESPONSES, st.booleans(), st.integers(0, 20), st.booleans(), st.lists(st.integers(0, 1000)))
def test_any_response_round_trips_in_any_split(
    response: Response, indeterminate: bool, padding: int, truncate: bool, cuts: list[int]
) -> None:
    wire = response.to_bytes(indeterminate=indeterminate, padding=padding, truncate=truncate)
    assert _decode_in_pieces(wire, cuts, request=False) == response


@SETTINGS
@given(RESPONSES, st.booleans(), st.data())
def test_truncation_is_an_error_or_an_equivalent_message(
    response: Response, indeterminate: bool, data: st.DataObject
) -> None:
    wire = response.to_bytes(indeterminate=indeterminate)
    cut = data.draw(st.integers(0, len(wire) - 1))
    try:
        decoded = Response.from_bytes(wire[:cut])
    except ProtocolError:
        return
    # A cut at a section boundary reads as a message whose remaining sections are empty
    # (RFC 9292 §3.8): BHTTP alone cannot tell. The native mode relies on chunked OHTTP's
    # authenticated final chunk for end-of-message integrity, never on BHTTP framing.
    assert wire.startswith(decoded.to_bytes(indeterminate=indeterminate, truncate=True))
    assert (decoded.status, decoded.informational) == (response.status, response.informational)


@SETTINGS
@given(st.binary(max_size=200), st.booleans())
def test_arbitrary_bytes_never_crash_the_decoder(wire: bytes, request: bool) -> None:
    try:
        decoder = MessageDecoder(request=request)
        decoder.push(wire)
        decoder.finish()
    except ProtocolError:
        pass


@SETTINGS
@given(st.integers(0, (1 << 62) - 1))
def test_varints_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded) == (value, len(encoded))
    assert decode_varint(encoded[:-1]) is None
