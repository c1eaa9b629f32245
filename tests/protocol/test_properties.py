"""EHBP property tests: splitting is invisible; tampering is a typed error, never wrong output.

The native mode's chunked OHTTP has its own in tests/protocol/test_ohttp.py.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealgate.protocol.public.errors import ProtocolError
from sealgate.protocol.public.framing import FrameReader
from sealgate.protocol.public.modes import EHBP, Mode
from sealgate.protocol.sealing.ehbp_request import RequestDecoder, RequestEncoder
from sealgate.protocol.sealing.hpke import PrivateKey

KEY = PrivateKey.generate()
MODES = st.just(EHBP)
CHUNKS = st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=12)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _response_frames(mode: Mode, chunks: list[bytes]):
    """Encode ``chunks`` as a response; return (frames, request encoder, nonce)."""
    request = RequestEncoder(KEY.key_config(), mode)
    decoder = RequestDecoder(mode, request.enc, [KEY])
    decoder.push(request.finish(b"req"))
    encoder = decoder.response_encoder()
    frames = [encoder.push(c) for c in chunks]
    tail = encoder.finish()
    if tail:
        frames.append(tail)
    return frames, request, encoder.nonce


def _request_frames(mode: Mode, chunks: list[bytes]):
    request = RequestEncoder(KEY.key_config(), mode)
    frames = [request.push(c) for c in chunks]
    tail = request.finish()
    if tail:
        frames.append(tail)
    return frames, request


def _decode_request(mode, enc, wire_parts):
    decoder = RequestDecoder(mode, enc, [KEY])
    out: list[bytes] = []
    for part in wire_parts:
        out += decoder.push(part)
    decoder.finish()
    return out


def _decode_response(request, nonce, wire_parts, sink):
    decoder = request.response_decoder(nonce.hex())
    for part in wire_parts:
        sink += decoder.push(part)
    decoder.finish()
    return sink


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts, last = [], 0
    for p in points:
        parts.append(data[last:p])
        last = p
    parts.append(data[last:])
    return parts


def _expected(mode: Mode, chunks: list[bytes]) -> list[bytes]:
    return list(chunks)


@SETTINGS
@given(mode=MODES, chunks=CHUNKS, cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_any_split_of_a_response_decodes_the_same(mode, chunks, cuts):
    frames, request, nonce = _response_frames(mode, chunks)
    wire = b"".join(frames)
    assert _decode_response(request, nonce, _split(wire, cuts), []) == _expected(mode, chunks)


@SETTINGS
@given(mode=MODES, chunks=CHUNKS, cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_any_split_of_a_request_decodes_the_same(mode, chunks, cuts):
    frames, request = _request_frames(mode, chunks)
    wire = b"".join(frames)
    assert _decode_request(mode, request.enc, _split(wire, cuts)) == _expected(mode, chunks)


def _assert_refused_without_wrong_output(request, nonce, wire_parts, truth):
    sink: list[bytes] = []
    with pytest.raises(ProtocolError):
        _decode_response(request, nonce, wire_parts, sink)
    # Whatever was released before the error is exactly what was sent, in order.
    assert sink == truth[: len(sink)]


@SETTINGS
@given(mode=MODES, chunks=CHUNKS, data=st.data())
def test_truncation_is_refused(mode, chunks, data):
    frames, request, nonce = _response_frames(mode, chunks)
    wire = b"".join(frames)
    # EHBP has no end marker: a cut exactly between frames cannot be detected (the
    # native mode's final chunk can), so cut inside a frame.
    bounds = {sum(len(f) for f in frames[:i]) for i in range(len(frames) + 1)}
    cut = data.draw(
        st.integers(min_value=1, max_value=len(wire) - 1).filter(lambda c: c not in bounds)
    )
    _assert_refused_without_wrong_output(request, nonce, [wire[:cut]], _expected(mode, chunks))


@SETTINGS
@given(mode=MODES, chunks=CHUNKS, data=st.data())
def test_any_bit_flip_is_refused(mode, chunks, data):
    frames, request, nonce = _response_frames(mode, chunks)
    wire = bytearray(b"".join(frames))
    bit = data.draw(st.integers(min_value=0, max_value=len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    _assert_refused_without_wrong_output(request, nonce, [bytes(wire)], _expected(mode, chunks))


@SETTINGS
@given(
    mode=MODES,
    chunks=st.lists(st.binary(min_size=1, max_size=50), min_size=2, max_size=8),
    data=st.data(),
)
def test_reordered_duplicated_or_dropped_frames_are_refused(mode, chunks, data):
    frames, request, nonce = _response_frames(mode, chunks)
    n = len(frames)
    op = data.draw(st.sampled_from(["swap", "duplicate", "drop"]))
    i = data.draw(st.integers(min_value=0, max_value=n - 2))
    tampered = list(frames)
    if op == "swap":
        if tampered[i] == tampered[i + 1]:
            return
        tampered[i], tampered[i + 1] = tampered[i + 1], tampered[i]
    elif op == "duplicate":
        tampered.insert(i, tampered[i])
    else:
        del tampered[i]
    _assert_refused_without_wrong_output(request, nonce, tampered, _expected(mode, chunks))


@SETTINGS
@given(mode=MODES, chunks=CHUNKS)
def test_response_swapped_between_two_requests_is_refused(mode, chunks):
    _frames_a, request_a, nonce_a = _response_frames(mode, chunks)
    frames_b, _request_b, nonce_b = _response_frames(mode, chunks)
    # The gateway hands request A the body (and even the nonce) of request B.
    for nonce in (nonce_a, nonce_b):
        sink: list[bytes] = []
        with pytest.raises(ProtocolError):
            _decode_response(request_a, nonce, frames_b, sink)
        assert sink == []


@SETTINGS
@given(mode=MODES, chunks=CHUNKS, data=st.data())
def test_request_tampering_is_refused(mode, chunks, data):
    frames, request = _request_frames(mode, chunks)
    wire = bytearray(b"".join(frames))
    bit = data.draw(st.integers(min_value=0, max_value=len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProtocolError):
        _decode_request(mode, request.enc, [bytes(wire)])


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=4096))
def test_frame_reader_memory_is_bounded(data, limit):
    reader = FrameReader(max_frame_size=limit)
    try:
        reader.push(data)
    except ProtocolError:
        return
    # Never more buffered than one partial frame within the limit (plus its prefix).
    assert reader.buffered <= limit + 4
