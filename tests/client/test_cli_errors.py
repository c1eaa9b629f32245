"""Newcomer friction: an unreachable engine and a ``/v1`` base URL end in clear messages."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from click.testing import CliRunner
from sealgate.client import EnclaveError, Policy, SecureClient
from sealgate.client.cli import main
from sealgate.client.fleet import gateway_root
from sealgate.client.native import OHTTP
from sealgate.enclave.engines.upstream import HTTPEngine
from sealgate.gateway import Discovery
from sealgate.protocol.public.problem import PROBLEMS

from ..clirunner import stderr_runner
from ..servers import free_port

openai = pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")
MESSAGES = [{"role": "user", "content": "hello"}]


def _policy_args(policy: Policy) -> list[str]:
    return [
        "--software-root",
        policy.software_roots[0].hex(),
        "--measurement",
        "software:" + policy.measurements[0].registers["measurement"],
    ]


@pytest.fixture
def engine_down(fleet):
    """One enclave whose engine URL is a closed loopback port, behind a gateway."""
    dead = f"http://127.0.0.1:{free_port()}"
    server = fleet.enclave(engine=HTTPEngine(dead, connect_timeout=2.0))
    gw = fleet.gateway(Discovery(static=[server.url]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    return gw, policy, dead


def _assert_enclave_problem(error: EnclaveError | None, dead: str) -> None:
    assert error is not None and error.status == 502
    assert error.problem is not None and error.problem.is_(PROBLEMS.UPSTREAM_UNAVAILABLE)
    assert "unreachable" in (error.problem.detail or "") and dead in (error.problem.detail or "")


def test_the_sdk_exposes_the_enclaves_decrypted_problem(engine_down):
    gw, policy, dead = engine_down
    with SecureClient(gw.url, policy, mode=OHTTP) as secure:
        with pytest.raises(openai.InternalServerError) as excinfo:
            secure.openai(max_retries=0).chat.completions.create(model="any", messages=MESSAGES)
        _assert_enclave_problem(EnclaveError.of(excinfo.value), dead)
        assert "unreachable" in str(EnclaveError.of(excinfo.value))

        with secure.httpx_client() as http:
            response = http.post("/v1/chat/completions", json={"messages": MESSAGES})
            with pytest.raises(httpx.HTTPStatusError) as status_error:
                response.raise_for_status()
        _assert_enclave_problem(EnclaveError.of(status_error.value), dead)

        async def post_async() -> httpx.Response:
            async with secure.async_httpx_client() as client:
                return await client.post("/v1/chat/completions", json={"messages": MESSAGES})

        _assert_enclave_problem(EnclaveError.of(asyncio.run(post_async())), dead)


def test_chat_with_the_engine_down_prints_the_enclaves_problem(engine_down):
    gw, policy, dead = engine_down
    result = CliRunner().invoke(main, ["chat", "--gateway", gw.url, "hi", *_policy_args(policy)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "unreachable" in result.output and dead in result.output
    assert "Traceback" not in result.output


def test_demo_with_a_dead_upstream_prints_the_enclaves_problem():
    dead = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        main, ["demo", "--enclaves", "1", "--upstream", dead, "--token-delay", "0"]
    )
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "unreachable" in result.output and dead in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("https://api.example.com/v1", "https://api.example.com"),
        ("https://api.example.com/v1/", "https://api.example.com"),
        ("https://example.com/llm/v1", "https://example.com/llm"),
        ("https://api.example.com", None),
        ("https://api.example.com/v10", None),
    ],
)
def test_gateway_root(url, root):
    stripped, note = gateway_root(url)
    if root is None:
        assert note is None and stripped == url
    else:
        assert stripped == root and note is not None and "drop it" in note


def test_a_v1_base_url_is_stripped_with_a_warning(trio):
    gw, policy = trio
    with pytest.warns(UserWarning, match="ends in /v1: drop it"):
        secure = SecureClient(gw.url + "/v1", policy, mode=OHTTP)
    with secure:
        assert secure.gateway_url == gw.url
        assert len(secure.verify()) == 3
        reply = secure.openai().chat.completions.create(
            model="sealgate-demo-echo", messages=MESSAGES
        )
        assert reply.choices[0].message.content.endswith("You said: hello")


def test_the_cli_accepts_a_v1_url_and_says_to_drop_it(trio):
    gw, policy = trio
    runner = stderr_runner()
    chat = runner.invoke(
        main, ["chat", "--gateway", gw.url + "/v1", "hello cli", *_policy_args(policy)]
    )
    assert chat.exit_code == 0, chat.output
    assert "You said: hello cli" in chat.stdout
    assert "drop it" in chat.stderr
    verify = runner.invoke(main, ["verify", gw.url + "/v1/", "--json", *_policy_args(policy)])
    assert verify.exit_code == 0, verify.output
    assert json.loads(verify.stdout)["ok"] and "drop it" in verify.stderr
