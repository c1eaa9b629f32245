"""The built-in demo engine: a deterministic, OpenAI-compatible stand-in for a model.

Model ``sealgate-demo-echo`` answers every chat with a fixed sentence that quotes the
last user message, word by word; embeddings are derived from a hash of the input.
It does no inference at all. It exists so that the whole path (SDK, gateway,
enclave, engine) runs on a laptop and in tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["create_demo_app", "DEMO_MODEL", "demo_reply"]

DEMO_MODEL = "sealgate-demo-echo"
EMBEDDING_MODEL = "sealgate-demo-embedding"
_EMBEDDING_DIMENSIONS = 16


def demo_reply(messages: list[dict[str, Any]]) -> str:
    """The deterministic answer to a conversation."""
    last = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content", "")
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            last = str(content)
            break
    return f"This is the sealgate demo model, not a real one. You said: {last}"


def _tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _count(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status)


def _model_list(models: tuple[str, ...]) -> JSONResponse:
    created = 1_700_000_000
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": "sealgate-demo"}
                for m in models
            ],
        }
    )


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def create_demo_app(token_delay: float = 0.0, models: tuple[str, ...] | None = None) -> Starlette:
    """The demo engine as an ASGI app; ``token_delay`` seconds between streamed tokens.

    ``models``: the only model names it answers (404 ``model_not_found`` for others);
    None accepts any name and lists the two demo models.
    """
    served = tuple(models) if models is not None else (DEMO_MODEL, EMBEDDING_MODEL)

    async def list_models(request: Request) -> Response:
        return _model_list(served)

    def unknown(body: dict[str, Any]) -> JSONResponse | None:
        name = body.get("model")
        if models is None or name in models:
            return None
        return JSONResponse(
            {
                "error": {
                    "message": f"model {name!r} is not served here (serving {', '.join(models)})",
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                }
            },
            404,
        )

    async def chat(request: Request) -> Response:
        body = await _json_body(request)
        if body is None or not isinstance(body.get("messages"), list):
            return _error(400, "expected a JSON body with a 'messages' list")
        refused = unknown(body)
        if refused is not None:
            return refused
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        model = str(body.get("model") or DEMO_MODEL)
        reply = demo_reply(messages)
        tokens = _tokens(reply)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        usage = {
            "prompt_tokens": _count(messages),
            "completion_tokens": len(tokens),
            "total_tokens": _count(messages) + len(tokens),
        }
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, str], finish: str | None) -> bytes:
            event = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(event)}\n\n".encode()

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""}, None)
            for token in tokens:
                if token_delay:
                    await asyncio.sleep(token_delay)
                yield chunk({"content": token}, None)
            yield chunk({}, "stop")
            if include_usage:
                final = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json.dumps(final)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def embeddings(request: Request) -> Response:
        body = await _json_body(request)
        inputs = None if body is None else body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            return _error(400, "expected a JSON body with 'input' (a string or list of strings)")
        refused = unknown(body or {})
        if refused is not None:
            return refused
        data = []
        for index, text in enumerate(inputs):
            digest = hashlib.sha512(text.encode()).digest()
            raw = struct.unpack(f">{_EMBEDDING_DIMENSIONS}I", digest[: 4 * _EMBEDDING_DIMENSIONS])
            vector = [round(v / 0xFFFFFFFF * 2 - 1, 6) for v in raw]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(i.split()) for i in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or EMBEDDING_MODEL) if body else EMBEDDING_MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "engine": "demo"})

    return Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
