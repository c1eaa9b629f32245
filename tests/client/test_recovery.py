"""Recovery: key rotation, an enclave killed mid-session, the fleet shrinking and growing back."""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest
from sealgate.client import ENCLAVE_HEADER, Policy, SecureClient
from sealgate.client.demo import DemoFleet
from sealgate.client.native import OHTTP
from sealgate.enclave import EnclaveConfig
from sealgate.gateway import Discovery, GatewayConfig
from sealgate.protocol.public.modes import EHBP

openai = pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")


def _ask(client, text: str) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="sealgate-demo-echo", messages=[{"role": "user", "content": text}]
    )
    return raw.parse().choices[0].message.content, raw.headers[ENCLAVE_HEADER].split(";")[0]


@pytest.mark.parametrize("mode", [OHTTP, EHBP], ids=str)
def test_key_rotation_mid_session_is_invisible(fleet, mode):
    servers = [fleet.enclave(config=EnclaveConfig(key_grace=0)) for _ in range(2)]
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    with SecureClient(gw.url, policy, mode=mode) as secure:
        client = secure.openai(max_retries=0)  # recovery must come from sealgate, not openai
        for built in fleet.built:
            built.rotate_keys()  # old keys die at once (grace 0); the client still holds them
        for i in range(10):
            answer, _ = _ask(client, f"question {i}")
            assert answer.endswith(f"You said: question {i}")
        assert secure.fleet.refreshes >= 2  # it re-attested after the 422


@pytest.mark.parametrize("mode", [OHTTP, EHBP], ids=str)
def test_fleet_shrinking_to_one_and_growing_back(fleet, tmp_path, mode):
    servers = [fleet.enclave() for _ in range(3)]
    path = tmp_path / "fleet.toml"
    path.write_text("enclaves = [{}]\n".format(", ".join(f'"{s.url}"' for s in servers)))
    gw = fleet.gateway(
        Discovery(file=path), GatewayConfig(poll_interval=0.2, discovery_interval=0.2)
    )
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    with SecureClient(gw.url, policy, refresh_interval=0.5, mode=mode) as secure:
        client = secure.openai(max_retries=0)
        assert len({_ask(client, "a")[1] for _ in range(20)}) == 3
        path.write_text(f'enclaves = ["{servers[0].url}"]\n')
        os.utime(path, (10, 10))
        gw.refresh()
        seen = {_ask(client, f"q{i}")[1] for i in range(10)}  # 421s are absorbed by re-fetching
        assert len(seen) == 1
        path.write_text("enclaves = [{}]\n".format(", ".join(f'"{s.url}"' for s in servers)))
        os.utime(path, (20, 20))
        gw.refresh()
        time.sleep(0.6)  # let the client's directory age past refresh_interval
        assert len({_ask(client, "b")[1] for _ in range(30)}) == 3


def test_enclave_killed_mid_session():
    """The demo fleet (separate processes); one enclave gets SIGKILL while user code runs."""
    with DemoFleet(3) as demo:
        results: list[tuple[int, str, str]] = []
        errors: list[BaseException] = []
        killed = threading.Event()

        def user_code() -> None:
            with SecureClient(demo.gateway_url, demo.policy(), mode=OHTTP) as secure:
                client = secure.openai()  # plain user code: default openai settings
                for i in range(60):
                    try:
                        answer, enclave = _ask(client, f"request {i}")
                    except BaseException as exc:
                        errors.append(exc)
                        continue
                    results.append((i, answer, enclave))
                    if i == 15:
                        killed.wait(10)

        worker = threading.Thread(target=user_code)
        worker.start()
        while len(results) < 15 and worker.is_alive():
            time.sleep(0.01)
        demo.kill_enclave(0)  # no goodbye: connections just die
        killed.set()
        worker.join(120)
        assert not errors, errors
        assert [r[0] for r in results] == list(range(60))  # nothing lost, nothing twice
        for i, answer, _ in results:
            assert answer.endswith(f"You said: request {i}")
        assert len({enclave for i, _, enclave in results if i > 20}) == 2  # out of rotation
        deadline = time.monotonic() + 10
        while httpx.get(demo.gateway_url + "/healthz").json()["healthy_enclaves"] != 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_forwarding_failed_is_a_connection_error_the_sdk_may_retry(trio, tamperer):
    from sealgate.client import ForwardingFailed
    from sealgate.protocol.public.problem import PROBLEMS
    from starlette.responses import Response

    _, policy = trio
    failed = PROBLEMS.FORWARDING_FAILED(
        "enclave closed the connection after the request was forwarded"
    )
    calls = []

    def first_post_fails(request, body):
        if request.method != "POST":
            return None
        calls.append(body)
        if len(calls) == 1:
            return Response(failed.to_bytes(), 502, media_type="application/problem+json")
        return None

    tamperer.answer = first_post_fails
    with SecureClient(tamperer.url, policy, mode=OHTTP) as secure:
        answer, _ = _ask(secure.openai(), "once")  # openai's default retry re-sends, sealed anew
        assert answer.endswith("You said: once") and len(calls) == 2 and calls[0] != calls[1]
        calls.clear()
        with pytest.raises(openai.APIConnectionError) as excinfo:
            _ask(secure.openai(max_retries=0), "no retry")
        assert isinstance(excinfo.value.__cause__, ForwardingFailed)
        assert len(calls) == 1  # sealgate itself never re-sends after forwarding


@pytest.mark.parametrize("mode", [OHTTP, EHBP], ids=str)
def test_key_rotation_before_the_gateway_polls_again(fleet, mode):
    """Both enclaves rotate (no grace) a second before the gateway's next poll: the client's
    retries wait for the gateway's directory (0.15, 0.45, 1.35 s, each before re-reading it)
    instead of spending every attempt on the directory it already had."""
    servers = [fleet.enclave(config=EnclaveConfig(key_grace=0)) for _ in range(2)]
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]), GatewayConfig(poll_interval=1.0))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    with SecureClient(gw.url, policy, mode=mode) as secure:
        client = secure.openai(max_retries=0)  # recovery must come from sealgate, not openai
        assert _ask(client, "before")[0].endswith("You said: before")
        for built in fleet.built:
            built.rotate_keys()  # old keys die at once; the gateway learns at its next poll
        answer, _ = _ask(client, "after")
        assert answer.endswith("You said: after")
