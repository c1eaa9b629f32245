"""The official openai SDK, sync and async, streaming and not, through gateway and enclaves."""

from __future__ import annotations

import asyncio

import pytest
from sealgate.client import ENCLAVE_HEADER, SecureClient
from sealgate.client.native import OHTTP
from sealgate.protocol.public.modes import EHBP

openai = pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")
MESSAGES = [{"role": "user", "content": "hello from the test"}]
REPLY_END = "You said: hello from the test"
#: The native mode and the EHBP compatibility mode must both serve the SDK unchanged.
MODES = pytest.mark.parametrize("mode", [OHTTP, EHBP], ids=str)


@MODES
def test_sync_chat_streaming_and_not_embeddings_models(trio, mode):
    gw, policy = trio
    with SecureClient(gw.url, policy, mode=mode) as secure:
        client = secure.openai()
        reply = client.chat.completions.create(model="sealgate-demo-echo", messages=MESSAGES)
        assert reply.choices[0].message.content.endswith(REPLY_END)
        assert reply.usage.prompt_tokens == 4
        stream = client.chat.completions.create(
            model="sealgate-demo-echo", messages=MESSAGES, stream=True
        )
        pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
        assert len(pieces) > 5 and "".join(pieces).endswith(REPLY_END)
        assert [m.id for m in client.models.list().data] == [
            "sealgate-demo-echo",
            "sealgate-demo-embedding",
        ]
        embedding = client.embeddings.create(model="sealgate-demo-embedding", input=["a", "b"])
        assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 16
        raw = client.chat.completions.with_raw_response.create(
            model="sealgate-demo-echo", messages=MESSAGES
        )
        assert raw.headers[ENCLAVE_HEADER].split(";")[0] in secure.fleet.enclaves


@MODES
def test_async_chat_streaming_and_not(trio, mode):
    gw, policy = trio

    async def main() -> tuple[str, str]:
        with SecureClient(gw.url, policy, mode=mode) as secure:
            client = secure.async_openai()
            reply = await client.chat.completions.create(
                model="sealgate-demo-echo", messages=MESSAGES
            )
            stream = await client.chat.completions.create(
                model="sealgate-demo-echo", messages=MESSAGES, stream=True
            )
            pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            await client.close()
            return reply.choices[0].message.content, "".join(pieces)

    plain, streamed = asyncio.run(main())
    assert plain.endswith(REPLY_END) and streamed.endswith(REPLY_END)


def test_requests_spread_across_verified_enclaves(trio):
    gw, policy = trio
    with SecureClient(gw.url, policy, mode=OHTTP) as secure:
        client = secure.openai()
        served = set()
        for _ in range(30):
            raw = client.chat.completions.with_raw_response.create(
                model="sealgate-demo-echo", messages=MESSAGES
            )
            served.add(raw.headers[ENCLAVE_HEADER].split(";")[0])
        assert len(served) == 3


@MODES
def test_plain_httpx_clients(trio, mode):
    gw, policy = trio
    with SecureClient(gw.url, policy, mode=mode) as secure:
        with secure.httpx_client() as http:
            response = http.post("/v1/chat/completions", json={"messages": MESSAGES})
            assert response.status_code == 200 and response.json()["choices"][0]["message"][
                "content"
            ].endswith(REPLY_END)

        async def run() -> int:
            async with secure.async_httpx_client() as client:
                r = await client.get("/v1/models")
                return r.status_code

        assert asyncio.run(run()) == 200
