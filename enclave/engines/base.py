"""Engine interface and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Engine", "EngineError", "EngineResponse", "EngineTimeout", "EngineUnavailable"]

RawHeaders = list[tuple[bytes, bytes]]


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
