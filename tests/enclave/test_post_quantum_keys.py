"""Enclave key pairs: an MLKEM768-X25519 key beside each X25519 key, bound and rotated."""

from __future__ import annotations

from sealgate.enclave import KeyRing
from sealgate.protocol.evidence.binding import report_data
from sealgate.protocol.public.keyconfig import decode_key_configs, encode_key_configs
from sealgate.protocol.public.suites import KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256
from sealgate.protocol.sealing.hpke import HybridPrivateKey, PrivateKey


def test_each_generation_is_an_x25519_and_a_hybrid_key_with_consecutive_ids() -> None:
    ring = KeyRing()
    classical, hybrid = ring.active()
    assert ring.current is classical and ring.current_hybrid is hybrid
    assert isinstance(classical.private, PrivateKey)
    assert isinstance(hybrid.private, HybridPrivateKey)
    assert (classical.config.kem_id, hybrid.config.kem_id) == (
        KEM_X25519_HKDF_SHA256,
        KEM_MLKEM768_X25519,
    )
    assert hybrid.config.key_id == (classical.config.key_id + 1) % 256
    assert ring.lookup(hybrid.fingerprint) is hybrid
    assert ring.lookup(hybrid.fingerprint, KEM_X25519_HKDF_SHA256) is None
    assert ring.active(KEM_MLKEM768_X25519) == (hybrid,)
    # The list attestation binds holds both, so report_data commits to the hybrid key too.
    encoded = ring.encoded_configs()
    assert decode_key_configs(encoded) == (classical.config, hybrid.config)
    without_hybrid = decode_key_configs(encoded)[:1]
    assert report_data(encoded) != report_data(encode_key_configs(without_hybrid))
    assert "redacted" in repr(hybrid.private)


def test_both_keys_rotate_and_retire_together() -> None:
    now = [0.0]
    ring = KeyRing(rotate_every=100, grace=10, clock=lambda: now[0])
    old_classical, old_hybrid = ring.active()
    now[0] = 100
    assert ring.maybe_rotate()
    assert ring.current is not old_classical and ring.current_hybrid is not old_hybrid
    assert ring.current_hybrid is not None
    assert ring.current_hybrid.retire_at is None
    assert len(ring.active()) == 4
    assert ring.lookup(old_hybrid.fingerprint) is not None  # within the grace period
    now[0] = 111
    assert ring.lookup(old_hybrid.fingerprint) is None
    assert [k.config.kem_id for k in ring.active()] == [KEM_X25519_HKDF_SHA256, KEM_MLKEM768_X25519]


def test_post_quantum_false_makes_x25519_keys_only() -> None:
    ring = KeyRing(post_quantum=False)
    (only,) = ring.active()
    assert only.config.kem_id == KEM_X25519_HKDF_SHA256 and ring.current_hybrid is None
    ring.rotate()
    assert [k.config.kem_id for k in ring.active()] == [KEM_X25519_HKDF_SHA256] * 2
