from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sealgate.client import Policy
from sealgate.gateway import Discovery
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..servers import ServerThread


@pytest.fixture
def trio(fleet):
    """Three enclaves behind a gateway; returns (gateway thread, policy)."""
    servers = [fleet.enclave() for _ in range(3)]
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    return gw, policy


class Tamperer:
    """A malicious gateway in front of a real one: rewrites the directory, records requests."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rewrite_fleet: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.answer: Callable[[Request, bytes], Response | None] | None = None
        self.bodies: list[bytes] = []
        self._client = httpx.Client(timeout=10)
        app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST"])])
        self.server = ServerThread(app).start()
        self.url = self.server.url

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if request.method == "POST":
            self.bodies.append(body)
        if request.url.path == "/.well-known/sealgate-fleet" and self.rewrite_fleet:
            doc = self._client.get(self.upstream + request.url.path).json()
            return Response(json.dumps(self.rewrite_fleet(doc)), media_type="application/json")
        if self.answer is not None:
            custom = self.answer(request, body)
            if custom is not None:
                return custom
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        upstream = self._client.request(
            request.method,
            self.upstream + request.url.path,
            params=request.query_params,
            headers=headers,
            content=body,
        )
        drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
        return Response(
            upstream.content,
            upstream.status_code,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in drop},
        )

    def close(self) -> None:
        self.server.stop()
        self._client.close()


@pytest.fixture
def tamperer(trio) -> Iterator[Tamperer]:
    gw, _ = trio
    t = Tamperer(gw.url)
    yield t
    t.close()
