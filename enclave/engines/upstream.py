"""Forwarding to an OpenAI-compatible engine over HTTP (vLLM, llama.cpp server, Ollama, ...)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from .base import (
    EngineResponse,
    EngineTimeout,
    EngineUnavailable,
    RawHeaders,
    engine_description,
)

__all__ = ["HTTPEngine"]


class HTTPEngine:
    """Streams requests to ``base_url`` with per-phase timeouts and a pooled client."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 300.0,
        max_connections: int = 256,
        models: tuple[str, ...] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.description = engine_description(self.base_url, models)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
            follow_redirects=False,
        )

    @asynccontextmanager
    async def stream(
        self, method: str, target: str, headers: RawHeaders, body: bytes
    ) -> AsyncIterator[EngineResponse]:
        request = self._client.build_request(method, target, headers=headers, content=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise EngineTimeout(f"engine at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise EngineUnavailable(
                f"engine at {self.base_url} is unreachable ({type(exc).__name__})"
            ) from None
        try:
            yield EngineResponse(response.status_code, list(response.headers.raw), _body(response))
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


async def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.TimeoutException:
        raise EngineTimeout("engine stopped streaming (read timeout)") from None
    except httpx.HTTPError:
        raise EngineUnavailable("engine connection broke while streaming") from None
