import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sealgate.protocol.public.errors import MalformedKeyConfig, UnsupportedSuite
from sealgate.protocol.public.keyconfig import KeyConfig, decode_key_configs, encode_key_configs
from sealgate.protocol.public.suites import SUPPORTED_SUITE, SymmetricSuite
from sealgate.protocol.sealing.hpke import PrivateKey


def test_rfc9458_appendix_a_config_decodes(vectors):
    v = json.loads((vectors / "ohttp" / "rfc9458_vector.json").read_text())
    raw = bytes.fromhex(v["key_config"])
    config = KeyConfig.from_bytes(raw)
    decoded = v["key_config_decoded"]
    assert config.key_id == decoded["key_id"]
    assert config.kem_id == decoded["kem_id"]
    assert config.public_key.hex() == decoded["public_key"]
    assert [(s.kdf_id, s.aead_id) for s in config.suites] == [
        (a["kdf_id"], a["aead_id"]) for a in decoded["symmetric_algorithms"]
    ]
    assert config.to_bytes() == raw
    listed = bytes.fromhex(v["application_ohttp_keys_encoding_of_this_single_config"])
    assert encode_key_configs([config]) == listed
    assert decode_key_configs(listed) == (config,)
    assert decode_key_configs(raw) == (config,)  # a bare config is accepted too
    # RFC 9458's example offers AES-128-GCM and ChaCha20 only: we cannot use it.
    with pytest.raises(UnsupportedSuite, match="AES-256-GCM"):
        config.require_supported()


def test_list_of_several_round_trips_and_fingerprints_are_stable():
    configs = [PrivateKey.generate().key_config(i) for i in range(3)]
    data = encode_key_configs(configs)
    assert decode_key_configs(data) == tuple(configs)
    fps = {c.fingerprint for c in configs}
    assert len(fps) == 3 and all(len(f) == 16 for f in fps)
    again = KeyConfig.from_bytes(configs[0].to_bytes())
    assert again.fingerprint == configs[0].fingerprint


def test_ehbp_bare_config_is_read():
    key = PrivateKey.generate()
    bare = key.key_config(0).to_bytes()
    (config,) = decode_key_configs(bare)
    assert config.public_key == key.public_key


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", MalformedKeyConfig),
        (b"\x00", MalformedKeyConfig),
        (b"\x00\x00\x20" + bytes(31), MalformedKeyConfig),
        (b"\x00\x00\x20" + bytes(32) + b"\x00\x00", MalformedKeyConfig),  # no suites
        (b"\x00\x00\x20" + bytes(32) + b"\x00\x03abc", MalformedKeyConfig),  # not a multiple of 4
        (b"\x00\x00\x20" + bytes(32) + b"\x00\x08\x00\x01\x00\x02", MalformedKeyConfig),
        (b"\x00\x00\x99" + bytes(32) + b"\x00\x04\x00\x01\x00\x02", UnsupportedSuite),
        (b"\x00\x00\x20" + bytes(32) + b"\x00\x04\x00\x09\x00\x02", UnsupportedSuite),
    ],
)
def test_malformed_single_configs_are_typed_errors(data, error):
    with pytest.raises(error):
        KeyConfig.from_bytes(data)


def test_trailing_bytes_after_a_config_are_refused():
    raw = PrivateKey.generate().key_config().to_bytes()
    with pytest.raises(MalformedKeyConfig, match="trailing"):
        KeyConfig.from_bytes(raw + b"\x00")


def test_list_skips_unknown_kem_but_refuses_a_list_of_only_unknown():
    good = PrivateKey.generate().key_config(1).to_bytes()
    unknown = b"\x02\x00\x99" + bytes(8)
    data = struct.pack(">H", len(unknown)) + unknown + struct.pack(">H", len(good)) + good
    assert [c.key_id for c in decode_key_configs(data)] == [1]
    with pytest.raises(UnsupportedSuite):
        decode_key_configs(struct.pack(">H", len(unknown)) + unknown)


def test_unsupported_suite_in_otherwise_valid_config_is_reported_on_use():
    config = KeyConfig(7, 0x0020, bytes(32), (SymmetricSuite(1, 1),))
    with pytest.raises(UnsupportedSuite):
        config.require_supported()
    KeyConfig(7, 0x0020, bytes(32), (SymmetricSuite(1, 1), SUPPORTED_SUITE)).require_supported()


@given(st.binary(max_size=300))
def test_decoding_random_bytes_never_crashes(data):
    try:
        configs = decode_key_configs(data)
    except (MalformedKeyConfig, UnsupportedSuite):
        return
    assert configs  # a successful decode always yields at least one config
