"""The per-source limit on fresh-nonce attestation requests (gateway/ratelimit.py).

The limit over real HTTP is in test_hardening.py (section 8); these are its parts.
"""

from __future__ import annotations

import pytest
from sealgate.gateway.ratelimit import NonceLimiter, SourceRateLimiter, carries_nonce, source_key


def test_source_rate_limiter_refills_and_has_bounded_memory():
    now = [0.0]
    limiter = SourceRateLimiter(rate=1.0, burst=2, max_sources=100, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limiter.take("b") == 0.0  # another source has its own bucket
    now[0] += 1.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(1.0)
    for i in range(10_000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (b"/.well-known/sealgate-attestation?nonce=00", True),
        (b"/.well-known/sealgate-attestation?x=1&nonce=00", True),
        (b"/.well-known/sealgate-attestation?n%6Fnce=00", True),
        (b"/.well-known/sealgate-attestation?NONCE=00", True),
        (b"http://h/.well-known/sealgate-attestation?nonce", True),
        (b"/.well-known/sealgate-attestation", False),
        (b"/.well-known/sealgate-attestation?x=nonce", False),
        (b"/v1/chat/completions", False),
    ],
)
def test_nonce_detection(url, expected):
    assert carries_nonce(url) is expected


def test_sources_are_addresses_and_ipv6_slash_64s():
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::9")
    assert source_key("2001:db8:1:2::1") != source_key("2001:db8:1:3::1")


def test_nonce_limiter_counts_only_requests_with_a_nonce_per_source():
    limiter = NonceLimiter(rate=0.001, burst=1, max_sources=10)
    attest = b"/.well-known/sealgate-attestation"
    assert limiter.wait(attest, lambda: "192.0.2.1") == 0.0
    assert limiter.wait(attest + b"?nonce=00", lambda: "192.0.2.1") == 0.0
    assert limiter.wait(attest + b"?nonce=01", lambda: "192.0.2.1") > 0  # its one token is gone
    assert limiter.wait(attest + b"?nonce=02", lambda: "192.0.2.2") == 0.0  # another source
    off = NonceLimiter(rate=0, burst=1, max_sources=10)
    assert all(off.wait(attest + b"?nonce=00", lambda: "192.0.2.1") == 0 for _ in range(5))
