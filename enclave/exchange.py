"""One request through the enclave: its record, how it ended, and the refusals that end it.

Both modes (:mod:`.sealed` for EHBP and plaintext paths, :mod:`.native` for chunked
OHTTP) keep an :class:`Exchange` per request, end it early by raising :class:`Refused`
or :class:`ClientGone`, and close it with :meth:`Exchange.close`, which counts it and
writes its one log line. The line holds only what the gateway could see anyway (outer
method and path, key id, sizes, statuses, timing), never a sealed path, header or body.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from enum import StrEnum

from sealgate.protocol.public.errors import ProtocolError
from sealgate.protocol.public.logs import LogFields, fields
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.sealing.ehbp_response import ResponseEncoder

from .http import Receive
from .metrics import EnclaveMetrics

__all__ = [
    "ClientGone",
    "Exchange",
    "Carrier",
    "Outcome",
    "Refused",
    "engine_outcome",
    "refusal_for",
    "retry_after",
    "until_disconnect",
]

log = logging.getLogger("sealgate.enclave.access")

Header = tuple[bytes, bytes]


class Carrier(StrEnum):
    """How a request reached the enclave (the ``mode`` of metrics and log lines)."""

    OHTTP = "ohttp"  # native mode, one recipient
    MULTI = "multi"  # native mode, sealgate's multi-recipient extension
    EHBP = "ehbp"  # body-only compatibility mode
    PLAINTEXT = "plaintext"  # an operator-allowed plaintext path (or a refused one)


class Outcome(StrEnum):
    """How a request ended (the ``outcome`` of metrics and log lines); see also
    :func:`engine_outcome` for an engine's own error status."""

    OK = "ok"
    OVERLOADED = "overloaded"
    TIMEOUT = "timeout"
    TOO_LARGE = "too_large"
    REFUSED = "refused"
    BAD_REQUEST = "bad_request"
    UNKNOWN_KEY = "unknown_key"
    STALE = "stale"
    REPLAYED = "replayed"
    NOT_FOUND = "not_found"
    NOT_ALLOWED = "not_allowed"
    CLIENT_DISCONNECTED = "client_disconnected"
    ENGINE_TIMEOUT = "engine_timeout"
    ENGINE_ERROR = "engine_error"
    INTERNAL_ERROR = "internal_error"


def engine_outcome(status: int) -> str:
    """``ok`` for an engine answer below 400, else ``engine_<status>``."""
    return Outcome.OK if status < 400 else f"engine_{status}"


_ids = itertools.count(1)
_PREFIX = f"{os.getpid():x}-"


@dataclass(slots=True)
class Exchange:
    """The public facts of one request, filled in as it is handled."""

    mode: Carrier
    method: str = ""
    path: str = ""  # the outer path, without its query
    key: str = "-"  # the first 16 hex digits of the key's fingerprint
    status: int = 0  # the outer status sent
    inner_status: int = 0  # native mode: the sealed status (as public as the response size)
    outcome: str = Outcome.OK
    bytes_in: int = 0
    bytes_out: int = 0
    buffered: int = 0  # bytes of this request counted in the intake's byte budget
    sent_all: bool = False  # the last body message was handed to the server
    started: float = field(default_factory=time.perf_counter)
    request_id: str = field(default_factory=lambda: f"{_PREFIX}{next(_ids)}")

    def close(self, metrics: EnclaveMetrics) -> None:
        """Count the request and write its log line."""
        metrics.requests.labels(self.mode, self.outcome).inc()
        if not log.isEnabledFor(logging.INFO):
            return
        values: LogFields = {
            "request_id": self.request_id,
            "mode": self.mode.value,
            "method": self.method,
            "path": self.path,
            "key_id": self.key,
            "status": self.status,
            "outcome": str(self.outcome),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 1),
        }
        if self.inner_status:
            values["inner_status"] = self.inner_status
        log.info("request", extra=fields(**values))


class Refused(Exception):
    """Stop handling a request and answer ``problem``: sealed with ``encoder`` (EHBP) if
    set, else in plaintext. The native mode seals it too once the request is opened."""

    def __init__(
        self,
        problem: Problem,
        outcome: Outcome,
        headers: tuple[Header, ...] = (),
        encoder: ResponseEncoder | None = None,
    ) -> None:
        super().__init__(problem.title)
        self.problem = problem
        self.outcome = outcome
        self.headers = headers
        self.encoder = encoder


class ClientGone(Exception):
    """The client disconnected before the request body was complete."""


def retry_after(seconds: int) -> tuple[Header, ...]:
    """The ``Retry-After`` field sent with 503 overloaded."""
    return ((b"retry-after", str(seconds).encode()),)


#: What each :attr:`ProtocolError.status_hint` becomes; anything else is a 400.
_BY_HINT = {
    413: (PROBLEMS.BODY_TOO_LARGE, Outcome.TOO_LARGE),
    422: (PROBLEMS.KEY_CONFIG, Outcome.UNKNOWN_KEY),
    500: (PROBLEMS.INTERNAL_ERROR, Outcome.INTERNAL_ERROR),
}


def refusal_for(error: ProtocolError) -> Refused:
    """The refusal of a request whose sealed bytes raised ``error``, by its status hint."""
    kind, outcome = _BY_HINT.get(
        error.status_hint, (PROBLEMS.MALFORMED_REQUEST, Outcome.BAD_REQUEST)
    )
    detail = error.message
    if kind is PROBLEMS.KEY_CONFIG:
        detail += "; fetch the enclave's keys (re-attest) and encrypt again"
    return Refused(kind(detail), outcome)


async def until_disconnect(receive: Receive, exchange: Awaitable[None], ex: Exchange) -> None:
    """Run ``exchange``; cancel it (and so the engine request) if the client goes away."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    streaming = asyncio.ensure_future(exchange)
    watcher = asyncio.create_task(watch())
    try:
        await asyncio.wait({streaming, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        # After the whole response was handed over, "disconnect" is the normal end.
        if not streaming.done() and not ex.sent_all:
            streaming.cancel()
            ex.outcome = Outcome.CLIENT_DISCONNECTED
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        with contextlib.suppress(asyncio.CancelledError):
            await streaming
