"""The gateway's handling of multi-recipient requests it cannot route: clear 4xx, nothing forwarded."""

from __future__ import annotations

import httpx
import pytest
from sealgate.gateway import Discovery
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.multi_recipient import MultiRequestSealer

MULTI = {"content-type": "message/sealgate-multi-req"}
PATH = "/.well-known/ohttp-gateway"


@pytest.fixture
def gateway(fleet):
    enclave = fleet.enclave()
    return fleet.gateway(Discovery(static=[enclave.url]))


@pytest.mark.parametrize(
    "body",
    [b"\x02\x01" + bytes(64), b"\x01\x00" + bytes(64), b"\x01\x09" + bytes(64)],
    ids=["unknown-version", "no-candidates", "too-many-candidates"],
)
def test_a_malformed_candidate_header_is_a_400(gateway, body):
    response = httpx.post(gateway.url + PATH, content=body, headers=MULTI)
    assert response.status_code == 400
    assert Problem.from_bytes(response.content).is_(PROBLEMS.MALFORMED_REQUEST)


def test_a_body_ending_inside_the_header_is_a_400(gateway):
    sealer = MultiRequestSealer([PrivateKey.generate().key_config()])
    response = httpx.post(gateway.url + PATH, content=sealer.header[:40], headers=MULTI)
    assert response.status_code == 400
    assert "ended inside" in Problem.from_bytes(response.content).detail


def test_candidates_no_enclave_holds_are_a_421(gateway):
    sealer = MultiRequestSealer([PrivateKey.generate().key_config(key_id=i) for i in range(2)])
    wire = sealer.header + sealer.seal_final(b"x" * 100)
    response = httpx.post(gateway.url + PATH, content=wire, headers=MULTI)
    assert response.status_code == 421
    assert Problem.from_bytes(response.content).is_(PROBLEMS.UNKNOWN_KEY)


def test_an_empty_multi_recipient_request_is_a_400(gateway):
    response = httpx.post(gateway.url + PATH, content=b"", headers=MULTI)
    assert response.status_code == 400
