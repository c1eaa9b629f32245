"""Length padding and replay rejection: the sans-IO halves of the native mode's defences."""

from __future__ import annotations

import json
import os
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sealgate.protocol.public.errors import ReplayedRequest
from sealgate.protocol.sealing.bhttp import Response, StreamEncoder
from sealgate.protocol.sealing.padding import (
    PADDING_FIELD,
    SsePadder,
    is_json,
    json_padding,
    padded_field,
    padding_to,
    strip_sse_padding,
)
from sealgate.protocol.sealing.replay import (
    ENTRY_BYTES,
    ReplayCacheFull,
    ReplayGuard,
    StaleRequest,
    http_date,
    parse_http_date,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINE = st.text(alphabet='abc xyz{}":,0123456789é', max_size=300).map(lambda s: s.encode() + b"\n")


@SETTINGS
@given(st.lists(LINE, min_size=1, max_size=10), st.sampled_from([16, 64, 128, 512]))
def test_sse_pieces_fill_whole_buckets_and_strip_back_exactly(
    lines: list[bytes], bucket: int
) -> None:
    padder = SsePadder(bucket)
    encoder = StreamEncoder()
    encoder.response_head(200, [])
    restored = b""
    for line in lines:
        for piece in padder.push(line):
            assert len(encoder.data(piece)) % bucket == 0
            restored += strip_sse_padding(piece)
    assert padder.finish() == b""
    assert restored == b"".join(lines)


def test_equal_event_counts_give_equal_sizes_whatever_the_text() -> None:
    def sizes(tokens: list[str]) -> list[int]:
        padder = SsePadder(128)
        encoder = StreamEncoder()
        encoder.response_head(200, [])
        out = []
        for token in tokens:
            event = b'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n' % token.encode()
            out += [len(encoder.data(p)) for p in padder.push(event)]
        return out

    assert sizes(["Hi", " there", "!"]) == sizes(["Supercalifragilistic", ",", " ok"])


@SETTINGS
@given(st.lists(LINE, min_size=1, max_size=10), st.sampled_from([16, 64, 128, 512]))
def test_ehbp_sse_pieces_are_themselves_whole_buckets(lines: list[bytes], bucket: int) -> None:
    """EHBP frames carry no length prefix inside: the piece itself is the bucket multiple."""
    padder = SsePadder(bucket, length_prefixed=False)
    restored = b""
    for line in lines:
        for piece in padder.push(line):
            assert len(piece) % bucket == 0 and piece.endswith(b"\n")
            restored += strip_sse_padding(piece)
    assert restored == b"".join(lines)


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=5))
def test_json_padding_keeps_the_same_json_value(value: dict[str, str]) -> None:
    text = json.dumps(value).encode()
    padded = text + json_padding(len(text), 1024)
    assert len(padded) % 1024 == 0 and json.loads(padded) == value
    assert is_json("application/json; charset=utf-8") and is_json(b"application/problem+json")
    assert not is_json("text/event-stream")


def test_a_partial_line_waits_for_its_end() -> None:
    padder = SsePadder(64)
    assert padder.push(b"data: half") == []
    (piece,) = padder.push(b" line\n\n")
    assert strip_sse_padding(piece) == b"data: half line\n\n"
    assert padder.push(b"data: unterminated") == []
    assert padder.finish() == b"data: unterminated"


@SETTINGS
@given(st.integers(0, 5000), st.sampled_from([64, 128, 1024]))
def test_padding_field_makes_the_head_a_whole_bucket(extra: int, bucket: int) -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"x-extra", b"v" * extra)]
    base = len(StreamEncoder().response_head(200, headers))
    field = padded_field(base, bucket)
    assert field is not None and field[0] == PADDING_FIELD
    assert len(StreamEncoder().response_head(200, [*headers, field])) % bucket == 0


def test_zero_padding_after_a_message_is_valid_binary_http() -> None:
    wire = Response(200, content=b"{}").to_bytes()
    padded = wire + bytes(padding_to(len(wire), 1024))
    assert len(padded) == 1024
    assert Response.from_bytes(padded) == Response(200, content=b"{}")


def test_replayed_and_stale_requests_are_refused() -> None:
    guard = ReplayGuard(window=60, capacity=10)
    now = time.time()
    guard.accept(b"enc-1", http_date(now), now)
    with pytest.raises(ReplayedRequest):
        guard.accept(b"enc-1", http_date(now), now + 1)
    assert guard.replays == 1
    with pytest.raises(StaleRequest) as stale:
        guard.accept(b"enc-2", http_date(now - 120), now)
    assert stale.value.server_time == now
    with pytest.raises(StaleRequest):
        guard.accept(b"enc-3", None, now)
    with pytest.raises(StaleRequest):
        guard.accept(b"enc-4", "yesterday-ish", now)
    # Once the window has passed the key is forgotten, and the date check refuses it.
    with pytest.raises(StaleRequest):
        guard.accept(b"enc-1", http_date(now), now + 61)
    assert len(guard) == 0


def test_a_full_cache_refuses_new_requests_instead_of_forgetting() -> None:
    guard = ReplayGuard(window=60, capacity=100)
    now = time.time()
    for i in range(100):
        guard.accept(b"flood-%d" % i, http_date(now), now)
    with pytest.raises(ReplayCacheFull) as full:
        guard.accept(b"one more", http_date(now), now)
    assert 0 < full.value.retry_after <= 61
    with pytest.raises(ReplayedRequest):  # the first of the flood is still remembered
        guard.accept(b"flood-0", http_date(now), now + 1)
    assert len(guard) == 100
    guard.accept(b"later", http_date(now + 62), now + 62)  # room again after expiry
    assert len(guard) == 1


def test_replay_cache_memory_is_bounded_and_matches_the_stated_per_entry_cost() -> None:
    """Filled to capacity, a guard costs at most ENTRY_BYTES per entry (tracemalloc), and a
    flood of twice as many distinct requests beyond capacity allocates nothing more."""
    capacity = 10_000
    guard = ReplayGuard(window=60, capacity=capacity)
    now = time.time()
    date = http_date(now)
    encs = [os.urandom(32) for _ in range(capacity * 3)]
    tracemalloc.start()
    try:
        for enc in encs[:capacity]:
            guard.accept(enc, date, now)
        full, _ = tracemalloc.get_traced_memory()
        refused = 0
        for enc in encs[capacity:]:
            try:
                guard.accept(enc, date, now + 1)
            except ReplayCacheFull:
                refused += 1
        flooded, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(guard) == capacity and refused == 2 * capacity
    assert full / capacity <= ENTRY_BYTES
    assert flooded - full < 64 * 1024  # exceptions come and go; nothing accumulates


def test_http_dates_round_trip() -> None:
    assert parse_http_date(http_date(1_700_000_000)) == 1_700_000_000
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date("not a date") is None


@SETTINGS
@given(st.integers(0, 5000), st.sampled_from([64, 128, 1024]), st.integers(200, 599))
def test_pad_head_equals_encoding_the_padding_field_with_the_head(
    extra: int, bucket: int, status: int
) -> None:
    from sealgate.protocol.sealing.padding import pad_head

    headers = [(b"content-type", b"application/json"), (b"x-extra", b"v" * extra)]
    head = StreamEncoder().response_head(status, headers)
    field = padded_field(len(head), bucket)
    assert field is not None
    assert pad_head(head, bucket) == StreamEncoder().response_head(status, [*headers, field])
