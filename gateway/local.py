"""The gateway's own endpoints: the fleet directory, health and metrics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST
from sealgate.protocol.public import paths
from sealgate.protocol.public.problem import PROBLEMS

from .directory import fleet_document
from .fleet import Fleet
from .http11 import json_response, problem_response
from .metrics import GatewayMetrics

__all__ = ["LocalAnswer", "LocalEndpoints"]

_FLEET = paths.FLEET.encode()
_HEALTH = paths.HEALTH.encode()
_METRICS = paths.METRICS.encode()
_FLEET_MAX_AGE = 1.0  # seconds a built directory is served before it is built again


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    """A complete response the gateway wrote itself, and its status."""

    status: int
    data: bytes


class LocalEndpoints:
    """Answers ``GET``/``HEAD`` for the paths in :attr:`paths`; nothing is forwarded."""

    paths = frozenset({_FLEET, _HEALTH, _METRICS})

    def __init__(self, fleet: Fleet, metrics: GatewayMetrics) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self._fleet_cache: tuple[int, float, bytes] = (-1, 0.0, b"")

    def answer(self, path: bytes, method: bytes, *, draining: bool = False) -> LocalAnswer:
        """The complete response to ``method path`` (one of :attr:`paths`)."""
        if method not in (b"GET", b"HEAD"):
            problem = PROBLEMS.METHOD_NOT_ALLOWED("use GET")
            return LocalAnswer(problem.status, problem_response(problem))
        answer = self._get(path, draining)
        if method == b"HEAD":  # the GET's head, Content-Length included; no body (RFC 9110 9.3.2)
            head = answer.data[: answer.data.index(b"\r\n\r\n") + 4]
            return LocalAnswer(answer.status, head)
        return answer

    def _get(self, path: bytes, draining: bool) -> LocalAnswer:
        if path == _FLEET:
            return LocalAnswer(200, json_response(self._fleet_document()))
        if path == _METRICS:
            body = self.metrics.exposition()
            return LocalAnswer(200, json_response(body, 200, CONTENT_TYPE_LATEST.encode()))
        healthy = self.fleet.healthy_count()
        body = json.dumps(
            {
                "status": "ok" if healthy else "no healthy enclave",
                "healthy_enclaves": healthy,
                "enclaves": len(self.fleet.members),
                "draining": draining,
            }
        ).encode()
        status = 200 if healthy and not draining else 503
        return LocalAnswer(status, json_response(body, status))

    def _fleet_document(self) -> bytes:
        version, built, body = self._fleet_cache
        now = time.monotonic()
        if version != self.fleet.version or now - built > _FLEET_MAX_AGE:
            body = fleet_document(self.fleet)
            self._fleet_cache = (self.fleet.version, now, body)
        return body
