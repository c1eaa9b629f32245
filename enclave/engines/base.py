"""Engine interface and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Engine",
    "EngineError",
    "EngineResponse",
    "EngineTimeout",
    "EngineUnavailable",
    "engine_description",
]

RawHeaders = list[tuple[bytes, bytes]]


def engine_description(
    upstream: str | None = None, models: tuple[str, ...] | None = None
) -> dict[str, object]:
    """The measured engine configuration: the built-in demo engine (``upstream`` None) or
    the OpenAI-compatible server at ``upstream``, and the models it serves if named."""
    description: dict[str, object] = (
        {"engine": "demo", "model": "sealgate-demo-echo"}
        if upstream is None
        else {"engine": "upstream", "url": upstream.rstrip("/")}
    )
    if models is not None:  # measured: the attested model list comes from here
        description["models"] = sorted(models)
    return description


class EngineError(Exception):
    """The engine could not be reached or did not answer."""


class EngineUnavailable(EngineError):
    """Connection refused, reset, or the engine closed before answering (502)."""


class EngineTimeout(EngineError):
    """The engine did not answer, or stopped streaming, within the timeout (504)."""


@dataclass(slots=True)
class EngineResponse:
    """Status, headers and a body that is streamed as the engine produces it."""

    status: int
    headers: RawHeaders
    body: AsyncIterator[bytes]


class Engine(Protocol):
    """An OpenAI-compatible inference server."""

    description: dict[str, object]

    def stream(
        self, method: str, target: str, headers: RawHeaders, body: bytes
    ) -> AbstractAsyncContextManager[EngineResponse]:
        """Send one request; the context manager closes the exchange (and cancels it early)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
