"""Oblivious HTTP (RFC 9458) and chunked OHTTP (draft-08): vectors in both roles, properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealgate.protocol.public.errors import (
    DecryptionFailed,
    FrameTooLarge,
    ProtocolError,
    TruncatedMessage,
    UnknownKey,
    UnsupportedSuite,
)
from sealgate.protocol.public.keyconfig import KeyConfig
from sealgate.protocol.public.suites import SymmetricSuite
from sealgate.protocol.sealing.bhttp import Request, Response
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.ohttp import (
    ChunkedRequestOpener,
    ChunkedRequestSealer,
    OneShotRequest,
    OneShotServer,
    RequestHeader,
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load(vectors: Path, name: str) -> dict:
    return json.loads((vectors / "ohttp" / name).read_text())


def _keys(vector: dict) -> tuple[KeyConfig, PrivateKey, PrivateKey]:
    return (
        KeyConfig.from_bytes(bytes.fromhex(vector["key_config"])),
        PrivateKey.from_private_bytes(bytes.fromhex(vector["gateway_private_key_skR"])),
        PrivateKey.from_private_bytes(bytes.fromhex(vector["client_ephemeral_private_key_skE"])),
    )


def test_rfc9458_appendix_a_client_role(vectors: Path) -> None:
    v = _load(vectors, "rfc9458_vector.json")
    config, _, ephemeral = _keys(v)
    assert config.to_bytes().hex() == v["key_config"]
    request = OneShotRequest(config, bytes.fromhex(v["request_bhttp"]), ephemeral=ephemeral)
    assert request.header.enc.hex() == v["client_ephemeral_public_key_enc"]
    assert request.encapsulated.hex() == v["encapsulated_request"]
    opened = request.open_response(bytes.fromhex(v["encapsulated_response"]))
    assert opened.hex() == v["response_bhttp"]
    assert Response.from_bytes(opened) == Response(200)


def test_rfc9458_appendix_a_gateway_role(vectors: Path) -> None:
    v = _load(vectors, "rfc9458_vector.json")
    config, secret, _ = _keys(v)
    server = OneShotServer(
        bytes.fromhex(v["encapsulated_request"]), {config.key_id: (config, secret)}.get
    )
    assert server.request.hex() == v["request_bhttp"]
    assert Request.from_bytes(server.request) == Request(b"GET", b"https", b"example.com", b"/")
    sealed = server.seal_response(
        bytes.fromhex(v["response_bhttp"]), nonce=bytes.fromhex(v["response_nonce"])
    )
    assert sealed.hex() == v["encapsulated_response"]


def test_chunked_draft08_example_client_role(vectors: Path) -> None:
    v = _load(vectors, "chunked_ohttp_vector.json")
    config, _, ephemeral = _keys(v)
    sealer = ChunkedRequestSealer(config, ephemeral=ephemeral)
    chunks = [bytes.fromhex(c) for c in v["request_plaintext_chunks"]]
    wire = sealer.header + sealer.seal(chunks[0]) + sealer.seal(chunks[1])
    wire += sealer.seal_final(chunks[2])
    assert wire.hex() == v["encapsulated_request"]
    opener = sealer.response_opener()
    response = bytes.fromhex(v["encapsulated_response"])
    pieces = []
    for i in range(len(response)):  # one byte at a time: chunk boundaries are found anyway
        pieces += opener.push(response[i : i + 1])
    pieces.append(opener.finish())
    assert [p.hex() for p in pieces] == v["response_plaintext_chunks"]
    assert b"".join(pieces).hex() == v["response_bhttp"]


def test_chunked_draft08_example_gateway_role(vectors: Path) -> None:
    v = _load(vectors, "chunked_ohttp_vector.json")
    config, secret, _ = _keys(v)
    opener = ChunkedRequestOpener({config.key_id: (config, secret)}.get)
    chunks = [*opener.push(bytes.fromhex(v["encapsulated_request"])), opener.finish()]
    assert [c.hex() for c in chunks] == v["request_plaintext_chunks"]
    assert opener.header is not None
    assert opener.header.enc.hex() == v["client_ephemeral_public_key_enc"]
    response = bytes.fromhex(v["encapsulated_response"])
    sealer = opener.response_sealer(nonce=response[:16])
    plain = [bytes.fromhex(c) for c in v["response_plaintext_chunks"]]
    wire = (
        sealer.start() + sealer.seal(plain[0]) + sealer.seal(plain[1]) + sealer.seal_final(plain[2])
    )
    assert wire.hex() == v["encapsulated_response"]


KEY = PrivateKey.generate()
CONFIG = KEY.key_config(key_id=7)
LOOKUP = {7: (CONFIG, KEY)}.get
CHUNKS = st.lists(st.binary(min_size=1, max_size=300), max_size=8)


def _request(chunks: list[bytes], final: bytes) -> tuple[ChunkedRequestSealer, list[bytes]]:
    sealer = ChunkedRequestSealer(CONFIG, chunk_size=128)
    parts = [sealer.header] + [sealer.seal(c) for c in chunks] + [sealer.seal_final(final)]
    return sealer, parts


def _open_request(wire: bytes, cuts: list[int]) -> bytes:
    opener = ChunkedRequestOpener(LOOKUP)
    out = []
    last = 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        out += opener.push(wire[last:cut])
        last = cut
    out += opener.push(wire[last:])
    out.append(opener.finish())
    return b"".join(out)


@SETTINGS
@given(CHUNKS, st.binary(max_size=300), st.lists(st.integers(0, 5000), max_size=6))
def test_requests_round_trip_in_any_split(
    chunks: list[bytes], final: bytes, cuts: list[int]
) -> None:
    _, parts = _request(chunks, final)
    assert _open_request(b"".join(parts), cuts) == b"".join(chunks) + final


@SETTINGS
@given(CHUNKS, st.binary(max_size=300), st.data())
def test_truncated_requests_never_open(
    chunks: list[bytes], final: bytes, data: st.DataObject
) -> None:
    _, parts = _request(chunks, final)
    wire = b"".join(parts)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(ProtocolError):
        _open_request(wire[:cut], [])


@SETTINGS
@given(CHUNKS, st.binary(max_size=300), st.data())
def test_any_bit_flip_in_a_request_is_refused(
    chunks: list[bytes], final: bytes, data: st.DataObject
) -> None:
    _, parts = _request(chunks, final)
    wire = bytearray(b"".join(parts))
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    try:
        opened = _open_request(bytes(wire), [])
    except ProtocolError:
        return
    # A flipped varint length prefix can re-encode the same value only in non-minimal form;
    # anything that opens must be exactly what was sealed (draft-08 §6: lengths unauthenticated).
    assert opened == b"".join(chunks) + final


@SETTINGS
@given(st.lists(st.binary(min_size=1, max_size=100), min_size=2, max_size=6), st.data())
def test_reordered_or_dropped_request_chunks_are_refused(
    chunks: list[bytes], data: st.DataObject
) -> None:
    _, parts = _request(chunks, b"end")
    body = parts[1:-1]
    i = data.draw(st.integers(0, len(body) - 1))
    j = data.draw(st.integers(0, len(body) - 1).filter(lambda x: x != i))
    swapped = list(body)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    if swapped == body:
        return
    with pytest.raises(DecryptionFailed):
        _open_request(b"".join([parts[0], *swapped, parts[-1]]), [])
    dropped = body[:i] + body[i + 1 :]
    with pytest.raises(DecryptionFailed):
        _open_request(b"".join([parts[0], *dropped, parts[-1]]), [])


def _response(chunks: list[bytes], final: bytes) -> tuple[ChunkedRequestSealer, bytes]:
    sealer, parts = _request([], b"req")
    opener = ChunkedRequestOpener(LOOKUP)
    opener.push(b"".join(parts))
    opener.finish()
    response = opener.response_sealer()
    wire = (
        response.start() + b"".join(response.seal(c) for c in chunks) + response.seal_final(final)
    )
    return sealer, wire


def _open_response(sealer: ChunkedRequestSealer, wire: bytes, cuts: list[int]) -> bytes:
    opener = sealer.response_opener()
    out = []
    last = 0
    for cut in sorted(c % (len(wire) + 1) for c in cuts):
        out += opener.push(wire[last:cut])
        last = cut
    out += opener.push(wire[last:])
    out.append(opener.finish())
    return b"".join(out)


@SETTINGS
@given(CHUNKS, st.binary(max_size=300), st.lists(st.integers(0, 5000), max_size=6))
def test_responses_round_trip_in_any_split(
    chunks: list[bytes], final: bytes, cuts: list[int]
) -> None:
    sealer, wire = _response(chunks, final)
    assert _open_response(sealer, wire, cuts) == b"".join(chunks) + final


@SETTINGS
@given(CHUNKS, st.binary(max_size=300), st.data())
def test_truncated_or_flipped_responses_are_refused(
    chunks: list[bytes], final: bytes, data: st.DataObject
) -> None:
    sealer, wire = _response(chunks, final)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(ProtocolError):
        _open_response(sealer, wire[:cut], [])
    flipped = bytearray(wire)
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        opened = _open_response(sealer, bytes(flipped), [])
    except ProtocolError:
        return
    assert opened == b"".join(chunks) + final


def test_a_response_for_another_request_is_refused() -> None:
    first, _ = _response([b"a"], b"b")
    _, other_wire = _response([b"a"], b"b")
    with pytest.raises(DecryptionFailed):
        _open_response(first, other_wire, [])


def test_empty_non_final_chunk_is_refused() -> None:
    sealer = ChunkedRequestSealer(CONFIG)
    sealed = sealer._context.seal(b"", b"")  # what a hostile client could send
    wire = sealer.header + bytes([len(sealed)]) + sealed + sealer.seal_final(b"x")
    with pytest.raises(DecryptionFailed):
        _open_request(wire, [])


def test_unknown_key_and_suite_are_typed() -> None:
    other = PrivateKey.generate().key_config(key_id=9)
    sealer = ChunkedRequestSealer(other)
    with pytest.raises(UnknownKey):
        ChunkedRequestOpener(LOOKUP).push(sealer.header)
    wrong_key_same_id = ChunkedRequestSealer(PrivateKey.generate().key_config(key_id=7))
    opener = ChunkedRequestOpener(LOOKUP)
    opener.push(wrong_key_same_id.header)
    with pytest.raises(DecryptionFailed):
        opener.push(wrong_key_same_id.seal(b"hello"))
    with pytest.raises(UnsupportedSuite):
        ChunkedRequestSealer(CONFIG, suite=SymmetricSuite(1, 1))
    bogus = bytearray(ChunkedRequestSealer(CONFIG).header)
    bogus[1:3] = b"\x00\x10"  # P-256
    with pytest.raises(UnsupportedSuite):
        RequestHeader.parse(bogus)


def test_oversized_chunk_is_refused_before_buffering() -> None:
    opener = ChunkedRequestOpener(LOOKUP, max_chunk=1024)
    sealer = ChunkedRequestSealer(CONFIG)
    with pytest.raises(FrameTooLarge):
        opener.push(sealer.header + b"\x80\x10\x00\x00")  # varint 1 MiB
    final_flood = ChunkedRequestOpener(LOOKUP, max_chunk=1024)
    final_flood.push(sealer.header + b"\x00")
    with pytest.raises(FrameTooLarge):
        final_flood.push(bytes(2048))


def test_missing_final_chunk_is_truncation() -> None:
    sealer = ChunkedRequestSealer(CONFIG)
    opener = ChunkedRequestOpener(LOOKUP)
    opener.push(sealer.header + sealer.seal(b"everything but the end"))
    with pytest.raises(TruncatedMessage):
        opener.finish()


def test_a_final_piece_longer_than_a_chunk_is_split_before_the_final_chunk() -> None:
    """seal_final() used to refuse this: it closed the sealer before sealing the leading chunks."""
    sealer = ChunkedRequestSealer(CONFIG, chunk_size=8)
    final = bytes(range(20))
    wire = sealer.header + sealer.seal(b"first") + sealer.seal_final(final)
    assert sealer.chunks_sealed == 4  # "first", two 8-byte leading pieces, the final 4 bytes
    assert _open_request(wire, []) == b"first" + final
