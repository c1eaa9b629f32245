import os
import pickle

import pytest
from sealgate.protocol.public.errors import (
    DecryptionFailed,
    EncoderStateError,
    FrameTooLarge,
    SequenceOverflow,
    TruncatedMessage,
    UnknownKey,
)
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.sealing.ehbp_request import RequestDecoder, RequestEncoder
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.response_key import MAX_SEQUENCE, frame_nonce

from .conftest import new_exchange

MODES = [EHBP]
SIZES = [0, 1, 15, 16, 65535, 65536, 65537, 3 * 1024 * 1024 + 7]


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("size", SIZES)
def test_request_and_response_round_trip(key, mode, size):
    body = os.urandom(size)
    ex = new_exchange(key, mode)
    wire = ex.encoder.finish(body)
    decoder = ex.decoder(max_frame_size=70_000)
    assert b"".join(decoder.push(wire)) == body
    decoder.finish()

    response = os.urandom(size)
    encoder = decoder.response_encoder()
    rwire = encoder.push(response[: size // 2]) + encoder.finish(response[size // 2 :])
    rdec = ex.encoder.response_decoder(encoder.headers[mode.response_nonce_header])
    assert b"".join(rdec.push(rwire)) == response
    rdec.finish()


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_thousands_of_frames_stream_one_event_at_a_time(key, mode):
    ex = new_exchange(key, mode)
    decoder = ex.decoder()
    decoder.push(ex.encoder.finish(b"{}"))
    decoder.finish()
    encoder = decoder.response_encoder()
    rdec = ex.encoder.response_decoder(encoder.nonce.hex())
    events = [f"data: token {i}\n\n".encode() for i in range(5000)]
    received = []
    for event in events:
        # Each push yields exactly one frame that decodes at once: nothing is held back.
        received += rdec.push(encoder.push(event))
        assert received[-1] == event
    assert rdec.push(encoder.finish()) == []
    rdec.finish()
    assert encoder.frames_sealed == len(events)


def test_ehbp_headers_carry_only_enc(key):
    enc = RequestEncoder(key.key_config(5), EHBP)
    assert enc.headers == {"Ehbp-Encapsulated-Key": enc.enc.hex()}


def test_trial_decryption_picks_the_previous_key_during_rotation(key):
    previous, current = key, PrivateKey.generate()
    ex = new_exchange(previous, EHBP)
    decoder = RequestDecoder(EHBP, ex.encoder.enc, [current, previous])
    assert decoder.push(ex.encoder.finish(b"hello")) == [b"hello"]
    assert decoder.key is previous


def test_request_for_a_key_not_held_is_unknown_key_in_ehbp(key):
    ex = new_exchange(key, EHBP)
    wire = ex.encoder.finish(b"hello")
    with pytest.raises(UnknownKey, match="fetch its keys again"):
        RequestDecoder(EHBP, ex.encoder.enc, [PrivateKey.generate()]).push(wire)


def test_frame_too_large_is_refused_before_buffering(key):
    ex = new_exchange(key, EHBP, frame_plaintext=1 << 20)
    wire = ex.encoder.finish(os.urandom(100_000))
    decoder = ex.decoder(max_frame_size=50_000)
    with pytest.raises(FrameTooLarge):
        decoder.push(wire[:4])  # the length prefix alone is enough to refuse


def test_decoder_is_poisoned_after_an_error(key):
    ex = new_exchange(key, EHBP, frame_plaintext=2)  # two frames: the second is tampered
    wire = bytearray(ex.encoder.finish(b"abc"))
    wire[-1] ^= 1
    decoder = ex.decoder()
    with pytest.raises(DecryptionFailed):
        decoder.push(bytes(wire))
    with pytest.raises(EncoderStateError):
        decoder.push(b"")


def test_encoder_refuses_use_after_finish(key):
    ex = new_exchange(key, EHBP)
    ex.encoder.finish()
    with pytest.raises(EncoderStateError):
        ex.encoder.push(b"more")
    with pytest.raises(EncoderStateError):
        ex.encoder.finish()


def test_ehbp_has_no_end_marker_so_a_cut_at_a_frame_boundary_goes_unnoticed(key):
    """EHBP's stated limit (README, modes table); the native mode's chunked OHTTP detects
    this cut (tests/protocol/test_ohttp.py, tests/client/test_native.py)."""
    ex = new_exchange(key, EHBP, frame_plaintext=10)
    first = ex.encoder.push(b"0123456789")
    ex.encoder.finish(b"tail")
    decoder = ex.decoder()
    assert decoder.push(first) == [b"0123456789"]
    decoder.finish()


def test_ehbp_cut_inside_a_frame_is_truncation(key):
    ex = new_exchange(key, EHBP)
    wire = ex.encoder.finish(b"0123456789")
    decoder = ex.decoder()
    assert decoder.push(wire[:-3]) == []
    with pytest.raises(TruncatedMessage):
        decoder.finish()


def test_sequence_overflow_is_an_error():
    assert frame_nonce(bytes(12), MAX_SEQUENCE) == bytes(4) + b"\xff" * 8
    with pytest.raises(SequenceOverflow):
        frame_nonce(bytes(12), MAX_SEQUENCE + 1)


def test_response_encoder_overflow_refuses_to_reuse_a_nonce(key):
    ex = new_exchange(key, EHBP)
    decoder = ex.decoder()
    decoder.push(ex.encoder.finish())
    encoder = decoder.response_encoder()
    encoder._sequence = MAX_SEQUENCE + 1  # as if 2**64 frames had been sent
    with pytest.raises(SequenceOverflow):
        encoder.push(b"one more")


def test_ehbp_zero_length_frames_are_skipped(key):
    ex = new_exchange(key, EHBP)
    decoder = ex.decoder()
    decoder.push(ex.encoder.finish(b"x"))
    encoder = decoder.response_encoder()
    wire = b"\x00\x00\x00\x00" + encoder.push(b"a") + b"\x00\x00\x00\x00" + encoder.push(b"b")
    rdec = ex.encoder.response_decoder(encoder.nonce.hex())
    assert rdec.push(wire) == [b"a", b"b"]
    rdec.finish()


def test_private_key_never_shows_or_pickles(key):
    assert "redacted" in repr(key)
    with pytest.raises(TypeError):
        pickle.dumps(key)
