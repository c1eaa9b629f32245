"""Multi-recipient requests: any candidate opens, nothing can be spliced or answered falsely."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealgate.protocol.public.errors import (
    DecryptionFailed,
    ProtocolError,
    TruncatedMessage,
    UnknownKey,
)
from sealgate.protocol.public.multi_header import MultiHeader, binding_of
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.multi_recipient import MultiRequestOpener, MultiRequestSealer

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = [PrivateKey.generate() for _ in range(3)]
CONFIGS = [k.key_config(key_id=i) for i, k in enumerate(KEYS)]
HELD = {c.fingerprint: (c, k) for c, k in zip(CONFIGS, KEYS, strict=True)}


def _enclave(index: int) -> MultiRequestOpener:
    config = CONFIGS[index]
    return MultiRequestOpener(lambda fp: HELD[fp] if fp == config.fingerprint else None)


def _seal(body: bytes, chunk_size: int = 64) -> tuple[MultiRequestSealer, bytes]:
    sealer = MultiRequestSealer(CONFIGS, chunk_size=chunk_size)
    return sealer, sealer.header + sealer.seal(body[: len(body) // 2]) + sealer.seal_final(
        body[len(body) // 2 :]
    )


def _open(opener: MultiRequestOpener, wire: bytes) -> bytes:
    return b"".join([*opener.push(wire), opener.finish()])


def _answer(opener: MultiRequestOpener, pieces: list[bytes]) -> bytes:
    prefix, sealer = opener.response_sealer()
    return prefix + sealer.start() + b"".join(sealer.seal(p) for p in pieces) + sealer.seal_final()


@SETTINGS
@given(st.binary(max_size=500), st.integers(0, 2), st.lists(st.binary(min_size=1, max_size=50)))
def test_every_candidate_opens_and_answers(body: bytes, index: int, pieces: list[bytes]) -> None:
    sealer, wire = _seal(body)
    opener = _enclave(index)
    assert _open(opener, wire) == body
    assert (
        opener.candidate is not None and opener.candidate.fingerprint == CONFIGS[index].fingerprint
    )
    client = sealer.response_opener()
    response = _answer(opener, pieces)
    assert b"".join([*client.push(response), client.finish()]) == b"".join(pieces)
    assert client.fingerprint == CONFIGS[index].fingerprint


def test_each_candidate_has_its_own_encapsulated_key() -> None:
    _, wire = _seal(b"hello")
    encs = set()
    for i in range(3):
        opener = _enclave(i)
        _open(opener, wire)
        encs.add(opener.enc)
    assert len(encs) == 3  # one replay-cache entry per candidate: at most N executions


def test_a_non_candidate_enclave_cannot_open() -> None:
    _, wire = _seal(b"secret")
    stranger = PrivateKey.generate().key_config(key_id=9)
    with pytest.raises(UnknownKey):
        MultiRequestOpener({stranger.fingerprint: None}.get).push(wire)


def test_a_wrapped_key_spliced_from_another_request_is_refused() -> None:
    _, wire_a = _seal(b"request a")
    _, wire_b = _seal(b"request b")
    header_a, start_a = MultiHeader.parse(wire_a)
    header_b, _ = MultiHeader.parse(wire_b)
    # Request a's candidate list, but candidate 0's wrapped key taken from request b.
    stolen = replace(header_a.candidates[0], wrapped_key=header_b.candidates[0].wrapped_key)
    spliced = MultiHeader((stolen, *header_a.candidates[1:]))
    with pytest.raises(DecryptionFailed):
        _enclave(0).push(spliced.to_bytes() + wire_a[start_a:])
    # Whole entry (enc and wrapped key) from request b: the binding no longer matches.
    moved = MultiHeader((header_b.candidates[0], *header_a.candidates[1:]))
    with pytest.raises(DecryptionFailed):
        _enclave(0).push(moved.to_bytes() + wire_a[start_a:])


def test_dropping_other_candidates_wrapped_keys_keeps_the_request_valid() -> None:
    """The gateway may forward only the chosen candidate's wrapped key."""
    _, wire = _seal(b"trim me")
    header, start = MultiHeader.parse(wire)
    trimmed = MultiHeader(
        tuple(c if i == 1 else replace(c, wrapped_key=b"") for i, c in enumerate(header.candidates))
    )
    assert trimmed.binding == header.binding == binding_of(list(header.candidates))
    assert _open(_enclave(1), trimmed.to_bytes() + wire[start:]) == b"trim me"


def test_a_response_naming_a_non_candidate_or_another_candidate_is_refused() -> None:
    sealer, wire = _seal(b"q")
    opener = _enclave(0)
    _open(opener, wire)
    response = _answer(opener, [b"answer"])
    forged_name = bytes(8) + response[8:]
    with pytest.raises(UnknownKey):
        sealer.response_opener().push(forged_name)
    # Candidate 0's answer relabelled as candidate 1's: candidate 1's key schedule refuses it.
    relabelled = bytes.fromhex(CONFIGS[1].fingerprint) + response[8:]
    client = sealer.response_opener()
    with pytest.raises(DecryptionFailed):
        client.push(relabelled)
        client.finish()


@SETTINGS
@given(st.binary(min_size=1, max_size=300), st.data())
def test_truncated_or_flipped_requests_never_open_to_something_else(
    body: bytes, data: st.DataObject
) -> None:
    _, wire = _seal(body, chunk_size=32)
    cut = data.draw(st.integers(0, len(wire) - 1))
    with pytest.raises(ProtocolError):
        _open(_enclave(0), wire[:cut])
    flipped = bytearray(wire)
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        opened = _open(_enclave(0), bytes(flipped))
    except ProtocolError:
        return
    assert opened == body  # only bits of other candidates' wrapped keys are unauthenticated here


def test_a_response_cut_before_its_final_chunk_is_truncation() -> None:
    sealer, wire = _seal(b"q")
    opener = _enclave(2)
    _open(opener, wire)
    response = _answer(opener, [b"one", b"two"])
    client = sealer.response_opener()
    client.push(response[:-20])
    with pytest.raises(ProtocolError):
        client.finish()
    with pytest.raises(TruncatedMessage):
        sealer.response_opener().finish()


def test_a_final_piece_longer_than_a_chunk_is_split_before_the_final_chunk() -> None:
    sealer = MultiRequestSealer(CONFIGS, chunk_size=8)
    final = bytes(range(20))
    wire = sealer.header + sealer.seal_final(final)
    assert _open(_enclave(1), wire) == final
