"""SecureClient -> gateway -> two enclaves -> a real llama.cpp server, with the openai SDK.

Greedy decoding (temperature 0) makes the engine deterministic, so what arrives through
sealgate is compared with what the same engine answers directly.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import httpx
import pytest
from sealgate.client import ENCLAVE_HEADER, SecureClient
from sealgate.client.errors import ResponseIntegrityError
from sealgate.protocol.public.logs import JsonLines

from .conftest import SealedLlama, sealed_llama
from .llama_server import CHAT_MODEL, EMBEDDING_MODEL, LlamaServer

openai = pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")

MESSAGES = [{"role": "user", "content": "Tell me about the weather in the hills."}]
GREEDY = {"temperature": 0.0, "seed": 19}


def _direct(engine: LlamaServer):
    return openai.OpenAI(base_url=engine.url + "/v1", api_key="none", max_retries=0)


def _wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stream_text(stream) -> tuple[list[str], object]:
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    return pieces, usage


def test_models_are_the_engines_own_list(through_sealgate: SealedLlama):
    direct = [m.id for m in _direct(through_sealgate.engine).models.list().data]
    assert direct == [CHAT_MODEL, EMBEDDING_MODEL]
    with SecureClient(through_sealgate.gateway.url, through_sealgate.policy) as secure:
        sealed = [m.id for m in secure.openai(max_retries=0).models.list().data]
    assert sealed == direct
    for enclave in through_sealgate.fleet.enclaves:  # each checked the engine at start-up
        health = httpx.get(enclave.url + "/healthz").json()
        assert health["status"] == "ok" and health["engine"]["served"] == direct


def test_chat_completion_with_usage_matches_the_direct_answer(through_sealgate: SealedLlama):
    request = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 24, **GREEDY}
    direct = _direct(through_sealgate.engine).chat.completions.create(**request)
    with SecureClient(through_sealgate.gateway.url, through_sealgate.policy) as secure:
        raw = secure.openai(max_retries=0).chat.completions.with_raw_response.create(**request)
        sealed = raw.parse()
        assert raw.headers[ENCLAVE_HEADER].split(";")[0] in secure.fleet.enclaves
    assert sealed.model == CHAT_MODEL and sealed.choices[0].finish_reason == "length"
    assert sealed.choices[0].message.content == direct.choices[0].message.content
    assert sealed.usage.completion_tokens == 24
    assert sealed.usage.prompt_tokens == direct.usage.prompt_tokens > 10
    assert sealed.usage.total_tokens == sealed.usage.prompt_tokens + 24


def test_streamed_chat_arrives_token_by_token_as_sent_directly(through_sealgate: SealedLlama):
    request = {
        "model": CHAT_MODEL,
        "messages": MESSAGES,
        "max_tokens": 40,
        "stream": True,
        "stream_options": {"include_usage": True},
        **GREEDY,
    }
    direct, direct_usage = _stream_text(
        _direct(through_sealgate.engine).chat.completions.create(**request)
    )
    with SecureClient(through_sealgate.gateway.url, through_sealgate.policy) as secure:
        pieces, usage = _stream_text(
            secure.openai(max_retries=0).chat.completions.create(**request)
        )
    # One event per generated token (the test model only emits printable tokens).
    assert len(pieces) == 40 and pieces == direct
    # The engine's own usage accounting, whatever it is, passes through unchanged (this
    # llama-cpp-python version sends none in a stream; vLLM, SGLang and Ollama do).
    assert usage == direct_usage


def test_legacy_completion_and_embeddings(through_sealgate: SealedLlama):
    prompt = {"model": CHAT_MODEL, "prompt": "Once upon a time", "max_tokens": 12, **GREEDY}
    inputs = {"model": EMBEDDING_MODEL, "input": ["first text", "second text"]}
    client = _direct(through_sealgate.engine)
    direct_text = client.completions.create(**prompt)
    direct_vectors = client.embeddings.create(**inputs)
    with SecureClient(through_sealgate.gateway.url, through_sealgate.policy) as secure:
        sealed = secure.openai(max_retries=0)
        text = sealed.completions.create(**prompt)
        vectors = sealed.embeddings.create(**inputs)
    assert text.choices[0].text == direct_text.choices[0].text
    assert text.usage.completion_tokens == 12
    assert [len(d.embedding) for d in vectors.data] == [64, 64]
    assert [d.embedding for d in vectors.data] == [d.embedding for d in direct_vectors.data]
    assert vectors.usage.prompt_tokens == direct_vectors.usage.prompt_tokens > 0


def test_context_length_exceeded_is_the_engines_400_sealed(through_sealgate: SealedLlama, caplog):
    caplog.set_level(logging.INFO, logger="sealgate.gateway.access")
    too_long = [{"role": "user", "content": "word " * 3000}]  # > 4096 tokens of context
    with SecureClient(through_sealgate.gateway.url, through_sealgate.policy) as secure:
        client = secure.openai(max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=CHAT_MODEL, messages=too_long, max_tokens=8)
    error = refused.value
    assert error.status_code == 400
    assert error.code == "context_length_exceeded"
    assert "maximum context length is 4096 tokens" in error.message
    assert error.response.headers[ENCLAVE_HEADER]  # opened by the SDK: it came sealed
    # The gateway saw a sealed exchange that succeeded (native mode seals the status
    # too) and nothing of the message.
    records = [json.loads(JsonLines().format(r)) for r in caplog.records]
    chat = [r for r in records if r["path"] == "/.well-known/ohttp-gateway"]
    assert chat and all(r["status"] == 200 for r in chat)
    assert "context length" not in "".join(JsonLines().format(r) for r in caplog.records)


def test_the_engine_going_away_mid_stream_is_a_typed_error(fleet, own_llama: LlamaServer):
    sealed = sealed_llama(fleet, own_llama)
    request = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 3000, "stream": True}
    with SecureClient(sealed.gateway.url, sealed.policy, timeout=60) as secure:
        client = secure.openai(max_retries=0)
        events = iter(client.chat.completions.create(**request))
        for _ in range(5):
            next(events)
        own_llama.kill()  # SIGKILL: the engine's connections drop mid-stream
        with pytest.raises(ResponseIntegrityError, match="final chunk"):
            for _ in events:
                pass
        # The next request learns it from the enclave, sealed: the engine is unreachable.
        with pytest.raises(openai.APIStatusError) as unreachable:
            client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=4)
    assert unreachable.value.status_code == 502
    assert "unreachable" in unreachable.value.response.text
    assert unreachable.value.response.headers[ENCLAVE_HEADER]


def test_a_client_leaving_mid_stream_stops_the_engine(through_sealgate: SealedLlama):
    engine = through_sealgate.engine
    request = {"model": CHAT_MODEL, "messages": MESSAGES, **GREEDY}
    with SecureClient(through_sealgate.gateway.url, through_sealgate.policy) as secure:
        client = secure.openai(max_retries=0)
        client.chat.completions.create(**request, max_tokens=4)  # loads the chat model
        disconnects = engine.log().count("Disconnected from client")
        # Nearly the whole context: minutes of decoding, were the engine to go on.
        stream = client.chat.completions.create(**request, max_tokens=3900, stream=True)
        received = 0
        for chunk in stream:
            received += bool(chunk.choices and chunk.choices[0].delta.content)
            if received == 5:
                break
        stream.close()  # the client leaves after 5 tokens
        # The engine's own log: its server noticed the closed connection and left its
        # generation loop (it prints this on the way out) ...
        _wait_for(lambda: engine.log().count("Disconnected from client") > disconnects, "log")
        # ... and the engine process is idle from then on: no decoding in the background.
        # (Decoding takes a whole core; an idle server, next to nothing.)
        before = engine.cpu_seconds()
        time.sleep(1.0)
        assert engine.cpu_seconds() - before < 0.3
        # The engine is free: llama-cpp-python runs one completion at a time, and the
        # next one is answered in full.
        after = client.chat.completions.create(**request, max_tokens=4)
    assert after.usage.completion_tokens == 4


def test_the_enclave_refuses_to_start_without_the_claimed_model(llama: LlamaServer):
    command = [sys.executable, "-m", "sealgate.enclave", "--port", "0", "--upstream", llama.url]
    refused = subprocess.run(
        [*command, "--model", CHAT_MODEL, "--model", "llama-3-70b"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert f"does not serve llama-3-70b (it serves: {CHAT_MODEL}, {EMBEDDING_MODEL})" in output
    assert "Traceback" not in output  # one line that says what to do

    started = subprocess.Popen(
        [*command, "--model", CHAT_MODEL],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in started.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("listening: "):
                break
        url = lines[-1].split(": ", 1)[1].strip()
        assert httpx.get(url + "/healthz").json()["engine"]["served"] == [
            CHAT_MODEL,
            EMBEDDING_MODEL,
        ]
    finally:
        started.terminate()
        output, _ = started.communicate(timeout=30)
    assert f"engine serves {CHAT_MODEL}, {EMBEDDING_MODEL}; claimed: {CHAT_MODEL}" in output
