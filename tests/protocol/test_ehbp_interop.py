"""Sans-IO interop with tinfoil-ehbp (MIT, from the registry): their client, our decoders."""

import pytest
from sealgate.protocol.public.keyconfig import decode_key_configs
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.sealing.ehbp_request import RequestDecoder
from sealgate.protocol.sealing.hpke import PrivateKey

ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")


def test_their_request_opens_here_and_our_response_opens_there():
    key = PrivateKey.generate()
    identity = ehbp.ServerIdentity.unmarshal_public_config(key.key_config(0).to_bytes())
    body = b'{"model":"demo","messages":[]}' * 5000  # several 64 KiB frames
    sealed = identity.encrypt_request_body(body)
    decoder = RequestDecoder(EHBP, sealed.encapsulated_key, [key])
    assert b"".join(decoder.push(sealed.body)) == body
    decoder.finish()

    encoder = decoder.response_encoder()
    wire = encoder.push(b"data: one\n\n") + encoder.push(b"data: two\n\n") + encoder.finish()
    assert sealed.token.decrypt_response_body(encoder.nonce, wire) == b"data: one\n\ndata: two\n\n"


def test_their_key_config_encoding_matches_ours():
    key = PrivateKey.generate()
    theirs = ehbp.ServerIdentity(key.public_key).marshal_public_config()
    assert decode_key_configs(theirs)[0] == key.key_config(0)
    assert theirs == key.key_config(0).to_bytes()
