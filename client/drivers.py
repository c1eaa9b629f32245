"""The I/O half of the sealing transports: httpx transports that drive an :class:`Exchange`.

:class:`ExchangeTransport` (blocking) and :class:`AsyncExchangeTransport` send what
the exchange prepares through an inner transport (``httpx.HTTPTransport`` by default),
read what it asks for, sleep when it says so, and hand out its response with a body
stream that feeds the same :class:`Opening`. Every protocol decision is the exchange's
(:mod:`.exchange`); a mode is a :class:`SealingCore` subclass named by ``core_class``.
The async driver keeps blocking steps (choosing an enclave may refresh the fleet:
network and verification) off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import anyio
import httpx

from .exchange import MAX_ERROR_BODY, Exchange, Opening, Retry, SealingCore
from .fleet import Fleet

__all__ = ["AsyncExchangeTransport", "ExchangeTransport", "flavour"]


class _Driver:
    """A mode's core (``core_class(fleet, **options)``) and the inner transport it sends through."""

    _http: ModuleType = httpx
    #: The ``_http`` transport class used when no ``inner`` is given.
    _default_inner: str
    core_class: type[SealingCore]

    def __init__(self, fleet: Fleet, inner: Any = None, **options: Any) -> None:
        self._core = self.core_class(fleet, **options)
        self._inner = inner if inner is not None else getattr(self._http, self._default_inner)()

    @property
    def fleet(self) -> Fleet:
        return self._core.fleet


class ExchangeTransport(_Driver, httpx.BaseTransport):
    """Blocking driver (``httpx.Client(transport=...)``)."""

    _default_inner = "HTTPTransport"

    def handle_request(self, request: Any) -> Any:
        core, method, path = self._core, request.method, request.url.path
        if core.is_local(method, path):
            local = core.local_response(self._http, method, path)
            if local is not None:
                return local
        exchange = core.exchange(self._http, request, request.read())
        while True:
            outer = self._inner.handle_request(exchange.prepare())
            answer = self._answer(exchange, outer)
            if not isinstance(answer, Retry):
                return answer
            if answer.pause:  # first: the directory the fleet re-reads must have caught up
                time.sleep(answer.pause)
            exchange.apply(answer)

    def _answer(self, exchange: Exchange[Any], outer: Any) -> Any:
        """The caller's response, or the :class:`Retry` that replaces it."""
        try:
            sealed = exchange.on_response_head(outer.status_code, outer.headers)
        except BaseException:
            outer.close()
            raise
        if not sealed:
            return exchange.on_refusal(outer.status_code, outer.headers, _read_capped(outer))
        chunks = iter(outer.stream)
        try:
            opening = exchange.open(outer.headers)
            while opening.wants_more:
                opening.read_ahead(next(chunks, None))
        except BaseException:
            outer.close()
            raise
        if opening.finished:
            outer.close()
            retry = exchange.on_complete()
            if retry is not None:
                return retry
        stream, _ = _stream_classes(self._http)
        return exchange.response(outer, stream(outer, chunks, opening))

    def close(self) -> None:
        self._inner.close()  # the fleet is shared; its owner (SecureClient) closes it


class AsyncExchangeTransport(_Driver, httpx.AsyncBaseTransport):
    """Async driver (``httpx.AsyncClient(transport=...)``)."""

    _default_inner = "AsyncHTTPTransport"

    async def handle_async_request(self, request: Any) -> Any:
        core, method, path = self._core, request.method, request.url.path
        if core.is_local(method, path):
            local = await anyio.to_thread.run_sync(core.local_response, self._http, method, path)
            if local is not None:
                return local
        exchange = core.exchange(self._http, request, await request.aread())
        while True:
            sent = await anyio.to_thread.run_sync(exchange.prepare)
            outer = await self._inner.handle_async_request(sent)
            answer = await self._answer(exchange, outer)
            if not isinstance(answer, Retry):
                return answer
            if answer.pause:  # first: the directory the fleet re-reads must have caught up
                await anyio.sleep(answer.pause)
            await anyio.to_thread.run_sync(exchange.apply, answer)

    async def _answer(self, exchange: Exchange[Any], outer: Any) -> Any:
        """The caller's response, or the :class:`Retry` that replaces it."""
        try:
            sealed = exchange.on_response_head(outer.status_code, outer.headers)
        except BaseException:
            await outer.aclose()
            raise
        if not sealed:
            body = await _aread_capped(outer)
            return exchange.on_refusal(outer.status_code, outer.headers, body)
        chunks = outer.stream.__aiter__()
        try:
            opening = exchange.open(outer.headers)
            while opening.wants_more:
                opening.read_ahead(await anext(chunks, None))
        except BaseException:
            await outer.aclose()
            raise
        if opening.finished:
            await outer.aclose()
            retry = exchange.on_complete()
            if retry is not None:
                return retry
        _, stream = _stream_classes(self._http)
        return exchange.response(outer, stream(outer, chunks, opening))

    async def aclose(self) -> None:
        await self._inner.aclose()


_FLAVOURS: dict[tuple[type, str], type] = {}


def flavour(transport: type, http: ModuleType) -> type:
    """``transport`` deriving from ``http``'s own base transport too (httpx2 for openai 3.x)."""
    if http is httpx:
        return transport
    key = (transport, http.__name__)
    cached = _FLAVOURS.get(key)
    if cached is None:
        is_async = issubclass(transport, httpx.AsyncBaseTransport)
        base = http.AsyncBaseTransport if is_async else http.BaseTransport
        cached = _FLAVOURS[key] = type(
            f"{transport.__name__}_{http.__name__}", (transport, base), {"_http": http}
        )
    return cached


_STREAMS: dict[str, tuple[type, type]] = {}


def _stream_classes(http: ModuleType) -> tuple[type, type]:
    """Opened body streams deriving from ``http``'s own stream base classes."""
    cached = _STREAMS.get(http.__name__)
    if cached is not None:
        return cached

    class Opened(http.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, outer: Any, chunks: Iterator[bytes], opening: Opening) -> None:
            self._outer = outer
            self._chunks = chunks
            self._opening = opening

        def __iter__(self) -> Iterator[bytes]:
            opening = self._opening
            try:
                yield from opening.release()
                if not opening.finished:
                    for chunk in self._chunks:
                        yield from opening.feed(chunk)
                yield from opening.end()
            finally:
                self._outer.close()

        def close(self) -> None:
            self._outer.close()

    class AsyncOpened(http.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, outer: Any, chunks: AsyncIterator[bytes], opening: Opening) -> None:
            self._outer = outer
            self._chunks = chunks
            self._opening = opening

        async def __aiter__(self) -> AsyncIterator[bytes]:
            opening = self._opening
            try:
                for piece in opening.release():
                    yield piece
                if not opening.finished:
                    async for chunk in self._chunks:
                        for piece in opening.feed(chunk):
                            yield piece
                for piece in opening.end():
                    yield piece
            finally:
                await self._outer.aclose()

        async def aclose(self) -> None:
            await self._outer.aclose()

    _STREAMS[http.__name__] = (Opened, AsyncOpened)
    return Opened, AsyncOpened


def _read_capped(response: Any) -> bytes:
    data = bytearray()
    try:
        for chunk in response.stream:
            data += chunk
            if len(data) > MAX_ERROR_BODY:
                break
    finally:
        response.close()
    return bytes(data[:MAX_ERROR_BODY])


async def _aread_capped(response: Any) -> bytes:
    data = bytearray()
    try:
        async for chunk in response.stream:
            data += chunk
            if len(data) > MAX_ERROR_BODY:
                break
    finally:
        await response.aclose()
    return bytes(data[:MAX_ERROR_BODY])
