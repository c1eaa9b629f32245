"""One log format for every sealgate process: JSON lines, the same key for the same thing.

Every line is one JSON object with ``ts`` (RFC 3339, UTC), ``level``, ``logger`` and
``event`` (the message), plus any of the :class:`LogFields` a call passes with
:func:`fields`::

    log.info("request", extra=fields(request_id=rid, key_id=kid, status=200, duration_ms=3.1))

Only the keys of :class:`LogFields` are ever written, each with a plain scalar value, so a
log line cannot carry a body, a header block or anything else that was not chosen to be
there. Logs leave the enclave: they are as public as the gateway's view.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any, TypedDict, Unpack

__all__ = ["GATEWAY_ACCESS_LOGGER", "LogFields", "JsonLines", "configure", "fields"]

_ATTRIBUTE = "sealgate_fields"

#: The gateway's access log: one ``request`` line per exchange. The demo reads it back.
GATEWAY_ACCESS_LOGGER = "sealgate.gateway.access"
_FRAMES = 8


class LogFields(TypedDict, total=False):
    """The structured keys, named once for every process."""

    #: Per request: the gateway's id for an exchange, the enclave's for a sealed request.
    request_id: str
    #: The fingerprint of the key a request was sealed to (public).
    key_id: str
    #: The fleet member's id (gateway) or the enclave's own name.
    enclave_id: str
    #: The outer HTTP status the process sent (the enclave also logs the sealed inner one
    #: as ``inner_status``, which is as public as the response size).
    status: int
    inner_status: int
    #: Wall-clock milliseconds from the request's first byte to the last response byte,
    #: and to the first response byte.
    duration_ms: float
    ttfb_ms: float
    #: Wire bytes in and out (what a tap in front of the process sees anyway).
    bytes_in: int
    bytes_out: int
    #: ``ohttp`` (native), ``ehbp`` or ``local`` (answered by the process itself).
    mode: str
    #: The outer method and path (never the sealed inner ones).
    method: str
    path: str
    #: How a request ended (``ok``, or a word such as ``no-enclave``, ``replay``,
    #: ``client-gone``), attempts made, and the problem type of a refusal.
    outcome: str
    attempts: int
    problem: str
    #: A peer (enclave URL, engine URL) or a count a lifecycle event is about.
    peer: str
    count: int


def fields(**values: Unpack[LogFields]) -> dict[str, Any]:
    """The ``extra=`` of a logging call carrying structured fields."""
    return {_ATTRIBUTE: values}


class JsonLines(logging.Formatter):
    """Formats each record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        extra = getattr(record, _ATTRIBUTE, None)
        if isinstance(extra, dict):
            for key, value in extra.items():
                if key in LogFields.__annotations__ and isinstance(value, str | int | float):
                    line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type and where it was raised, never the message: it could quote a request.
            line["exception"] = record.exc_info[0].__name__
            frames = traceback.extract_tb(record.exc_info[2])[-_FRAMES:]
            line["where"] = [f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in frames]
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def configure(level: str | int = "info", stream: IO[str] | None = None) -> None:
    """Route every logger (the servers' own, uvicorn's, httpx's) through :class:`JsonLines`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    logging.getLogger("httpcore").setLevel(logging.WARNING)
