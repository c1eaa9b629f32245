"""EHBP v0.3 vectors from tinfoilsh/encrypted-http-body-protocol (``../shared/vectors/ehbp``)."""

import json

from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.sealing.ehbp_response import ResponseDecoder
from sealgate.protocol.sealing.response_key import derive_key_material


def test_derive_vector(vectors):
    v = json.loads((vectors / "ehbp" / "derive.json").read_text())
    key, nonce_base = derive_key_material(
        bytes.fromhex(v["exportedSecret"]),
        bytes.fromhex(v["requestEnc"]),
        bytes.fromhex(v["responseNonce"]),
    )
    assert key.hex() == v["derivedKey"]
    assert nonce_base.hex() == v["derivedNonceBase"]


def test_response_decryption_vector(vectors):
    v = json.loads((vectors / "ehbp" / "response-decryption.json").read_text())
    decoder = ResponseDecoder.from_secret(
        EHBP,
        bytes.fromhex(v["exportedSecret"]),
        bytes.fromhex(v["requestEnc"]),
        bytes.fromhex(v["responseNonce"]),
    )
    body = bytes.fromhex(v["encryptedResponse"])
    # Feed one byte at a time: the decoder must not depend on how bytes arrive.
    out = b"".join(chunk for i in range(len(body)) for chunk in decoder.push(body[i : i + 1]))
    decoder.finish()
    assert out == bytes.fromhex(v["plaintext"])


def test_rfc9458_response_key_schedule(vectors):
    # RFC 9458 §4.4 uses the same Extract/Expand construction (AES-128-GCM sizes).
    v = json.loads((vectors / "ohttp" / "rfc9458_vector.json").read_text())
    key, nonce = derive_key_material(
        bytes.fromhex(v["exported_secret"]),
        bytes.fromhex(v["client_ephemeral_public_key_enc"]),
        bytes.fromhex(v["response_nonce"]),
        key_size=16,
        nonce_size=12,
    )
    assert key.hex() == v["aead_key"]
    assert nonce.hex() == v["aead_nonce"]
