"""Real uvicorn enclaves on 127.0.0.1: native mode and EHBP, streaming and not, demo and upstream engines."""

from __future__ import annotations

import json
import sys
import threading

import pytest
from sealgate.enclave.engines import HTTPEngine
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.sealing.padding import strip_sse_padding

from ..loopback import gated_engine
from ..sealed_http import NATIVE, fetch_key, sealed_request, sealed_stream
from ..servers import free_port, process

CHAT = {"model": "sealgate-demo-echo", "messages": [{"role": "user", "content": "hello there"}]}


def _sse_contents(body: bytes) -> list[str]:
    out = []
    for line in body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            choices = json.loads(line[6:])["choices"]
            if choices:
                out.append(choices[0]["delta"].get("content", ""))
    return out


@pytest.mark.parametrize("mode", [NATIVE, EHBP], ids=str)
def test_chat_completion_non_streaming(start_enclave, http, mode):
    server, _ = start_enclave()
    key = fetch_key(http, server.url)
    result = sealed_request(
        http, "POST", server.url + "/v1/chat/completions", key, json.dumps(CHAT).encode(), mode=mode
    )
    assert result.status == 200 and result.encrypted
    answer = json.loads(result.body)
    assert answer["choices"][0]["message"]["content"].endswith("You said: hello there")
    assert answer["usage"]["prompt_tokens"] == 2
    assert "content-length" not in result.headers  # no stale plaintext length leaks out
    assert result.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("mode", [NATIVE, EHBP], ids=str)
def test_chat_completion_streaming(start_enclave, http, mode):
    server, _ = start_enclave()
    key = fetch_key(http, server.url)
    body = json.dumps({**CHAT, "stream": True}).encode()
    result = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, body, mode=mode)
    assert result.status == 200 and result.encrypted
    assert result.headers["content-type"].startswith("text/event-stream")
    if mode is EHBP:  # padded with an SSE comment line per frame, which parsers ignore
        assert all(len(c) % 128 == 0 and c.endswith(b"\n") for c in result.chunks)
    body = b"".join(strip_sse_padding(c) for c in result.chunks)
    text = "".join(_sse_contents(body))
    assert text.endswith("You said: hello there")
    assert body.endswith(b"data: [DONE]\n\n")
    # one sealed frame (native: chunk) per engine event: the stream was not coalesced
    assert len([c for c in result.chunks if c]) >= len(text.split())


def test_sse_events_reach_the_client_as_they_are_produced(start_enclave, http):
    gate = threading.Event()
    server, _ = start_enclave(engine=gated_engine(gate))
    key = fetch_key(http, server.url)
    with sealed_stream(http, server.url + "/v1/chat/completions", key) as frames:
        # The first event is decrypted while the engine is still blocked on the gate.
        assert next(frames) == b"data: first\n\n"
        gate.set()
        assert list(frames) == [b"data: second\n\n"]


def test_forwarding_to_a_separate_upstream_process(start_enclave, http):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    code = (
        "import uvicorn; from sealgate.enclave.engines.demo import create_demo_app; "
        f"uvicorn.run(create_demo_app(), host='127.0.0.1', port={port}, log_level='warning')"
    )
    with process(["-c", code], url, health="/health"):
        server, _ = start_enclave(engine=HTTPEngine(url))
        key = fetch_key(http, server.url)
        for stream in (False, True):
            body = json.dumps({**CHAT, "stream": stream}).encode()
            result = sealed_request(http, "POST", server.url + "/v1/chat/completions", key, body)
            assert result.status == 200 and result.encrypted
            text = (
                "".join(_sse_contents(result.body))
                if stream
                else json.loads(result.body)["choices"][0]["message"]["content"]
            )
            assert text.endswith("You said: hello there")


def test_tinfoil_ehbp_client_interoperates(start_enclave):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    server, _ = start_enclave()
    client = ehbp.Client.discover(server.url)
    response = client.post("/v1/chat/completions", json_body=CHAT)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].endswith("You said: hello there")
    with client.stream(
        "POST", "/v1/chat/completions", json_body={**CHAT, "stream": True}
    ) as streamed:
        assert streamed.status_code == 200
        body = b"".join(streamed.iter_bytes())
    assert "".join(_sse_contents(body)).endswith("You said: hello there")


def test_keys_are_published_for_both_kinds_of_client(start_enclave, http):
    from sealgate.protocol.public.keyconfig import KeyConfig, decode_key_configs

    server, built = start_enclave()
    bare = http.get(server.url + "/.well-known/hpke-keys")
    assert bare.headers["content-type"] == "application/ohttp-keys"
    # EHBP clients speak only X25519: the bare config is the X25519 key, not the hybrid one.
    bare_config = KeyConfig.from_bytes(bare.content)
    assert bare_config == built.keyring.current.config and not bare_config.post_quantum
    built.rotate_keys()
    listed = http.get(server.url + "/.well-known/ohttp-keys")
    configs = decode_key_configs(listed.content)
    assert [c.fingerprint for c in configs] == [k.fingerprint for k in built.keyring.active()]
    # the current X25519 + hybrid pair, then the previous pair within its grace period
    assert [c.kem_name for c in configs] == ["X25519", "MLKEM768-X25519"] * 2


def test_health_and_metrics_hold_no_secrets(start_enclave, http):
    server, built = start_enclave()
    key = fetch_key(http, server.url)
    secret = b"the-secret-prompt-" + bytes(sys.version, "ascii")[:4]
    sealed_request(
        http,
        "POST",
        server.url + "/v1/chat/completions",
        key,
        json.dumps({**CHAT, "messages": [{"role": "user", "content": secret.decode()}]}).encode(),
    )
    health = http.get(server.url + "/healthz").json()
    assert health["status"] == "ok" and health["keys"] == [
        k.fingerprint for k in built.keyring.active()
    ]
    assert len(health["keys"]) == 2
    metrics = http.get(server.url + "/metrics").text
    assert 'sealgate_enclave_requests_total{mode="ohttp",outcome="ok"} 1.0' in metrics
    assert secret.decode() not in metrics
    assert built.keyring.current.private.public_key.hex() not in metrics


def test_plaintext_paths_only_when_allowed(start_enclave, http):
    from sealgate.enclave import EnclaveConfig

    server, _ = start_enclave()
    refused = http.get(server.url + "/v1/models")
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:sealgate:problem:plaintext-refused"
    server2, _ = start_enclave(
        config=EnclaveConfig(plaintext_paths=frozenset({("GET", "/v1/models")}))
    )
    allowed = http.get(server2.url + "/v1/models")
    assert allowed.status_code == 200
    assert allowed.json()["data"][0]["id"] == "sealgate-demo-echo"
    assert http.post(server2.url + "/v1/chat/completions", json=CHAT).status_code == 403


def test_bodyless_sealed_request_is_bound_and_encrypted(start_enclave, http):
    server, _ = start_enclave()
    key = fetch_key(http, server.url)
    result = sealed_request(http, "GET", server.url + "/v1/models", key)
    assert result.status == 200 and result.encrypted
    assert json.loads(result.body)["data"][0]["id"] == "sealgate-demo-echo"


def test_unknown_path_is_an_encrypted_404(start_enclave, http):
    server, _ = start_enclave()
    key = fetch_key(http, server.url)
    result = sealed_request(http, "POST", server.url + "/v1/nowhere", key, b"{}")
    assert result.status == 404 and result.encrypted
