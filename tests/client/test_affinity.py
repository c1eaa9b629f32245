"""Cache-affine routing: keyed routing tags, rendezvous stability, conversations kept in place."""

from __future__ import annotations

import os
from collections import Counter

import httpx
import pytest
from sealgate.client import ENCLAVE_HEADER, ExpectedMeasurement, Policy, SecureClient
from sealgate.client.affinity import (
    ROUTE_TAG_HEADER,
    affine_choice,
    rendezvous_order,
    rendezvous_winner,
    routing_tag,
)
from sealgate.gateway import Discovery

SYSTEM = {"role": "system", "content": "You are terse."}


def conversation(first: str, turns: int) -> list[list[dict[str, str]]]:
    """The message lists a client sends for ``turns`` turns of one conversation."""
    sent, history = [], [SYSTEM, {"role": "user", "content": first}]
    for turn in range(turns):
        sent.append(list(history))
        history += [
            {"role": "assistant", "content": f"answer {turn}"},
            {"role": "user", "content": f"follow-up {turn}"},
        ]
    return sent


def test_rendezvous_moves_only_the_keys_of_an_enclave_that_leaves_or_joins():
    tags = [os.urandom(32) for _ in range(3000)]
    fleet = [f"enclave-{i}" for i in range(5)]
    before = {t: rendezvous_winner(t, fleet) for t in tags}
    shares = Counter(before.values())
    assert all(600 * 0.75 < shares[e] < 600 * 1.25 for e in fleet)  # about 1/5 each

    left = [e for e in fleet if e != "enclave-2"]
    after_leave = {t: rendezvous_winner(t, left) for t in tags}
    moved = {t for t in tags if after_leave[t] != before[t]}
    assert moved == {t for t in tags if before[t] == "enclave-2"}

    joined = [*fleet, "enclave-5"]
    after_join = {t: rendezvous_winner(t, joined) for t in tags}
    moved = {t for t in tags if after_join[t] != before[t]}
    assert moved and all(after_join[t] == "enclave-5" for t in moved)
    assert len(moved) < len(tags) / 4  # about 1/6 of the keys, to the newcomer only


def test_an_overloaded_first_choice_passes_the_tag_to_its_second():
    tag = os.urandom(32)
    first, second, third = rendezvous_order(tag, ["x", "y", "z"])
    assert affine_choice(tag, {"x": 0.1, "y": 0.1, "z": 0.1}) == first
    assert affine_choice(tag, {first: 0.95, second: 0.5, third: 0.0}) == second
    assert affine_choice(tag, {first: 1.0, second: 1.0, third: 0.99}) is None  # spread by load


def test_routing_tag_is_stable_across_turns_and_keyed():
    secret, other = os.urandom(32), os.urandom(32)
    turns = conversation("plan a trip", 5)
    tags = {routing_tag(secret, "m", {"messages": m}) for m in turns}
    assert len(tags) == 1 and None not in tags
    (tag,) = tags
    assert routing_tag(other, "m", {"messages": turns[0]}) != tag  # keyed: not guessable
    assert routing_tag(secret, "n", {"messages": turns[0]}) != tag  # per model
    assert routing_tag(secret, "m", {"messages": conversation("other", 1)[0]}) != tag
    responses = {"input": "hi", "instructions": "be brief"}
    assert routing_tag(secret, "m", responses) == routing_tag(
        secret, "m", {**responses, "input": ["hi", {"role": "user", "content": "more"}]}
    )
    assert routing_tag(secret, "m", {"prompt": "complete me"}) is None


class Recording(httpx.HTTPTransport):
    """The real HTTP transport, keeping the headers of every request the gateway receives."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[httpx.Headers] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.headers)
        return super().handle_request(request)


@pytest.mark.parametrize("affinity", [True, False])
def test_conversations_stay_on_one_enclave_with_affinity(fleet, affinity):
    servers, measurements = zip(*(fleet.model_enclave(("m",)) for _ in range(3)), strict=True)
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw()).with_measurements(
        ExpectedMeasurement("software", {"measurement": measurements[0].hex()}, models=None)
    )
    secret = os.urandom(32) if affinity else None
    with SecureClient(gw.url, policy, cache_affinity=affinity, affinity_secret=secret) as secure:
        recording = Recording()
        with httpx.Client(base_url=gw.url, transport=secure.transport(recording)) as http:
            placed: dict[int, set[str]] = {}
            for number in range(12):
                for messages in conversation(f"topic {number}", 4):
                    reply = http.post(
                        "/v1/chat/completions", json={"model": "m", "messages": messages}
                    )
                    assert reply.status_code == 200
                    placed.setdefault(number, set()).add(reply.headers[ENCLAVE_HEADER])
    sticky = sum(len(where) == 1 for where in placed.values())
    if affinity:
        assert sticky == 12  # every turn of every conversation on one enclave
        assert len({next(iter(w)) for w in placed.values()}) >= 2  # conversations spread
        tags = {h.get(ROUTE_TAG_HEADER) for h in recording.seen}
        assert len(tags) == 12 and all(t and len(t) == 32 for t in tags)
        assert all(SYSTEM["content"] not in str(h) for h in recording.seen)
    else:
        assert sticky < 12  # random spreading scatters the turns
        assert all(ROUTE_TAG_HEADER.lower() not in h for h in recording.seen)


def test_affinity_secret_requires_cache_affinity(trio):
    gw, policy = trio
    with pytest.raises(ValueError, match="cache_affinity"):
        SecureClient(gw.url, policy, affinity_secret=os.urandom(32))
    with pytest.raises(ValueError, match="16"):
        SecureClient(gw.url, policy, cache_affinity=True, affinity_secret=b"short")
    from sealgate.protocol.public.modes import EHBP

    with pytest.raises(ValueError, match="native mode"):
        SecureClient(gw.url, policy, mode=EHBP, cache_affinity=True)
