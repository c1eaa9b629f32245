"""Inference engines the enclave forwards decrypted requests to.

:class:`Engine` is the interface: ``stream(method, target, headers, body)`` yields an
:class:`EngineResponse` whose body is an async iterator of bytes as the engine
produces them. :class:`HTTPEngine` speaks to any OpenAI-compatible server (vLLM,
llama.cpp, Ollama); :class:`ASGIEngine` runs an ASGI app in-process (the built-in
demo engine, no socket at all).
"""

from __future__ import annotations

from .base import (
    Engine,
    EngineError,
    EngineResponse,
    EngineTimeout,
    EngineUnavailable,
    engine_description,
)
from .inprocess import ASGIEngine
from .upstream import HTTPEngine

__all__ = [
    "ASGIEngine",
    "Engine",
    "EngineError",
    "EngineResponse",
    "EngineTimeout",
    "EngineUnavailable",
    "HTTPEngine",
    "demo_engine",
    "engine_description",
]


def demo_engine(token_delay: float = 0.0, models: tuple[str, ...] | None = None) -> ASGIEngine:
    """The built-in deterministic demo engine, in-process.

    With ``models``, it serves exactly those (others get 404 ``model_not_found``, as vLLM
    answers) and its description - the measured engine configuration - lists them.
    """
    from .demo import create_demo_app

    app = create_demo_app(token_delay=token_delay, models=models)
    return ASGIEngine(app, engine_description(None, models))
