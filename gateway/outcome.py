"""How an exchange ended, and why a multi-recipient request moved on: metric labels and log values."""

from __future__ import annotations

import enum

__all__ = ["FailoverReason", "Outcome"]


class Outcome(enum.StrEnum):
    """The ``outcome`` of one exchange (a metric label and an access-log field)."""

    OK = "ok"
    LOCAL = "local"  # answered by the gateway's own endpoints
    BAD_REQUEST = "bad_request"
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_KEY = "unknown_key"
    ENCLAVE_DOWN = "enclave_down"
    ENCLAVE_4XX = "enclave_4xx"
    ENCLAVE_5XX = "enclave_5xx"
    FORWARDING_FAILED = "forwarding_failed"
    STREAM_BROKEN = "stream_broken"
    ABORTED = "aborted"
    CLIENT_DISCONNECTED = "client_disconnected"

    @classmethod
    def of_enclave_status(cls, status: int) -> Outcome:
        """An exchange the enclave answered with ``status``: ok, or its error class."""
        if status < 400:
            return cls.OK
        return cls.ENCLAVE_4XX if status < 500 else cls.ENCLAVE_5XX


class FailoverReason(enum.StrEnum):
    """Why a multi-recipient request went to its next candidate (all before it was opened)."""

    CONNECT_FAILED = "connect_failed"
    REFUSED_421 = "refused_421"
    REFUSED_422 = "refused_422"
    REFUSED_503 = "refused_503"

    @classmethod
    def refused(cls, status: int) -> FailoverReason:
        return cls(f"refused_{status}")
