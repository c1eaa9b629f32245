"""The native mode (chunked OHTTP + Binary HTTP) end to end: openai SDK, tampering, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sealgate.client import (
    ENCLAVE_HEADER,
    EnclaveError,
    GatewayError,
    Policy,
    ResponseIntegrityError,
    SecureClient,
)
from sealgate.client.native import OHTTP
from sealgate.enclave import EnclaveConfig
from sealgate.enclave.engines import ASGIEngine
from sealgate.gateway import Discovery
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.public.problem import PROBLEMS
from sealgate.protocol.public.varint import decode_varint
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..servers import ServerThread

openai = pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")
MESSAGES = [{"role": "user", "content": "hello from the test"}]
REPLY_END = "You said: hello from the test"


def test_sync_openai_streaming_and_not_embeddings_models(trio):
    gw, policy = trio
    with SecureClient(gw.url, policy, mode=OHTTP) as secure:
        client = secure.openai()
        reply = client.chat.completions.create(model="sealgate-demo-echo", messages=MESSAGES)
        assert reply.choices[0].message.content.endswith(REPLY_END)
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
        assert "sealgate-padding" not in raw.headers


def test_async_openai_streaming_and_not(trio):
    gw, policy = trio

    async def main() -> tuple[str, str, list[str]]:
        with SecureClient(gw.url, policy, mode=OHTTP) as secure:
            client = secure.async_openai()
            reply = await client.chat.completions.create(
                model="sealgate-demo-echo", messages=MESSAGES
            )
            stream = await client.chat.completions.create(
                model="sealgate-demo-echo", messages=MESSAGES, stream=True
            )
            pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            models = [m.id async for m in client.models.list()]
            await client.close()
            return reply.choices[0].message.content, "".join(pieces), models

    plain, streamed, models = asyncio.run(main())
    assert plain.endswith(REPLY_END) and streamed.endswith(REPLY_END)
    assert models == ["sealgate-demo-echo", "sealgate-demo-embedding"]


# -- a recording engine, a rewriting gateway in front of the real one -------------------


def recording_engine(calls: list[dict[str, object]]) -> ASGIEngine:
    """Records every request it receives; answers chat with JSON and models with a list."""

    async def record(request: Request) -> bytes:
        body = await request.body()
        calls.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": [(k, v) for k, v in request.headers.items()],
                "body": body,
            }
        )
        return body

    async def chat(request: Request) -> Response:
        await record(request)
        return JSONResponse({"reply": "ok", "n": len(calls)}, headers={"x-engine": "1"})

    async def models(request: Request) -> Response:
        await record(request)
        return JSONResponse({"object": "list", "data": []})

    return ASGIEngine(
        Starlette(
            routes=[
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/v1/models", models, methods=["GET"]),
            ]
        ),
        {"engine": "recording"},
    )


class Rewriter:
    """A malicious hop in front of the gateway: rewrites outer requests and responses."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.on_request = None  # callable(dict) mutating method/path/query/headers/body
        self.on_response = None  # callable(dict) mutating status/headers/body
        self.captured: list[tuple[dict[str, str], bytes]] = []
        self._client = httpx.Client(timeout=20)
        app = Starlette(
            routes=[Route("/{path:path}", self.handle, methods=["GET", "POST", "PUT", "DELETE"])]
        )
        self.server = ServerThread(app).start()
        self.url = self.server.url

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        if request.url.path == "/.well-known/ohttp-gateway" and request.method == "POST":
            self.captured.append((dict(headers), body))
        outgoing = {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": headers,
            "body": body,
        }
        if self.on_request is not None and request.url.path == "/.well-known/ohttp-gateway":
            self.on_request(outgoing)
        upstream = self._client.request(
            outgoing["method"],
            self.upstream
            + outgoing["path"]
            + ("?" + outgoing["query"] if outgoing["query"] else ""),
            headers=outgoing["headers"],
            content=outgoing["body"],
        )
        drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        answer = {
            "status": upstream.status_code,
            "headers": {k: v for k, v in upstream.headers.items() if k.lower() not in drop},
            "body": upstream.content,
        }
        if self.on_response is not None and request.url.path == "/.well-known/ohttp-gateway":
            self.on_response(answer)
        return Response(answer["body"], answer["status"], headers=answer["headers"])

    def close(self) -> None:
        self.server.stop()
        self._client.close()


@pytest.fixture
def native(fleet):
    """One enclave with a recording engine behind a gateway, and a rewriter in front of it."""
    calls: list[dict[str, object]] = []
    # Only the client's requests count: the enclave's own GET /v1/models at start-up is
    # forgotten, and its periodic re-check does not come round during a test.
    quiet = EnclaveConfig(engine_check_interval=3600)
    server = fleet.enclave(engine=recording_engine(calls), config=quiet)
    calls.clear()
    gw = fleet.gateway(Discovery(static=[server.url]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    rewriter = Rewriter(gw.url)
    yield {"gw": gw, "policy": policy, "calls": calls, "enclave": server, "rewriter": rewriter}
    rewriter.close()


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


CLIENT_HEADERS = {"Authorization": "Bearer sk-secret", "X-Custom": "kept", "Cookie": "a=b"}
CLIENT_BODY = b'{"messages": [{"role": "user", "content": "exact bytes"}]}'


def _send(secure: SecureClient) -> httpx.Response:
    with secure.httpx_client() as http:
        return http.post(
            "/v1/chat/completions?trace=1", content=CLIENT_BODY, headers=CLIENT_HEADERS
        )


def _engine_saw_exactly_the_client_request(call: dict[str, object]) -> None:
    assert call["method"] == "POST" and call["path"] == "/v1/chat/completions"
    assert call["query"] == "trace=1" and call["body"] == CLIENT_BODY
    headers = dict(call["headers"])  # type: ignore[arg-type]
    assert headers["authorization"] == "Bearer sk-secret"  # sealed, so kept in native mode
    assert headers["x-custom"] == "kept" and headers["cookie"] == "a=b"
    assert not any(k.startswith(("sealgate-", "x-injected")) for k in headers)
    assert headers["accept-encoding"] == "identity"


def test_outer_request_rewrites_reach_the_engine_as_sent_or_not_at_all(native):
    rewriter, calls = native["rewriter"], native["calls"]
    with SecureClient(rewriter.url, native["policy"], mode=OHTTP) as secure:
        # Injected outer headers and query: the engine still gets exactly the inner request.
        def inject(outgoing: dict) -> None:
            outgoing["headers"]["X-Injected"] = "1"
            outgoing["headers"]["Authorization"] = "Bearer stolen"
            outgoing["query"] = "model=evil"

        rewriter.on_request = inject
        response = _send(secure)
        assert response.status_code == 200 and response.json()["reply"] == "ok"
        assert len(calls) == 1
        _engine_saw_exactly_the_client_request(calls[0])
        # The gateway saw neither the path, the secret headers nor the body.
        outer_headers, outer_body = rewriter.captured[-1]
        assert "authorization" not in {k.lower() for k in outer_headers}
        assert b"exact bytes" not in outer_body and b"/v1/chat" not in outer_body

        # Rewritten outer path, method or media type: a plaintext refusal, never forwarded.
        for change in (
            lambda o: o.update(path="/v1/chat/completions"),
            lambda o: o.update(method="PUT"),
            lambda o: o["headers"].update({"content-type": "application/json"}),
        ):
            rewriter.on_request = change
            with pytest.raises(GatewayError):
                _send(secure)
        # A flipped ciphertext byte: the enclave's sealed 400, which the client can trust.
        rewriter.on_request = lambda o: o.update(body=o["body"][:-1] + bytes([o["body"][-1] ^ 1]))
        tampered = _send(secure)
        assert tampered.status_code == 400
        assert EnclaveError.of(tampered).problem.is_(PROBLEMS.MALFORMED_REQUEST)
        assert len(calls) == 1


def test_outer_response_rewrites_are_errors_and_forged_headers_never_reach_the_caller(native):
    rewriter = native["rewriter"]
    with SecureClient(rewriter.url, native["policy"], mode=OHTTP) as secure:

        def forge(answer: dict) -> None:
            answer["headers"]["Sealgate-Verified-Enclave"] = "forged; key=forged"
            answer["headers"]["X-Gateway"] = "evil"

        rewriter.on_response = forge
        response = _send(secure)
        assert response.status_code == 200 and response.json() == {"reply": "ok", "n": 1}
        assert response.headers.get_list(ENCLAVE_HEADER) == [
            response.headers[ENCLAVE_HEADER]
        ] and not response.headers[ENCLAVE_HEADER].startswith("forged")
        assert response.headers[ENCLAVE_HEADER].split(";")[0] in secure.fleet.enclaves
        assert "x-gateway" not in response.headers and response.headers["x-engine"] == "1"

        for change, error in (
            (lambda a: a.update(status=201), ResponseIntegrityError),
            (lambda a: a.update(status=500), GatewayError),
            (
                lambda a: a.update(
                    body=a["body"][:40] + bytes([a["body"][40] ^ 1]) + a["body"][41:]
                ),
                ResponseIntegrityError,
            ),
            (lambda a: a.update(body=a["body"][:-5]), ResponseIntegrityError),
            (
                lambda a: a["headers"].update({"content-type": "application/json"}),
                ResponseIntegrityError,
            ),
        ):
            rewriter.on_response = change
            with pytest.raises(error):
                _send(secure).read()


def test_a_captured_request_is_processed_once(native):
    rewriter, calls, enclave = native["rewriter"], native["calls"], native["enclave"]
    with SecureClient(rewriter.url, native["policy"], mode=OHTTP) as secure:
        assert _send(secure).status_code == 200
    assert len(calls) == 1
    headers, body = rewriter.captured[-1]
    for target in (enclave.url, native["gw"].url, rewriter.url):
        replay = httpx.post(target + "/.well-known/ohttp-gateway", content=body, headers=headers)
        # Sealed to the original client (the replayer cannot read it); never forwarded.
        assert replay.status_code == 200
        assert replay.headers["content-type"] == "message/ohttp-chunked-res"
    assert len(calls) == 1
    assert _metric(enclave.url, "sealgate_enclave_replays_total") == 3.0


def test_stale_clock_is_corrected_by_resealing(native):
    rewriter, calls, enclave = native["rewriter"], native["calls"], native["enclave"]
    with SecureClient(rewriter.url, native["policy"], mode=OHTTP) as secure:
        transport = secure.transport()
        transport._core.clock = lambda: __import__("time").time() - 3600  # an hour behind
        with httpx.Client(transport=transport, base_url=rewriter.url) as http:
            response = http.post("/v1/chat/completions", content=CLIENT_BODY)
            assert response.status_code == 200 and response.json()["reply"] == "ok"
            assert abs(transport._core.skew - 3600) < 60
            assert http.get("/v1/models").status_code == 200  # the skew is kept
    assert len(calls) == 2  # the stale request never reached the engine
    assert len(rewriter.captured) == 3  # stale, re-sealed, models
    assert rewriter.captured[0][1] != rewriter.captured[1][1]  # a new request, not a re-send
    assert _metric(enclave.url, 'sealgate_enclave_replays_total{reason="stale"}') == 1.0


def test_routes_outside_the_allow_list_are_sealed_404_and_405(native):
    secure = SecureClient(native["rewriter"].url, native["policy"], mode=OHTTP)
    with secure, secure.httpx_client() as http:
        missing = http.get("/admin/secrets")
        assert missing.status_code == 404
        problem = EnclaveError.of(missing).problem
        assert problem is not None and problem.is_(PROBLEMS.NOT_FOUND)
        wrong = http.delete("/v1/models")
        assert wrong.status_code == 405
        assert EnclaveError.of(wrong).problem.is_(PROBLEMS.METHOD_NOT_ALLOWED)
        sneaky = http.get("/v1/models/../../admin")
        assert sneaky.status_code == 404
    assert native["calls"] == []


# -- padding: what a tap in front of the gateway sees ------------------------------------


def token_engine() -> ASGIEngine:
    """Streams the user message's ``|``-separated tokens as OpenAI chat-completion events."""

    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        tokens = body["messages"][0]["content"].split("|")
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(tokens)}
            return JSONResponse(
                {
                    "object": "chat.completion",
                    "model": "tokens",
                    "created": 1,
                    "id": "c",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
            )

        async def events() -> AsyncIterator[bytes]:
            for token in tokens:
                event = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "tokens",
                    "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}],
                }
                yield b"data: " + json.dumps(event).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return ASGIEngine(
        Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]),
        {"engine": "tokens"},
    )


class TcpTap:
    """A TCP proxy on 127.0.0.1 that records every byte the upstream sends, per connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.received: list[bytearray] = []
        self.sent: list[bytearray] = []  # what the client sent, per connection
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            record, request = bytearray(), bytearray()
            self.received.append(record)
            self.sent.append(request)
            self._sockets += [client, upstream]
            for source, sink, log in ((client, upstream, request), (upstream, client, record)):
                thread = threading.Thread(target=self._pump, args=(source, sink, log), daemon=True)
                thread.start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, log: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if log is not None:
                    log += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            sock.close()


def _http_bodies(stream: bytes) -> Iterator[tuple[dict[bytes, bytes], bytes]]:
    """Parse consecutive HTTP/1.1 messages (content-length, chunked or none) from raw bytes."""
    while stream:
        head, _, stream = stream.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            size = int(headers[b"content-length"])
            body, stream = stream[:size], stream[size:]
        elif headers.get(b"transfer-encoding") != b"chunked":
            body = b""  # a request without a body (GET)
        else:
            body = b""
            while True:
                size_line, _, stream = stream.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body += stream[:size]
                stream = stream[size + 2 :]
                if size == 0:
                    break
        yield headers, body


def _sealed_chunk_sizes(body: bytes) -> list[int]:
    """The sizes of the sealed chunks in a ``message/ohttp-chunked-res`` body (after the nonce)."""
    sizes, rest = [], body[32:]  # AES-256-GCM: the response nonce is max(Nk, Nn) = 32 bytes
    while rest:
        length, start = decode_varint(rest)
        if length == 0:
            sizes.append(len(rest) - start)  # the final chunk runs to the end
            break
        sizes.append(length)
        rest = rest[start + length :]
    return sizes


def test_streamed_token_sizes_are_hidden_from_a_tap_in_front_of_the_gateway(fleet):
    server = fleet.enclave(engine=token_engine())
    gw = fleet.gateway(Discovery(static=[server.url]))
    tap = TcpTap(gw.port)
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    completions = ["a|b|c|d", "Supercalifragilistic| hippopotamus|!|x"]
    try:
        with SecureClient(tap.url, policy, mode=OHTTP) as secure:
            client = secure.openai()
            for prompt in completions:
                stream = client.chat.completions.create(
                    model="tokens", messages=[{"role": "user", "content": prompt}], stream=True
                )
                text = "".join(c.choices[0].delta.content or "" for c in stream)
                assert text == prompt.replace("|", "")
    finally:
        tap.close()
    sealed = [
        body
        for record in tap.received
        for headers, body in _http_bodies(bytes(record))
        if headers.get(b"content-type") == b"message/ohttp-chunked-res"
    ]
    assert len(sealed) == 2
    first, second = (_sealed_chunk_sizes(body) for body in sealed)
    assert len(first) == 1 + 4 + 1 + 1  # head, one chunk per token event, [DONE], final
    assert first == second
    assert len(sealed[0]) == len(sealed[1])
    assert all((size - 16) % 128 == 0 for size in first)  # plaintexts are bucket multiples


def _ehbp_frame_sizes(body: bytes) -> list[int]:
    """Ciphertext sizes of the ``uint32 length || ciphertext`` frames of an EHBP body."""
    sizes = []
    while body:
        size = int.from_bytes(body[:4], "big")
        sizes.append(size)
        body = body[4 + size :]
    return sizes


def test_ehbp_responses_and_requests_are_padded_where_tinfoil_clients_ignore_it(fleet):
    """EHBP: SSE comment lines per frame and whitespace after JSON, both bucket multiples,
    and the SDK's JSON requests in 1 KiB buckets; the application sees the engine's bytes."""
    server = fleet.enclave(engine=token_engine())
    gw = fleet.gateway(Discovery(static=[server.url]))
    tap = TcpTap(gw.port)
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    completions = ["a|b|c|d", "Supercalifragilistic| hippopotamus|!|x"]
    try:
        with SecureClient(tap.url, policy, mode=EHBP) as secure:
            client = secure.openai()
            for prompt in completions:
                stream = client.chat.completions.create(
                    model="tokens", messages=[{"role": "user", "content": prompt}], stream=True
                )
                text = "".join(c.choices[0].delta.content or "" for c in stream)
                assert text == prompt.replace("|", "")
            with secure.httpx_client() as http:
                reply = http.post(
                    "/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "x|y"}]},
                )
            assert reply.json()["choices"][0]["message"]["content"] == "xy"
            assert reply.content.endswith(b" ")  # trailing whitespace: still the same JSON
    finally:
        tap.close()
    sealed = [
        (headers, body)
        for record in tap.received
        for headers, body in _http_bodies(bytes(record))
        if b"ehbp-response-nonce" in headers
    ]
    assert len(sealed) == 3
    first, second, whole = (_ehbp_frame_sizes(body) for _, body in sealed)
    assert len(first) == 4 + 1  # one frame per token event, then [DONE]
    assert first == second
    assert all((size - 16) % 128 == 0 for size in first + whole)
    requests = [
        body
        for record in tap.sent
        for headers, body in _http_bodies(bytes(record))
        if b"ehbp-encapsulated-key" in headers
    ]
    assert len(requests) == 3
    assert all((sum(_ehbp_frame_sizes(body)) - 16) % 1024 == 0 for body in requests)


def test_a_stream_cut_before_its_final_chunk_raises(fleet):
    async def chat(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b'data: {"choices": []}\n\n'
            raise RuntimeError("engine crashed mid-stream")

        return StreamingResponse(events(), media_type="text/event-stream")

    engine = ASGIEngine(
        Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]), {"e": "cut"}
    )
    gw = fleet.gateway(Discovery(static=[fleet.enclave(engine=engine).url]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    with SecureClient(gw.url, policy, mode=OHTTP) as secure:
        client = secure.openai(max_retries=0)
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        with pytest.raises(ResponseIntegrityError, match="final chunk"):
            list(stream)


@pytest.mark.parametrize("mode", ["sealgate", "bogus"])
def test_the_removed_body_only_mode_is_refused_by_name(mode):
    policy = Policy.software(bytes(32))
    with pytest.raises(ValueError, match="removed"):
        SecureClient("http://127.0.0.1:9", policy, mode=mode)


def test_ehbp_is_selected_by_object_or_name():
    from sealgate.client.transport import SealgateTransport
    from sealgate.protocol.public.modes import EHBP

    policy = Policy.software(bytes(32))
    for mode in (EHBP, "ehbp"):
        with SecureClient("http://127.0.0.1:9", policy, mode=mode) as secure:
            assert isinstance(secure.transport(), SealgateTransport)
