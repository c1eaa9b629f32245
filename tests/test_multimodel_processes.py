"""Two models served by separate enclave processes behind one gateway process (the demo fleet)."""

from __future__ import annotations

import asyncio

import pytest
from sealgate.client import ENCLAVE_HEADER, SecureClient
from sealgate.client.demo import DemoFleet
from sealgate.client.models import UnknownModel

openai = pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")
A, B = "llama-demo", "qwen-demo"
MESSAGES = [{"role": "user", "content": "processes"}]


@pytest.fixture(scope="module")
def two_model_fleet():
    with DemoFleet(models=[(A,), (A,), (B,)]) as fleet:
        yield fleet


def test_each_model_reaches_only_its_processes_sync_async_streaming(two_model_fleet):
    fleet = two_model_fleet
    with SecureClient(fleet.gateway_url, fleet.policy()) as secure:
        records = secure.verify()
        assert sorted(r.models for r in records) == [(A,), (A,), (B,)]
        trusted = {e.id: e.models for e in secure.fleet.enclaves.values()}
        client = secure.openai()
        for model in (A, B) * 4:
            with client.chat.completions.with_streaming_response.create(
                model=model, messages=MESSAGES, stream=True
            ) as response:
                enclave = response.headers[ENCLAVE_HEADER].split(";")[0]
                text = "".join(
                    c.choices[0].delta.content or "" for c in response.parse() if c.choices
                )
            assert trusted[enclave] == (model,) and text.endswith("You said: processes")
        assert [m.id for m in client.models.list().data] == [A, B]
        with pytest.raises(UnknownModel):
            client.embeddings.create(model="other", input="x")

        async def both() -> list[str]:
            aclient = secure.async_openai()
            replies = await asyncio.gather(
                *(
                    aclient.chat.completions.with_raw_response.create(model=m, messages=MESSAGES)
                    for m in (A, B, A, B)
                )
            )
            await aclient.close()
            return [r.headers[ENCLAVE_HEADER].split(";")[0] for r in replies]

        landed = asyncio.run(both())
        assert [trusted[e] for e in landed] == [(A,), (B,), (A,), (B,)]
