"""Refusals: each bad case fails closed with the step named, and no request body leaves the client."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealgate.client import (
    ExpectedMeasurement,
    NoVerifiedEnclave,
    Policy,
    ResponseIntegrityError,
    SecureClient,
    VerificationError,
    verify_document,
)
from sealgate.client.native import OHTTP
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.public.keyconfig import encode_key_configs
from sealgate.protocol.sealing.hpke import PrivateKey
from starlette.responses import Response

MESSAGES = [{"role": "user", "content": "secret prompt"}]


def _post(secure: SecureClient) -> None:
    with secure.httpx_client() as http:
        http.post("/v1/chat/completions", json={"messages": MESSAGES})


def _refused_step(excinfo) -> set[str]:
    return {f.step for f in excinfo.value.failures.values()}


def _document(http, gw_url) -> AttestationDocument:
    doc = http.get(gw_url + "/.well-known/sealgate-fleet").json()
    return AttestationDocument.from_dict(doc["enclaves"][0]["attestation"])


def test_key_not_matching_report_data(trio, tamperer):
    _, policy = trio

    def swap_keys(doc):
        other = encode_key_configs([PrivateKey.generate().key_config()])
        for entry in doc["enclaves"]:
            entry["attestation"]["key_configs"] = __import__("base64").b64encode(other).decode()
            entry["keys"] = []
        return doc

    tamperer.rewrite_fleet = swap_keys
    with (
        SecureClient(tamperer.url, policy, mode=OHTTP) as secure,
        pytest.raises(NoVerifiedEnclave) as excinfo,
    ):
        _post(secure)
    assert _refused_step(excinfo) == {"report_data binding"}
    record = next(iter(excinfo.value.failures.values())).verification
    assert record.failed_step.expected != record.failed_step.actual
    assert tamperer.bodies == []


def test_wrong_measurement(trio, tamperer):
    _gw, policy = trio
    wrong = Policy.software(policy.software_roots, "00" * 48)
    with (
        SecureClient(tamperer.url, wrong, mode=OHTTP) as secure,
        pytest.raises(NoVerifiedEnclave) as excinfo,
    ):
        _post(secure)
    assert _refused_step(excinfo) == {"measurement"}
    assert tamperer.bodies == []


def test_untrusted_software_root(trio, tamperer):
    _, policy = trio
    stranger = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    untrusting = Policy.software(stranger, policy.measurements[0].registers["measurement"])
    with (
        SecureClient(tamperer.url, untrusting, mode=OHTTP) as secure,
        pytest.raises(NoVerifiedEnclave) as excinfo,
    ):
        _post(secure)
    assert _refused_step(excinfo) == {"software root trusted"}
    assert tamperer.bodies == []


def test_software_platform_refused_by_default_policy(trio):
    gw, _ = trio
    with httpx.Client() as http:
        document = _document(http, gw.url)
    with pytest.raises(VerificationError) as excinfo:
        verify_document(document, Policy())
    assert excinfo.value.step == "platform allowed"


def test_stale_document(trio):
    gw, policy = trio
    with httpx.Client() as http:
        document = _document(http, gw.url)
    verify_document(document, policy)  # fresh now
    with pytest.raises(VerificationError) as excinfo:
        verify_document(document, policy, now=__import__("time").time() + 3600)
    assert excinfo.value.step == "freshness"
    assert (
        "3600" in excinfo.value.verification.failed_step.actual
        or "age" in excinfo.value.diagnostics()
    )


def test_replayed_document_when_a_fresh_nonce_is_required(trio):
    gw, policy = trio
    with httpx.Client() as http:
        document = _document(http, gw.url)
    strict = Policy.software(
        policy.software_roots,
        policy.measurements[0].registers["measurement"],
        require_fresh_nonce=True,
    )
    with pytest.raises(VerificationError) as excinfo:
        verify_document(document, strict)
    assert excinfo.value.step == "fresh nonce"
    with pytest.raises(VerificationError) as excinfo:
        verify_document(document, strict, nonce=os.urandom(32))  # a replay of an older nonce
    assert excinfo.value.step == "fresh nonce"


def test_fresh_nonce_policy_works_end_to_end(trio):
    gw, policy = trio
    strict = Policy.software(
        policy.software_roots,
        policy.measurements[0].registers["measurement"],
        require_fresh_nonce=True,
    )
    with SecureClient(gw.url, strict, mode=OHTTP) as secure:
        records = secure.verify()
        assert len(records) == 3
        assert all(any(s.name == "fresh nonce" and s.ok for s in r.steps) for r in records)
        with secure.httpx_client() as http:
            assert http.post("/v1/chat/completions", json={"messages": MESSAGES}).status_code == 200


def test_gateway_swapping_documents_between_enclaves(trio, tamperer):
    _, policy = trio

    def swap(doc):
        a, b = doc["enclaves"][0], doc["enclaves"][1]
        a["attestation"], b["attestation"] = b["attestation"], a["attestation"]
        return doc

    tamperer.rewrite_fleet = swap
    with SecureClient(tamperer.url, policy, mode=OHTTP) as secure:
        secure.fleet.refresh()
        assert {f.step for f in secure.fleet.failures.values()} == {"gateway listing"}
        assert len(secure.fleet.failures) == 2 and len(secure.fleet.enclaves) == 1


def test_gateway_returning_plaintext_200(trio, tamperer):
    _, policy = trio
    tamperer.answer = lambda request, body: (
        Response(
            b'{"choices":[{"message":{"content":"forged"}}]}', 200, media_type="application/json"
        )
        if request.method == "POST"
        else None
    )
    with (
        SecureClient(tamperer.url, policy, mode=OHTTP) as secure,
        pytest.raises(ResponseIntegrityError, match="without"),
    ):
        _post(secure)
    assert all(b"secret prompt" not in body for body in tamperer.bodies)  # what was sent was sealed


def test_stream_cut_short(trio, tamperer):
    gw, policy = trio

    def cut(request, body):
        if request.method != "POST":
            return None
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        upstream = httpx.post(gw.url + request.url.path, headers=headers, content=body)
        return Response(
            upstream.content[:-30],
            upstream.status_code,
            headers={k: v for k, v in upstream.headers.items() if k.lower() == "content-type"},
        )

    tamperer.answer = cut
    with (
        SecureClient(tamperer.url, policy, mode=OHTTP) as secure,
        secure.httpx_client() as http,
        pytest.raises(ResponseIntegrityError),
    ):
        http.post("/v1/chat/completions", json={"messages": MESSAGES, "stream": True})


def test_no_fleet_means_nothing_sent(tamperer, trio):
    _, policy = trio
    tamperer.rewrite_fleet = lambda doc: {**doc, "enclaves": []}
    with (
        SecureClient(tamperer.url, policy, mode=OHTTP) as secure,
        pytest.raises(NoVerifiedEnclave, match="nothing was sent"),
    ):
        _post(secure)
    assert tamperer.bodies == []


def test_secret_headers_are_not_sent_in_the_clear(trio, tamperer):
    _, policy = trio
    seen: list[dict[str, str]] = []
    tamperer.answer = lambda request, body: seen.append(dict(request.headers)) or None
    with SecureClient(tamperer.url, policy, mode=OHTTP) as secure:
        client = secure.openai(api_key="sk-very-secret")
        client.chat.completions.create(model="sealgate-demo-echo", messages=MESSAGES)
    posted = [h for h in seen if h.get("content-type", "").startswith("message/")]
    assert posted and all("authorization" not in h for h in posted)
    assert all("sk-very-secret" not in json.dumps(h) for h in seen)


def test_any_measurement_must_be_explicit(trio):
    gw, policy = trio
    with httpx.Client() as http:
        document = _document(http, gw.url)
    no_pin = Policy.software(policy.software_roots)
    with pytest.raises(VerificationError, match="pins no measurement"):
        verify_document(document, no_pin)
    dev = Policy.software(policy.software_roots, allow_any_measurement=True)
    assert verify_document(document, dev).verification.ok
    extra = no_pin.with_measurements(
        ExpectedMeasurement("software", policy.measurements[0].registers)
    )
    assert verify_document(document, extra).verification.ok


@pytest.mark.parametrize("recipients", [1, 3])
def test_every_enclave_unavailable_ends_in_a_clear_error(trio, tamperer, recipients):
    from sealgate.protocol.public.problem import PROBLEMS

    _, policy = trio
    down = PROBLEMS.ENCLAVE_UNAVAILABLE("test: every enclave is down")
    tamperer.answer = lambda request, body: (
        Response(
            down.to_bytes(),
            503,
            media_type="application/problem+json",
            headers={"retry-after": "1"},
        )
        if request.method == "POST"
        else None
    )
    with (
        SecureClient(tamperer.url, policy, mode=OHTTP, recipients=recipients) as secure,
        pytest.raises(NoVerifiedEnclave, match="refused it before processing"),
    ):
        _post(secure)
    # Single-recipient: one sealed attempt per verified enclave, then it stops. Wrapped to
    # all three: one attempt - the gateway's 503 covers every candidate it names.
    assert len(tamperer.bodies) == (3 if recipients == 1 else 1)
