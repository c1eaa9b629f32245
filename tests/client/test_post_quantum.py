"""The SDK and post-quantum keys: hybrid by default, X25519 only where the policy allows it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sealgate.client import Fleet, NoVerifiedEnclave, Policy, SecureClient
from sealgate.client.cli import main
from sealgate.client.errors import PostQuantumModeRequired, PostQuantumUnavailable
from sealgate.client.native import OHTTP
from sealgate.enclave import EnclaveConfig
from sealgate.gateway import Discovery
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.public.suites import KEM_MLKEM768_X25519, KEM_X25519_HKDF_SHA256
from sealgate.protocol.sealing.ohttp import RequestHeader
from starlette.requests import Request
from starlette.responses import Response

from .conftest import Tamperer

CHAT = {"model": "sealgate-demo-echo", "messages": [{"role": "user", "content": "hi"}]}
CLASSICAL = EnclaveConfig(post_quantum_keys=False)


def _setup(fleet: Any, config: EnclaveConfig | None = None) -> tuple[Tamperer, Policy, Any]:
    server = fleet.enclave(config=config)
    gw = fleet.gateway(Discovery(static=[server.url]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    return Tamperer(gw.url), policy, fleet.built[-1]


def _record(tamperer: Tamperer) -> list[tuple[str, bytes]]:
    """Each POST's ``Sealgate-Key-Id`` and body, as the (untrusted) gateway sees them."""
    seen: list[tuple[str, bytes]] = []

    def answer(request: Request, body: bytes) -> Response | None:
        if request.method == "POST":
            seen.append((request.headers.get("sealgate-key-id", ""), body))
        return None

    tamperer.answer = answer
    return seen


def _chat(url: str, policy: Policy, **options: Any) -> httpx.Response:
    with SecureClient(url, policy, **options) as secure, secure.httpx_client() as http:
        return http.post("/v1/chat/completions", json=CHAT)


def test_the_sdk_seals_to_the_hybrid_key_of_a_default_enclave(fleet: Any) -> None:
    tamperer, policy, built = _setup(fleet)
    try:
        seen = _record(tamperer)
        hybrid = built.keyring.current_hybrid
        assert hybrid is not None
        for each in (policy, replace(policy, require_post_quantum=True)):
            reply = _chat(tamperer.url, each, mode=OHTTP)
            assert reply.status_code == 200 and "You said: hi" in reply.text
        assert len(seen) == 2
        for key_id, body in seen:
            parsed = RequestHeader.parse(body)
            assert parsed is not None
            header, _ = parsed
            # The routing fingerprint and the OHTTP key id are both the hybrid key's.
            assert key_id == hybrid.fingerprint
            assert (header.key_id, header.kem_id) == (hybrid.config.key_id, KEM_MLKEM768_X25519)
            assert len(header.enc) == 1120
    finally:
        tamperer.close()


def test_the_sdk_falls_back_to_x25519_only_where_the_enclave_offers_nothing_else(
    fleet: Any,
) -> None:
    tamperer, policy, built = _setup(fleet, CLASSICAL)
    try:
        assert built.keyring.current_hybrid is None
        seen = _record(tamperer)
        reply = _chat(tamperer.url, policy, mode=OHTTP)
        assert reply.status_code == 200 and "You said: hi" in reply.text
        ((key_id, body),) = seen
        parsed = RequestHeader.parse(body)
        assert parsed is not None
        assert key_id == built.keyring.current.fingerprint
        assert parsed[0].kem_id == KEM_X25519_HKDF_SHA256 and len(parsed[0].enc) == 32
    finally:
        tamperer.close()


def test_require_post_quantum_refuses_an_enclave_without_a_hybrid_key(fleet: Any) -> None:
    tamperer, policy, _ = _setup(fleet, CLASSICAL)
    try:
        seen = _record(tamperer)
        strict = replace(policy, require_post_quantum=True)
        with pytest.raises(NoVerifiedEnclave) as refused:
            _chat(tamperer.url, strict, mode=OHTTP)
        (failure,) = refused.value.failures.values()
        assert isinstance(failure, PostQuantumUnavailable)
        assert failure.step == "post-quantum key"
        assert seen == []  # nothing was sealed to the classical key
    finally:
        tamperer.close()


@pytest.mark.parametrize("mode", [EHBP, "ehbp"], ids=["object", "name"])
def test_require_post_quantum_refuses_modes_that_cannot_use_it(fleet: Any, mode: Any) -> None:
    tamperer, policy, _ = _setup(fleet)
    try:
        seen = _record(tamperer)
        # Without the requirement the X25519 modes still work against a default enclave.
        assert _chat(tamperer.url, policy, mode=mode).status_code == 200
        seen.clear()
        strict = replace(policy, require_post_quantum=True)
        with pytest.raises(PostQuantumModeRequired, match="native mode"):
            _chat(tamperer.url, strict, mode=mode)
        # The fleet refuses too, for transports built on it directly.
        view = Fleet(tamperer.url, strict)
        try:
            with pytest.raises(PostQuantumModeRequired):
                view.choose()
            assert view.choose(post_quantum=True)[1].post_quantum
        finally:
            view.close()
        assert seen == []
    finally:
        tamperer.close()


def test_a_set_aside_hybrid_key_never_downgrades_to_x25519(fleet: Any) -> None:
    """A gateway's 422 for the hybrid key must not make the SDK seal to X25519 instead."""
    tamperer, policy, _ = _setup(fleet)
    try:
        with SecureClient(tamperer.url, policy, mode=OHTTP) as secure:
            secure.fleet.refresh()
            (enclave,) = secure.fleet.enclaves.values()
            hybrid = next(k for k in enclave.keys if k.post_quantum)
            secure.fleet._retired[hybrid.fingerprint] = secure.fleet._clock()
            with pytest.raises(NoVerifiedEnclave):
                secure.fleet.choose(settle=0.0, post_quantum=True)
            _, classical = secure.fleet.choose(settle=0.0)
            assert classical.kem_id == KEM_X25519_HKDF_SHA256
    finally:
        tamperer.close()


def test_verify_shows_which_kem_each_enclave_offers(fleet: Any) -> None:
    servers = [fleet.enclave(), fleet.enclave(config=CLASSICAL)]
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    args = [
        "--software-root",
        policy.software_roots[0].hex(),
        "--measurement",
        "software:" + policy.measurements[0].registers["measurement"],
    ]
    runner = CliRunner()
    result = runner.invoke(main, ["verify", gw.url, "--json", *args])
    assert result.exit_code == 0, result.output
    enclaves = json.loads(result.output)["enclaves"]
    offered = sorted((e["post_quantum"], tuple(e["key_kems"])) for e in enclaves)
    assert offered == [(False, ("X25519",)), (True, ("X25519", "MLKEM768-X25519"))]
    table = runner.invoke(main, ["verify", gw.url, *args])
    assert table.exit_code == 0, table.output
    assert "(MLKEM768-X25519)" in table.output and "(X25519)" in table.output
    assert "post-quantum key: yes" in table.output
    assert "post-quantum key: no (X25519 only)" in table.output
    strict = runner.invoke(main, ["verify", gw.url, "--json", "--require-post-quantum", *args])
    assert strict.exit_code == 1, strict.output
    by_pq = {e["post_quantum"]: e for e in json.loads(strict.output)["enclaves"]}
    assert by_pq[True]["ok"]
    failed = [s for s in by_pq[False]["steps"] if not s["ok"]]
    assert [s["name"] for s in failed] == ["post-quantum key"]


def test_after_a_rotation_the_sdk_moves_to_the_new_hybrid_key(fleet: Any) -> None:
    tamperer, policy, built = _setup(fleet, EnclaveConfig(key_grace=0))
    try:
        seen = _record(tamperer)
        with SecureClient(tamperer.url, policy) as secure, secure.httpx_client() as http:
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
            old = built.keyring.current_hybrid
            built.rotate_keys()  # grace 0: the old pair no longer decrypts
            new = built.keyring.current_hybrid
            assert old is not None and new is not None and new.fingerprint != old.fingerprint
            assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
        # first request, the one refused with 422 under the old key, then the re-sealed one
        assert [key_id for key_id, _ in seen] == [old.fingerprint, old.fingerprint, new.fingerprint]
    finally:
        tamperer.close()
