"""``application/problem+json`` bodies (RFC 9457) shared by the enclave, gateway and client.

The key-config type is EHBP's, so EHBP clients re-fetch keys on it; the others are
sealgate's own URNs. A client recognises a problem only by its ``type``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import MalformedProblem

__all__ = ["Problem", "ProblemType", "MEDIA_TYPE", "PROBLEMS"]

MEDIA_TYPE = "application/problem+json"
_MAX_PROBLEM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ProblemType:
    """A registered problem: its URI, default title and HTTP status."""

    uri: str
    title: str
    status: int

    def __call__(self, detail: str | None = None, **extra: Any) -> Problem:
        return Problem(self.uri, self.title, self.status, detail, extra or None)


def _sealgate(name: str, title: str, status: int) -> ProblemType:
    return ProblemType(f"urn:sealgate:problem:{name}", title, status)


class PROBLEMS:
    """The problem types sealgate components send."""

    KEY_CONFIG = ProblemType(
        "urn:ietf:params:ehbp:error:key-config", "key configuration mismatch", 422
    )
    UNKNOWN_KEY = _sealgate("unknown-key", "unknown key: refresh the fleet and re-encrypt", 421)
    ENCLAVE_UNAVAILABLE = _sealgate(
        "enclave-unavailable", "enclave unavailable; the request was not forwarded", 503
    )
    FORWARDING_FAILED = _sealgate(
        "forwarding-failed", "the enclave connection failed after the request was forwarded", 502
    )
    MALFORMED_REQUEST = _sealgate("malformed-request", "malformed request", 400)
    PLAINTEXT_REFUSED = _sealgate("plaintext-refused", "request body is not encrypted", 403)
    NOT_FOUND = _sealgate("not-found", "no such endpoint", 404)
    METHOD_NOT_ALLOWED = _sealgate("method-not-allowed", "method not allowed", 405)
    REQUEST_TIMEOUT = _sealgate("request-timeout", "the request was not received in time", 408)
    BODY_TOO_LARGE = _sealgate("body-too-large", "request body or frame too large", 413)
    RATE_LIMITED = _sealgate("rate-limited", "too many requests", 429)
    HEADERS_TOO_LARGE = _sealgate("headers-too-large", "request headers too large", 431)
    OVERLOADED = _sealgate("overloaded", "too many concurrent requests; retry later", 503)
    UPSTREAM_UNAVAILABLE = _sealgate("upstream-unavailable", "inference engine unavailable", 502)
    UPSTREAM_TIMEOUT = _sealgate("upstream-timeout", "inference engine timed out", 504)
    HTTP_VERSION = _sealgate("http-version", "only HTTP/1.1 is supported", 505)
    #: A bug in the component, never the client's input; the component logs the cause.
    INTERNAL_ERROR = _sealgate(
        "internal-error", "internal error; the request was not forwarded", 500
    )
    REPLAYED_REQUEST = _sealgate(
        "replayed-request", "this sealed request was already received; seal it anew", 400
    )
    #: RFC 9458 §6.9.2: the answer carries the enclave's clock in a ``Date`` field.
    STALE_REQUEST = _sealgate(
        "stale-request", "request date outside the replay window; correct the clock, re-seal", 400
    )


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem document."""

    type: str
    title: str
    status: int
    detail: str | None = None
    extra: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        """Serialize as compact JSON."""
        body: dict[str, Any] = dict(self.extra or {})
        body.update(type=self.type, title=self.title, status=self.status)
        if self.detail is not None:
            body["detail"] = self.detail
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Problem:
        """Parse a problem body; :class:`MalformedProblem` if it is not one."""
        if len(data) > _MAX_PROBLEM_BYTES:
            raise MalformedProblem("problem body is too large")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise MalformedProblem("problem body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise MalformedProblem("problem body has no string 'type'")
        title = body.pop("title", "")
        status = body.pop("status", 0)
        detail = body.pop("detail", None)
        kind = body.pop("type")
        return cls(
            kind,
            title if isinstance(title, str) else "",
            status if isinstance(status, int) else 0,
            detail if isinstance(detail, str) else None,
            body or None,
        )

    def is_(self, kind: ProblemType) -> bool:
        """True if this problem is of ``kind``."""
        return self.type == kind.uri
