"""End-to-end acceptance: the demo fleet (separate processes) and the official openai SDK."""

from __future__ import annotations

import asyncio

import pytest
from sealgate.client import ENCLAVE_HEADER, SecureClient
from sealgate.client.demo import DemoFleet
from sealgate.protocol.public.paths import OHTTP_GATEWAY

openai = pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")
MESSAGES = [{"role": "user", "content": "acceptance"}]


@pytest.fixture(scope="module")
def demo_fleet():
    with DemoFleet(3) as fleet:
        yield fleet


def test_sync_openai_sdk_streaming_and_not(demo_fleet):
    with SecureClient(demo_fleet.gateway_url, demo_fleet.policy()) as secure:
        records = secure.verify()
        assert len(records) == 3 and all(r.ok for r in records)
        client = secure.openai()
        reply = client.chat.completions.create(model="sealgate-demo-echo", messages=MESSAGES)
        assert reply.choices[0].message.content.endswith("You said: acceptance")
        with client.chat.completions.with_streaming_response.create(
            model="sealgate-demo-echo", messages=MESSAGES, stream=True
        ) as response:
            enclave = response.headers[ENCLAVE_HEADER].split(";")[0]
            text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
        assert text.endswith("You said: acceptance")
        assert enclave in secure.fleet.enclaves
    seen = demo_fleet.gateway_saw()
    posts = [r for r in seen if r["method"] == "POST"]
    assert len(posts) >= 2 and all(r["status"] == 200 for r in posts)
    # Routing metadata only, under the keys every sealgate process logs them by.
    access = {
        "method",
        "path",
        "key_id",
        "enclave_id",
        "status",
        "outcome",
        "bytes_in",
        "bytes_out",
        "duration_ms",
    }
    assert all(access <= set(r) <= access | {"request_id"} for r in seen), seen
    assert all(r["path"] == OHTTP_GATEWAY for r in posts)


def test_async_openai_sdk_streaming_and_not(demo_fleet):
    async def main() -> tuple[str, str]:
        with SecureClient(demo_fleet.gateway_url, demo_fleet.policy()) as secure:
            client = secure.async_openai()
            reply = await client.chat.completions.create(
                model="sealgate-demo-echo", messages=MESSAGES
            )
            stream = await client.chat.completions.create(
                model="sealgate-demo-echo", messages=MESSAGES, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            await client.close()
            return reply.choices[0].message.content, text

    plain, streamed = asyncio.run(main())
    assert plain.endswith("You said: acceptance") and streamed.endswith("You said: acceptance")


def test_demo_command_runs(demo_fleet):
    from click.testing import CliRunner
    from sealgate.client.cli import main

    result = CliRunner().invoke(
        main, ["demo", "--enclaves", "2", "--token-delay", "0", "--prompt", "cli demo"]
    )
    assert result.exit_code == 0, result.output
    assert "You said: cli demo" in result.output
    assert "fleet verification" in result.output and "what the gateway saw" in result.output
    # Two models (1 x A, 1 x B here): each model's requests land on its own enclave.
    assert "one gateway, two models" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ sealgate-demo-")]
    assert len(rows) == 6 and {r.split()[1] for r in rows} == {
        "sealgate-demo-echo",
        "sealgate-demo-mini",
    }
    for row in rows:
        requested, _, verified_for = (c.strip() for c in row.strip("│").split("│"))
        assert requested == verified_for
