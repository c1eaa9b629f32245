"""Run an ASGI application in-process as an engine, streaming its body as it is sent.

(httpx's ASGITransport collects the whole body before returning, which would turn a
token stream into one late blob; this adapter hands over each ``http.response.body``
message as it happens, with a bounded queue for backpressure.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote

from .base import EngineResponse, EngineUnavailable, RawHeaders

__all__ = ["ASGIEngine"]

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]
_END: Message = {"type": "sealgate.end"}


class ASGIEngine:
    """An ASGI app called directly, without a socket."""

    def __init__(self, app: ASGIApp, description: dict[str, object]) -> None:
        self.app = app
        self.description = description

    async def aclose(self) -> None:
        """Nothing to release: there is no connection."""

    @asynccontextmanager
    async def stream(
        self, method: str, target: str, headers: RawHeaders, body: bytes
    ) -> AsyncIterator[EngineResponse]:
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=32)
        closed = asyncio.Event()
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await closed.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            await queue.put(message)

        path, _, query = target.partition("?")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": ("engine.local", 80),
        }

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                await queue.put(_END)

        task = asyncio.create_task(run())
        try:
            start = await queue.get()
            if start is _END or start.get("type") != "http.response.start":
                raise EngineUnavailable("engine ended without a response")
            yield EngineResponse(int(start["status"]), list(start.get("headers", [])), _body(queue))
        finally:
            closed.set()
            if not task.done():
                task.cancel()
            # The app's own errors were already turned into "ended early" above.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _body(queue: asyncio.Queue[Message]) -> AsyncIterator[bytes]:
    while True:
        message = await queue.get()
        if message is _END:
            raise EngineUnavailable("engine ended the response early")
        if message.get("type") != "http.response.body":
            continue
        chunk = message.get("body", b"")
        if chunk:
            yield bytes(chunk)
        if not message.get("more_body", False):
            return
