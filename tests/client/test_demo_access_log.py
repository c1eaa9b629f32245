"""The demo reads the gateway's access log as JSON lines (the one sealgate log format)."""

from __future__ import annotations

import io
import json
import logging

from sealgate.client.demo import ACCESS_LOGGER, access_record
from sealgate.protocol.public.logs import configure, fields


def _logged(logger: str, event: str, **values: object) -> bytes:
    """One line exactly as a sealgate process writes it."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("info", stream)
        logging.getLogger(logger).info(event, extra=fields(**values))  # type: ignore[typeddict-item]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    return line.encode()


def test_an_access_line_gives_its_routing_fields():
    line = _logged(
        ACCESS_LOGGER,
        "request",
        method="POST",
        path="/.well-known/ohttp-gateway",
        key_id="00112233445566ff",
        enclave_id="e1",
        status=200,
        outcome="ok",
        bytes_in=1024,
        bytes_out=4096,
        duration_ms=3.5,
        request_id="r1",
    )
    record = access_record(line)
    assert record == {
        "method": "POST",
        "path": "/.well-known/ohttp-gateway",
        "key_id": "00112233445566ff",
        "enclave_id": "e1",
        "status": 200,
        "outcome": "ok",
        "bytes_in": 1024,
        "bytes_out": 4096,
        "duration_ms": 3.5,
        "request_id": "r1",
    }
    assert access_record(line.decode()) == record


def test_other_lines_are_not_access_records():
    assert access_record(_logged("sealgate.gateway", "enclave up", peer="http://x")) is None
    assert access_record(_logged(ACCESS_LOGGER, "started", count=1)) is None
    # The old format (a text prefix before the JSON) and anything else that is not JSON.
    old = b'INFO sealgate.gateway.access {"method":"POST","status":200}'
    for line in (old, b"", b"\xff\xfe", b"[1, 2]", json.dumps("request").encode()):
        assert access_record(line) is None
