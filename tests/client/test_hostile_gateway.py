"""A malicious gateway against the client's fleet handling.

The fleet directory, its load hints, its sizes and its 422 answers are all the
gateway's word: a bad entry is refused on its own, oversized answers are cut off
while they stream, and fake key refusals never retire a key that evidence binds.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import struct
import time
import tracemalloc

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from sealgate.client import (
    ENCLAVE_HEADER,
    Fleet,
    FleetUnavailable,
    GatewayError,
    NoVerifiedEnclave,
    Policy,
    SecureClient,
    VerificationError,
)
from sealgate.client.native import OHTTP
from sealgate.client.verify import VERIFIERS
from sealgate.gateway import Discovery
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.public.keyconfig import encode_key_configs
from sealgate.protocol.public.problem import PROBLEMS
from sealgate.protocol.sealing.hpke import PrivateKey
from starlette.responses import Response

from .certs import self_signed
from .conftest import Tamperer
from .hostile import Endless, Fixed, HostileServer

MESSAGES = [{"role": "user", "content": "secret prompt"}]
FLEET_PATH = "/.well-known/sealgate-fleet"
ATTESTATION_PATH = "/.well-known/sealgate-attestation"
MiB = 1024 * 1024
DIRECTORY_CAP = 16 * MiB


def _policy(fleet) -> Policy:
    return Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)


def _snp_document_with_malformed_vcek() -> dict[str, object]:
    """An SEV-SNP document whose VCEK parses as a certificate but has a corrupt extension."""
    vcek = self_signed(
        "SEV-VCEK",
        [
            # basicConstraints whose value is not DER: parsing the extensions fails
            ("2.5.29.19", b"\xff\xff"),
            ("1.3.6.1.4.1.3704.1.2", b"\x16\x05Milan"),
        ],
    )
    report = bytearray(1184)
    struct.pack_into("<I", report, 0, 2)  # version 2
    struct.pack_into("<I", report, 0x34, 1)  # ECDSA P-384 with SHA-384
    return AttestationDocument(
        platform="sev-snp",
        key_configs=encode_key_configs([PrivateKey.generate().key_config()]),
        evidence=bytes(report),
        collateral={"vcek": vcek.public_bytes(serialization.Encoding.DER)},
    ).to_dict()


# -- 1. one bad entry never takes the fleet down ----------------------------------------------


def test_one_bad_entry_never_takes_the_fleet_down(fleet, monkeypatch):
    server = fleet.enclave()
    gw = fleet.gateway(Discovery(static=[server.url]))

    def crashing_verifier(document, policy, record, now):
        raise struct.error("unpack requires a buffer of 4 bytes")  # a verifier bug

    monkeypatch.setitem(VERIFIERS, "test-crashing", crashing_verifier)
    base = _policy(fleet)
    policy = dataclasses.replace(base, platforms=base.platforms | {"sev-snp", "test-crashing"})
    listed: list[object] = []

    def hostile(doc):
        good = doc["enclaves"][0]
        att = good["attestation"]

        def bad(name, **changes):
            return {**copy.deepcopy(good), "id": name, **changes}

        listed[:] = [
            bad("crashing-verifier", attestation={**att, "platform": "test-crashing"}),
            bad("malformed-vcek", attestation=_snp_document_with_malformed_vcek()),
            bad("corrupted-evidence", attestation={**att, "evidence": att["evidence"][:-8]}),
            bad("long-nonce", attestation={**att, "nonce": "ab" * 2000}),
            bad("evidence-not-base64", attestation={**att, "evidence": "%%%"}),
            good,
            bad("attestation-list", attestation=[1, 2, 3]),
            bad("load-nan", load=float("nan")),
            bad("load-text", load="low"),
            bad("load-negative", load=-1),
            bad("healthy-text", healthy="yes"),
            bad("keys-text", keys="0011223344556677"),
            bad("keys-numbers", keys=[1, 2]),
            {**copy.deepcopy(good), "id": 7},
            {**copy.deepcopy(good), "id": "x" * 500},
            "garbage",
            None,
            [good],
            3.5,
            copy.deepcopy(good),  # the good enclave listed twice
        ]
        doc["enclaves"] = listed
        return doc

    tamperer = Tamperer(gw.url)
    tamperer.rewrite_fleet = hostile
    try:
        with SecureClient(tamperer.url, policy, mode=OHTTP) as secure:
            records = secure.verify()
            assert len(records) == len(listed)  # one record per entry, refused or not
            verified = [r for r in records if r.ok]
            assert [r.subject for r in verified] == [f"enclave {listed[5]['id']}"]
            refused = [r for r in records if not r.ok]
            assert all(r.failed_step is not None and r.failed_step.detail for r in refused)
            assert all(isinstance(f, VerificationError) for f in secure.fleet.failures.values())
            steps = {name: f.step for name, f in secure.fleet.failures.items()}
            assert steps["crashing-verifier"] == "evidence"
            assert "struct.error" in secure.fleet.failures["crashing-verifier"].diagnostics() or (
                "error" in secure.fleet.failures["crashing-verifier"].diagnostics()
            )
            assert steps["long-nonce"] == "directory entry"
            assert steps["load-nan"] == "directory entry"
            with secure.httpx_client() as http:
                for _ in range(3):
                    response = http.post("/v1/chat/completions", json={"messages": MESSAGES})
                    assert response.status_code == 200
                    assert response.headers[ENCLAVE_HEADER].startswith(listed[5]["id"])
    finally:
        tamperer.close()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,  # nesting deep enough to blow the parser's recursion limit
        b"\xff\xfe\x00",
        b"null",
        b'{"format": "sealgate-fleet/v1", "enclaves": {}}',
        b'{"format": "sealgate-fleet/v2", "enclaves": []}',
        b'{"format": "sealgate-fleet/v1", "enclaves": [], "version": "seven"}',
        json.dumps({"format": "sealgate-fleet/v1", "enclaves": [{}] * 1025}).encode(),
    ],
    ids=["deep", "binary", "null", "enclaves-object", "format", "version", "too-many"],
)
def test_a_garbage_directory_is_a_typed_error(body, fleet):
    with HostileServer({FLEET_PATH: Fixed(body)}) as hostile:
        fleet_view = Fleet(hostile.url, _policy(fleet))
        try:
            with pytest.raises(FleetUnavailable, match="fleet directory"):
                fleet_view.refresh()
        finally:
            fleet_view.close()


# -- 2. the directory is untrusted input ------------------------------------------------------


def test_an_entry_with_a_2000_byte_nonce_is_refused_alone(trio, tamperer):
    _, policy = trio

    def long_nonce(doc):
        doc["enclaves"][0]["attestation"]["nonce"] = "ab" * 2000
        return doc

    tamperer.rewrite_fleet = long_nonce
    with SecureClient(tamperer.url, policy, mode=OHTTP) as secure:
        records = secure.verify()
        assert len(records) == 3 and sum(r.ok for r in records) == 2
        (failure,) = secure.fleet.failures.values()
        assert failure.step == "directory entry" and "nonce" in str(failure)


def test_nan_load_on_every_entry_fails_closed(trio, tamperer):
    _, policy = trio

    def nan_load(doc):
        for entry in doc["enclaves"]:
            entry["load"] = float("nan")
        return doc

    tamperer.rewrite_fleet = nan_load
    with SecureClient(tamperer.url, policy, mode=OHTTP) as secure, secure.httpx_client() as http:
        with pytest.raises(NoVerifiedEnclave, match="nothing was sent") as excinfo:
            http.post("/v1/chat/completions", json={"messages": MESSAGES})
        assert {f.step for f in excinfo.value.failures.values()} == {"directory entry"}
    assert tamperer.bodies == []


@pytest.mark.parametrize(
    "behaviour",
    [Endless(b'{"format":"sealgate-fleet/v1","enclaves":['), Endless(content_length=512 * MiB)],
    ids=["endless-stream", "huge-content-length"],
)
def test_a_huge_directory_is_refused_while_it_streams(behaviour, fleet):
    with HostileServer({FLEET_PATH: behaviour}) as hostile:
        fleet_view = Fleet(hostile.url, _policy(fleet))
        tracemalloc.start()
        try:
            with pytest.raises(FleetUnavailable):
                fleet_view.refresh()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            fleet_view.close()
        hostile.close()  # waits until the server stopped sending
        sent = hostile.sent.get(FLEET_PATH, 0)
    # The server stops when the client hangs up; the slack is what loopback socket
    # buffers absorb. Unchecked, the client would read all of the server's 96 MiB.
    assert sent < DIRECTORY_CAP + 16 * MiB, sent
    assert peak < DIRECTORY_CAP * 2 + 8 * MiB, peak
    if behaviour.content_length is not None:
        assert sent < 16 * MiB  # refused on the header, before reading the body


def test_a_huge_fresh_nonce_document_is_refused_while_it_streams(fleet):
    server = fleet.enclave()
    gw = fleet.gateway(Discovery(static=[server.url]))
    directory = httpx.get(gw.url + FLEET_PATH).content
    strict = dataclasses.replace(_policy(fleet), require_fresh_nonce=True)
    with HostileServer({FLEET_PATH: Fixed(directory), ATTESTATION_PATH: Endless()}) as hostile:
        fleet_view = Fleet(hostile.url, strict)
        tracemalloc.start()
        try:
            fleet_view.refresh()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            fleet_view.close()
        hostile.close()
        sent = hostile.sent.get(ATTESTATION_PATH, 0)
    (failure,) = fleet_view.failures.values()
    assert failure.step == "fresh nonce"
    assert fleet_view.enclaves == {}
    assert sent < 16 * MiB, sent  # the cap is 256 KiB; the rest is socket buffers
    assert peak < 8 * MiB, peak


# -- 3. fake key refusals (422) ---------------------------------------------------------------


def _fake_422() -> Response:
    return Response(
        PROBLEMS.KEY_CONFIG("fake: the gateway says the key is gone").to_bytes(),
        422,
        media_type="application/problem+json",
    )


@pytest.fixture
def single(fleet):
    """One enclave behind a gateway, a malicious proxy in front; (proxy, policy)."""
    server = fleet.enclave()
    gw = fleet.gateway(Discovery(static=[server.url]))
    tamperer = Tamperer(gw.url)
    yield tamperer, _policy(fleet)
    tamperer.close()


def test_two_fake_422s_do_not_retire_a_key_evidence_still_binds(single):
    tamperer, policy = single
    fakes = [_fake_422(), _fake_422()]
    tamperer.answer = lambda request, body: (
        fakes.pop() if request.method == "POST" and fakes else None
    )
    with SecureClient(tamperer.url, policy, mode=OHTTP) as secure, secure.httpx_client() as http:
        first = http.post("/v1/chat/completions", json={"messages": MESSAGES})
        assert first.status_code == 200  # re-attested twice, then sent a third time
        assert len(tamperer.bodies) == 3
        for _ in range(3):
            assert http.post("/v1/chat/completions", json={"messages": MESSAGES}).status_code == 200
        (enclave,) = secure.fleet.enclaves.values()
        assert secure.fleet.choose(settle=0)[1] == enclave.keys[0]


def test_a_gateway_faking_422s_for_a_while_cannot_disable_the_client_for_good(single):
    tamperer, policy = single
    faking = [True]
    tamperer.answer = lambda request, body: (
        _fake_422() if request.method == "POST" and faking[0] else None
    )
    with (
        SecureClient(tamperer.url, policy, max_attempts=3, mode=OHTTP) as secure,
        secure.httpx_client() as http,
    ):
        with pytest.raises(GatewayError, match="gave up after 3 attempts"):
            http.post("/v1/chat/completions", json={"messages": MESSAGES})
        faking[0] = False
        response = http.post("/v1/chat/completions", json={"messages": MESSAGES})
        assert response.status_code == 200


def test_a_set_aside_key_comes_back_when_its_time_is_up(single):
    """When no fresh evidence can settle a 422 (the gateway blocks it), the set-aside expires."""
    tamperer, policy = single
    tamperer.answer = lambda request, body: (
        Response(b"", 500) if "nonce=" in str(request.url) else None
    )
    now = [time.time()]  # a clock the test can move forward
    fleet_view = Fleet(
        tamperer.url, dataclasses.replace(policy, max_age=None), clock=lambda: now[0]
    )
    try:
        fleet_view.refresh()
        enclave, key = fleet_view.choose(settle=0)
        fleet_view.key_rotated(key, enclave.id)  # the fresh-nonce request fails: still set aside
        with pytest.raises(NoVerifiedEnclave):
            fleet_view.choose(settle=0)
        now[0] += fleet_view.retire_for + 1
        assert fleet_view.choose(settle=0) == (fleet_view.enclaves[enclave.id], key)
    finally:
        fleet_view.close()
