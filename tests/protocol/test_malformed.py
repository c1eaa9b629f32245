"""Malformed-input corpus for every decoder: typed errors only, bounded memory."""

from __future__ import annotations

import contextlib
import os
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.public.errors import ProtocolError
from sealgate.protocol.public.keyconfig import decode_key_configs
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.public.problem import Problem
from sealgate.protocol.sealing.ehbp_request import RequestDecoder, RequestEncoder, parse_hex_header
from sealgate.protocol.sealing.hpke import PrivateKey

KEY = PrivateKey.generate()
HUGE_PREFIXES = [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff" + b"x" * 100, b"\x00\x10\x00\x01"]
CORPUS = [
    b"",
    b"\x00",
    b"\x00\x00\x00",
    b"\x00\x00\x00\x10",
    os.urandom(64),
    os.urandom(4096),
    *HUGE_PREFIXES,
    b"\x00\x00\x00\x00" * 1000,
]


def _request_decoder(mode):
    enc = RequestEncoder(KEY.key_config(), mode).enc
    return RequestDecoder(mode, enc, [KEY], max_frame_size=64 * 1024)


def _response_decoder(mode):
    return RequestEncoder(KEY.key_config(), mode).response_decoder(os.urandom(32).hex())


def _feed(decoder, data):
    decoder.push(data)
    decoder.finish()


@pytest.mark.parametrize("make", [_request_decoder, _response_decoder])
@pytest.mark.parametrize("mode", [EHBP], ids=str)
@pytest.mark.parametrize("data", CORPUS, ids=range(len(CORPUS)))
def test_corpus_is_refused_with_typed_errors(make, mode, data):
    if data.replace(b"\x00\x00\x00\x00", b"") == b"" and mode is EHBP:
        _feed(make(mode), data)  # only skipped zero-length frames: a valid empty EHBP body
        return
    with pytest.raises(ProtocolError):
        _feed(make(mode), data)


@pytest.mark.parametrize("mode", [EHBP], ids=str)
def test_huge_length_prefixes_do_not_allocate(mode):
    decoder = _request_decoder(mode)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            decoder.push(b"\xff\xff\xff\xff" + b"a" * 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


@settings(max_examples=300, deadline=None)
@given(mode=st.just(EHBP), data=st.binary(max_size=3000))
def test_random_bytes_never_crash_a_decoder(mode, data):
    for make in (_request_decoder, _response_decoder):
        with contextlib.suppress(ProtocolError):
            _feed(make(mode), data)


@pytest.mark.parametrize(
    "value", [None, "", "zz" * 32, "ab" * 31, "ab" * 33, "\u00e9" * 64, " " * 64]
)
def test_bad_hex_headers(value):
    with pytest.raises(ProtocolError):
        parse_hex_header("Ehbp-Encapsulated-Key", value, 32)


def test_invalid_curve_point_as_encapsulated_key_is_malformed():
    with pytest.raises(ProtocolError):
        RequestDecoder(EHBP, bytes(32), [KEY]).push(b"\x00\x00\x00\x10" + bytes(16))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_other_parsers_on_random_bytes(data):
    for parse in (decode_key_configs, Problem.from_bytes, AttestationDocument.from_json):
        with contextlib.suppress(ProtocolError):
            parse(data)


@pytest.mark.parametrize(
    "doc",
    [
        b"[]",
        b'{"format":"x"}',
        b'{"format":"sealgate-attestation/v1"}',
        b'{"format":"sealgate-attestation/v1","platform":"software","key_configs":"!!","evidence":""}',
        b'{"format":"sealgate-attestation/v1","platform":"software","key_configs":"","evidence":"",'
        b'"nonce":"zz"}',
        b'{"format":"sealgate-attestation/v1","platform":7}',
        b"\xff\xfe",
    ],
)
def test_malformed_documents(doc):
    with pytest.raises(ProtocolError):
        AttestationDocument.from_json(doc)
