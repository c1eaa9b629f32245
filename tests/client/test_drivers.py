"""The async driver runs the same exchange as the blocking one, in both modes; flavours for httpx2.

The protocol rules live once, in :mod:`sealgate.client.exchange`; these tests take the async
path through the ones the sync tests cover (a rotated key re-attested, a forged plaintext
200, every enclave refusing before processing).
"""

from __future__ import annotations

import httpx
import pytest
from sealgate.client import NoVerifiedEnclave, Policy, ResponseIntegrityError, SecureClient
from sealgate.client.drivers import flavour
from sealgate.client.native import OHTTP, AsyncNativeTransport, NativeTransport
from sealgate.client.transport import (
    AsyncEhbpTransport,
    AsyncSealgateTransport,
    EhbpTransport,
    SealgateTransport,
)
from sealgate.enclave import EnclaveConfig
from sealgate.gateway import Discovery
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.public.problem import PROBLEMS
from starlette.responses import Response

MODES = pytest.mark.parametrize("mode", [OHTTP, EHBP], ids=str)


def _chat(text: str) -> dict[str, object]:
    return {"model": "sealgate-demo-echo", "messages": [{"role": "user", "content": text}]}


def _answer_every_post(tamperer, response: Response) -> None:
    """The malicious gateway answers every POST itself (fleet GETs still pass through)."""
    tamperer.answer = lambda request, body: response if request.method == "POST" else None


@MODES
async def test_async_driver_recovers_from_a_key_rotation(fleet, mode):
    servers = [fleet.enclave(config=EnclaveConfig(key_grace=0)) for _ in range(2)]
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    with SecureClient(gw.url, policy, mode=mode, max_attempts=4) as secure:
        async with secure.async_httpx_client() as http:
            first = await http.post("/v1/chat/completions", json=_chat("before"))
            assert first.json()["choices"][0]["message"]["content"].endswith("You said: before")
            refreshes = secure.fleet.refreshes
            for built in fleet.built:
                built.rotate_keys()  # old keys die at once (grace 0); the client still holds them
            for i in range(3):
                answer = await http.post("/v1/chat/completions", json=_chat(f"q{i}"))
                assert answer.status_code == 200
                assert answer.json()["choices"][0]["message"]["content"].endswith(f"You said: q{i}")
        assert secure.fleet.refreshes > refreshes  # the 421/422 made it re-attest


@MODES
async def test_async_driver_refuses_a_forged_plaintext_200(trio, tamperer, mode):
    _, policy = trio
    _answer_every_post(tamperer, Response(b'{"forged": true}', 200, media_type="application/json"))
    with SecureClient(tamperer.url, policy, mode=mode) as secure:
        async with secure.async_httpx_client() as http:
            with pytest.raises(ResponseIntegrityError, match="without"):
                await http.post("/v1/chat/completions", json=_chat("secret prompt"))
    assert all(b"secret prompt" not in body for body in tamperer.bodies)


@MODES
async def test_async_driver_gives_up_when_every_enclave_refuses_before_processing(
    trio, tamperer, mode
):
    _, policy = trio
    down = PROBLEMS.ENCLAVE_UNAVAILABLE("test: every enclave is down")
    _answer_every_post(
        tamperer, Response(down.to_bytes(), 503, media_type="application/problem+json")
    )
    with SecureClient(tamperer.url, policy, mode=mode) as secure:
        async with secure.async_httpx_client() as http:
            with pytest.raises(NoVerifiedEnclave, match="refused it before processing"):
                await http.post("/v1/chat/completions", json=_chat("hello"))
    posted = [body for body in tamperer.bodies if body]
    assert 1 <= len(posted) <= 3  # one sealed request per enclave at most: nothing re-sent


def test_the_ehbp_transports_keep_their_first_names():
    assert SealgateTransport is EhbpTransport
    assert AsyncSealgateTransport is AsyncEhbpTransport


@pytest.mark.parametrize(
    "transport", [NativeTransport, AsyncNativeTransport, EhbpTransport, AsyncEhbpTransport]
)
def test_httpx2_flavours_are_the_same_transports(transport):
    httpx2 = pytest.importorskip("httpx2", reason="httpx2 (openai 3.x) is not installed")
    flavoured = flavour(transport, httpx2)
    base = (
        httpx2.AsyncBaseTransport
        if issubclass(transport, httpx.AsyncBaseTransport)
        else httpx2.BaseTransport
    )
    assert issubclass(flavoured, transport) and issubclass(flavoured, base)
    assert flavoured._http is httpx2 and flavour(transport, httpx2) is flavoured
    assert flavour(transport, httpx) is transport
