import hashlib
import struct

import pytest
from sealgate.protocol.evidence.attestation import AttestationDocument, parse_time_nonce, time_nonce
from sealgate.protocol.evidence.binding import BINDING_LABEL, report_data
from sealgate.protocol.public.errors import MalformedProblem
from sealgate.protocol.public.keyconfig import encode_key_configs
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.sealing.hpke import PrivateKey


def _lp(x: bytes) -> bytes:
    return struct.pack(">H", len(x)) + x


def test_report_data_is_the_documented_encoding():
    keys = encode_key_configs([PrivateKey.generate().key_config(1)])
    nonce = bytes(range(32))
    tls = hashlib.sha256(b"spki").digest()
    expected = hashlib.sha512(
        _lp(BINDING_LABEL) + _lp(nonce) + _lp(hashlib.sha256(keys).digest()) + _lp(tls)
    ).digest()
    assert report_data(keys, nonce, tls) == expected
    assert len(expected) == 64


def test_every_field_changes_report_data():
    keys = encode_key_configs([PrivateKey.generate().key_config()])
    other = encode_key_configs([PrivateKey.generate().key_config()])
    base = report_data(keys, b"n" * 32, None)
    assert base != report_data(other, b"n" * 32, None)
    assert base != report_data(keys, b"m" * 32, None)
    assert base != report_data(keys, b"n" * 32, b"\x01" * 32)
    assert base != report_data(keys, b"", None)
    # Length prefixes keep fields apart: moving a byte between nonce and nothing differs.
    assert report_data(keys, b"", None) != report_data(keys, b"\x00", None)


def test_report_data_refuses_bad_tls_hash():
    with pytest.raises(ValueError, match="32-byte"):
        report_data(b"", b"", b"short")


def test_document_round_trip_and_expected_report_data():
    keys = encode_key_configs([PrivateKey.generate().key_config(2)])
    doc = AttestationDocument(
        platform="software",
        key_configs=keys,
        evidence=b"evidence",
        nonce=time_nonce(1_700_000_000),
        collateral={"vcek": b"\x30\x82"},
        info={"sealgate_version": "0.1.0"},
    )
    again = AttestationDocument.from_json(doc.to_json())
    assert again == doc
    assert again.expected_report_data() == report_data(keys, doc.nonce, None)
    assert parse_time_nonce(again.nonce) == 1_700_000_000
    assert parse_time_nonce(b"\x01" * 32) is None
    assert len(again.fingerprints) == 1


def test_problem_round_trip_and_type_check():
    problem = PROBLEMS.KEY_CONFIG("key 3 was rotated out")
    parsed = Problem.from_bytes(problem.to_bytes())
    assert parsed.is_(PROBLEMS.KEY_CONFIG)
    assert parsed.type == "urn:ietf:params:ehbp:error:key-config"
    assert parsed.status == 422 and parsed.detail == "key 3 was rotated out"
    assert not parsed.is_(PROBLEMS.UNKNOWN_KEY)
    for bad in (b"", b"[]", b'{"title":"x"}', b'{"type":3}', b"x" * 70000):
        with pytest.raises(MalformedProblem):
            Problem.from_bytes(bad)
