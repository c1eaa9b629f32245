"""The adversarial gateway: an HTTP/1.1 proxy on 127.0.0.1 that can rewrite, replay,
truncate, reorder and observe everything between a client and the real gateway.

It plays exactly the party the threat model calls "gateway operator": it sees every byte
and may change any of them, but holds no key. One request per connection
(``Connection: close``) keeps the parser small; hooks run on the proxy's own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from ...protocol.public.modes import EHBP
from ...protocol.public.paths import OHTTP_GATEWAY
from ...protocol.public.varint import decode_varint, encode_varint
from ..headers import NOT_FORWARDED

__all__ = ["AdversarialProxy", "Exchange", "split_chunks", "join_chunks", "SEALED_PATH"]

SEALED_PATH = OHTTP_GATEWAY
_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024
# RFC 9458 §4.4: the response nonce is max(Nn, Nk) bytes; by AEAD id (RFC 9180 §7.3).
_NONCE = {1: 16, 2: 32, 3: 32}


@dataclass(slots=True)
class Exchange:
    """One request as the client sent it and the response as the client will get it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    #: Set by a request hook to answer without asking the real gateway.
    answered: bool = False
    #: Close the connection after this many response body bytes (a cut the HTTP layer sees).
    cut_after: int | None = None

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def multi(self) -> bool:
        """A multi-recipient response (its prefix names the answering key)."""
        return any(
            k.lower() == "content-type" and v.startswith("message/sealgate-multi-res")
            for k, v in self.response_headers.items()
        )

    @property
    def sealed(self) -> bool:
        return self.path == SEALED_PATH or any(
            k.lower() == EHBP.encapsulated_key_header.lower() for k in self.headers
        )

    def answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.status, self.response_body = status, body
        self.response_headers = {"content-type": content_type}
        self.answered = True


#: A hook may be a coroutine function (to make exchanges wait for each other).
Hook = Callable[[Exchange], Awaitable[None] | None]


def split_chunks(
    request_body: bytes, response: bytes, *, multi: bool = False
) -> tuple[bytes, list[bytes], bytes | None]:
    """A chunked OHTTP response as (prefix, non-final chunks, final chunk or None if absent).

    The prefix is the response nonce, whose size comes from the AEAD id in the (public)
    request header; a multi-recipient response (``message/sealgate-multi-res``) starts
    with the answering key's 8-byte fingerprint, then a 32-byte nonce.
    """
    if multi:
        size = 8 + 32
    else:
        aead = int.from_bytes(request_body[5:7], "big") if len(request_body) >= 7 else 1
        size = _NONCE.get(aead, 32)
    nonce, rest = response[:size], response[size:]
    chunks: list[bytes] = []
    while rest:
        decoded = decode_varint(rest)
        if decoded is None:
            break
        length, start = decoded
        if length == 0:
            return nonce, chunks, rest[start:]
        chunks.append(rest[start : start + length])
        rest = rest[start + length :]
    return nonce, chunks, None


def join_chunks(nonce: bytes, chunks: list[bytes], final: bytes | None) -> bytes:
    out = bytearray(nonce)
    for chunk in chunks:
        out += encode_varint(len(chunk)) + chunk
    if final is not None:
        out += encode_varint(0) + final
    return bytes(out)


async def _call(hook: Hook, exchange: Exchange) -> None:
    result = hook(exchange)
    if inspect.isawaitable(result):
        await result


class AdversarialProxy:
    """``with AdversarialProxy(upstream) as proxy:``; set ``on_request``/``on_response``.

    ``exchanges`` records every exchange (after tampering); ``wire`` every byte clients sent.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.on_request: Hook | None = None
        self.on_response: Hook | None = None
        self.exchanges: list[Exchange] = []
        self.wire = bytearray()
        #: Exceptions raised by hooks (an attack's own bug), so a run cannot pass by accident.
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="redteam-proxy")
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self, on_request: Hook | None = None, on_response: Hook | None = None) -> None:
        with self._lock:
            self.on_request, self.on_response = on_request, on_response
            self.exchanges.clear()
            self.wire.clear()
            self.errors.clear()

    def start(self) -> AdversarialProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the adversarial proxy did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._client = httpx.AsyncClient(timeout=30)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_MAX_HEAD)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> AdversarialProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            exchange = await self._read(reader)
            if exchange is None:
                return
            await self._forward(exchange)
            with self._lock:
                self.exchanges.append(exchange)
            await self._write(writer, exchange)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception as error:  # noqa: BLE001 - a broken hook must not look like a refusal
            with self._lock:
                self.errors.append(f"{type(error).__name__}: {error}")
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> Exchange | None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip()] = value.strip()
        lower = {k.lower(): v for k, v in headers.items()}
        body = b""
        if lower.get("transfer-encoding", "").lower() == "chunked":
            parts = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts += await reader.readexactly(size + 2)
                del parts[-2:]
                if size == 0:  # "0\r\n" then the (empty) trailer section's CRLF, read above
                    break
                if len(parts) > _MAX_BODY:
                    raise ValueError("request body too large")
            body = bytes(parts)
        elif "content-length" in lower:
            length = int(lower["content-length"])
            if length > _MAX_BODY:
                raise ValueError("request body too large")
            body = await asyncio.wait_for(reader.readexactly(length), 60)
        with self._lock:
            self.wire += head + body
        return Exchange(method, target, {k: v for k, v in headers.items()}, body)

    async def _forward(self, exchange: Exchange) -> None:
        if self.on_request is not None:
            await _call(self.on_request, exchange)
        if not exchange.answered:
            outgoing = {k: v for k, v in exchange.headers.items() if k.lower() not in NOT_FORWARDED}
            try:
                upstream = await self._client.request(
                    exchange.method,
                    self.upstream + exchange.target,
                    headers=outgoing,
                    content=exchange.body,
                )
            except httpx.HTTPError as error:
                exchange.answer(502, f'{{"error": "{type(error).__name__}"}}'.encode())
            else:
                exchange.status = upstream.status_code
                exchange.response_headers = {
                    k: v for k, v in upstream.headers.items() if k.lower() not in NOT_FORWARDED
                }
                exchange.response_body = upstream.content
        if self.on_response is not None:
            await _call(self.on_response, exchange)

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, exchange: Exchange) -> None:
        head = [f"HTTP/1.1 {exchange.status} X"]
        for name, value in exchange.response_headers.items():
            if name.lower() not in NOT_FORWARDED and name.lower() != "content-encoding":
                head.append(f"{name}: {value}")
        head += [f"content-length: {len(exchange.response_body)}", "connection: close", "", ""]
        body = exchange.response_body
        if exchange.cut_after is not None:
            body = body[: exchange.cut_after]
        writer.write("\r\n".join(head).encode("latin-1") + body)
        await writer.drain()
