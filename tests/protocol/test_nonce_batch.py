"""Nonce batches: the documented Merkle construction, proofs, and refusal of any tampering."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sealgate.protocol.evidence.attestation import AttestationDocument, parse_time_nonce, time_nonce
from sealgate.protocol.evidence.binding import report_data
from sealgate.protocol.evidence.nonce_batch import (
    BATCH_PREFIX,
    MAX_BATCH_SIZE,
    NonceBatch,
    NonceProof,
    is_batch_nonce,
)
from sealgate.protocol.public.errors import InvalidNonceProof, MalformedAttestationDocument
from sealgate.protocol.public.keyconfig import encode_key_configs
from sealgate.protocol.sealing.hpke import PrivateKey

TAG = b"sealgate nonce batch v1"

nonce_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=2, max_size=40, unique=True)


def _leaf(n: bytes) -> bytes:
    return hashlib.sha256(TAG + b"\x00" + n).digest()


def _node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(TAG + b"\x01" + a + b).digest()


def _root(size: int, mth: bytes) -> bytes:
    return hashlib.sha256(TAG + b"\x02" + struct.pack(">I", size) + mth).digest()


def _accepts(proof_fields: dict[str, object], nonce: bytes, bound: bytes) -> bool:
    """What a verifier does: rebuild the proof, recompute from ``nonce``, compare."""
    try:
        proof = NonceProof(**proof_fields)  # type: ignore[arg-type]
        return proof.bound_nonce(nonce) == bound
    except InvalidNonceProof:
        return False


def _fields(proof: NonceProof) -> dict[str, object]:
    return {f.name: getattr(proof, f.name) for f in dataclasses.fields(proof)}


def test_roots_follow_the_documented_construction():
    d = [bytes([i]) * 32 for i in range(5)]
    leaves = [_leaf(x) for x in d]
    two = _node(leaves[0], leaves[1])
    four = _node(two, _node(leaves[2], leaves[3]))
    assert NonceBatch.of(d[:2]).root == _root(2, two)
    assert NonceBatch.of(d[:3]).root == _root(3, _node(two, leaves[2]))
    assert NonceBatch.of(d[:4]).root == _root(4, four)
    batch = NonceBatch.of(d)
    assert batch.root == _root(5, _node(four, leaves[4]))
    assert batch.bound_nonce == BATCH_PREFIX + batch.root and len(batch.bound_nonce) == 47
    # Audit paths are listed from the leaf up (RFC 9162 §2.1.3.1).
    assert batch.proof(4).path == (four,)
    assert batch.proof(2).path == (leaves[3], two, leaves[4])


@settings(max_examples=60, deadline=None)
@given(nonce_lists)
def test_every_proof_verifies_and_round_trips(nonces):
    batch = NonceBatch.of(nonces)
    for index, nonce in enumerate(nonces):
        proof = batch.proof(index)
        assert proof.nonce == nonce and proof.size == len(nonces)
        assert proof.bound_nonce(nonce) == batch.bound_nonce
        assert len(proof.path) <= (len(nonces) - 1).bit_length()
        assert NonceProof.from_json(proof.to_json()) == proof


@settings(max_examples=100, deadline=None)
@given(nonce_lists, st.data())
def test_a_tampered_path_is_refused(nonces, data):
    batch = NonceBatch.of(nonces)
    index = data.draw(st.integers(0, len(nonces) - 1))
    fields = _fields(batch.proof(index))
    path = list(fields["path"])  # type: ignore[call-overload]
    at = data.draw(st.integers(0, len(path) - 1))
    bit = data.draw(st.integers(0, 255))
    entry = bytearray(path[at])
    entry[bit // 8] ^= 1 << (bit % 8)
    path[at] = bytes(entry)
    tampered = dict(fields, path=tuple(path))
    assert not _accepts(tampered, nonces[index], batch.bound_nonce)
    swapped = dict(fields, path=tuple(reversed(fields["path"])))  # type: ignore[call-overload]
    assume(swapped["path"] != fields["path"])
    assert not _accepts(swapped, nonces[index], batch.bound_nonce)


@settings(max_examples=100, deadline=None)
@given(nonce_lists, st.data())
def test_a_path_of_the_wrong_length_is_refused(nonces, data):
    batch = NonceBatch.of(nonces)
    index = data.draw(st.integers(0, len(nonces) - 1))
    fields = _fields(batch.proof(index))
    path: tuple[bytes, ...] = fields["path"]  # type: ignore[assignment]
    extra = data.draw(st.binary(min_size=32, max_size=32))
    assert not _accepts(dict(fields, path=(*path, extra)), nonces[index], batch.bound_nonce)
    assert not _accepts(dict(fields, path=path[:-1]), nonces[index], batch.bound_nonce)


@settings(max_examples=100, deadline=None)
@given(nonce_lists, st.data())
def test_another_nonce_is_refused(nonces, data):
    batch = NonceBatch.of(nonces)
    index = data.draw(st.integers(0, len(nonces) - 1))
    other = data.draw(st.binary(min_size=32, max_size=32).filter(lambda n: n != nonces[index]))
    proof = batch.proof(index)
    assert not _accepts(_fields(proof), other, batch.bound_nonce)
    # ... also another member of the same batch, presenting this client's proof.
    assert not _accepts(_fields(proof), nonces[(index + 1) % len(nonces)], batch.bound_nonce)
    # Nonces that are not 32 bytes never verify.
    assert not _accepts(_fields(proof), nonces[index] + b"\x00", batch.bound_nonce)


@settings(max_examples=100, deadline=None)
@given(nonce_lists, st.data())
def test_a_tampered_index_or_size_is_refused(nonces, data):
    batch = NonceBatch.of(nonces)
    index = data.draw(st.integers(0, len(nonces) - 1))
    fields = _fields(batch.proof(index))
    other_index = data.draw(st.integers(-1, len(nonces) + 1).filter(lambda i: i != index))
    assert not _accepts(dict(fields, index=other_index), nonces[index], batch.bound_nonce)
    other_size = data.draw(st.integers(0, 2 * len(nonces) + 2).filter(lambda s: s != len(nonces)))
    assert not _accepts(dict(fields, size=other_size), nonces[index], batch.bound_nonce)


@settings(max_examples=60, deadline=None)
@given(nonce_lists, nonce_lists)
def test_a_proof_from_another_batch_is_refused(first, second):
    assume(set(first) != set(second))
    a, b = NonceBatch.of(first), NonceBatch.of(second)
    for index, nonce in enumerate(first):
        assert not _accepts(_fields(a.proof(index)), nonce, b.bound_nonce)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=80),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )
)
def test_arbitrary_json_is_a_typed_refusal(body):
    for candidate in (body, {"nonce": "00" * 32, "index": 0, "size": 2, "path": body}):
        with pytest.raises(InvalidNonceProof):
            NonceProof.from_dict(candidate)
    with pytest.raises(InvalidNonceProof):
        NonceProof.from_json(b"\xff not json")


def test_batches_refuse_bad_inputs():
    with pytest.raises(InvalidNonceProof, match="2 to"):
        NonceBatch.of([os.urandom(32)])  # a batch of one is bound directly instead
    with pytest.raises(InvalidNonceProof, match="twice"):
        NonceBatch.of([b"a" * 32, b"b" * 32, b"a" * 32])
    with pytest.raises(InvalidNonceProof, match="32 bytes"):
        NonceBatch.of([b"a" * 32, b"b" * 31])
    with pytest.raises(InvalidNonceProof, match="2 to"):
        NonceProof(b"a" * 32, 0, MAX_BATCH_SIZE + 1, ())
    with pytest.raises(InvalidNonceProof, match="32-byte"):
        NonceProof(b"a" * 32, 0, 2, (b"short",))
    with pytest.raises(IndexError):
        NonceBatch.of([b"a" * 32, b"b" * 32]).proof(2)


def test_the_three_kinds_of_bound_nonce_cannot_be_confused():
    batch = NonceBatch.of([os.urandom(32) for _ in range(3)])
    assert is_batch_nonce(batch.bound_nonce)
    assert parse_time_nonce(batch.bound_nonce) is None
    assert not is_batch_nonce(time_nonce(1_700_000_000))
    assert not is_batch_nonce(os.urandom(32))  # a client nonce is 32 bytes, a batch's 47
    assert len(time_nonce(10**12 - 1)) < 32


def _batched_document() -> tuple[AttestationDocument, NonceBatch]:
    keys = encode_key_configs([PrivateKey.generate().key_config(1)])
    batch = NonceBatch.of([os.urandom(32) for _ in range(5)])
    document = AttestationDocument(
        platform="software",
        key_configs=keys,
        evidence=b"evidence",
        nonce=batch.bound_nonce,
        nonce_proof=batch.proof(3),
    )
    return document, batch


def test_batched_document_is_v2_and_round_trips():
    document, batch = _batched_document()
    body = json.loads(document.to_json())
    assert body["format"] == "sealgate-attestation/v2"
    assert body["nonce_proof"]["index"] == 3 and body["nonce_proof"]["size"] == 5
    again = AttestationDocument.from_json(document.to_json())
    assert again == document
    assert again.expected_report_data() == report_data(document.key_configs, batch.bound_nonce)
    plain = dataclasses.replace(document, nonce=os.urandom(32), nonce_proof=None)
    assert json.loads(plain.to_json())["format"] == "sealgate-attestation/v1"
    assert "nonce_proof" not in json.loads(plain.to_json())


def test_inconsistent_batched_documents_are_malformed():
    document, _ = _batched_document()
    body = json.loads(document.to_json())
    with pytest.raises(MalformedAttestationDocument, match="nonce_proof"):
        AttestationDocument.from_dict(dict(body, format="sealgate-attestation/v1"))
    without = {k: v for k, v in body.items() if k != "nonce_proof"}
    with pytest.raises(MalformedAttestationDocument, match="nonce_proof"):
        AttestationDocument.from_dict(without)
    other_root = dict(body, nonce=(BATCH_PREFIX + os.urandom(32)).hex())
    with pytest.raises(InvalidNonceProof, match="does not lead"):
        AttestationDocument.from_dict(other_root)
    with pytest.raises(MalformedAttestationDocument, match="unsupported document format"):
        AttestationDocument.from_dict(dict(body, format="sealgate-attestation/v3"))
