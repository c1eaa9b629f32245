"""Enclave settings, passed in explicitly (no globals, no environment reads here).

Each field is a :func:`~sealgate.protocol.public.settings.setting`: ``sealgate enclave``
derives its option (``--field-name``, or the spelling given) and its environment variable
(``SEALGATE_ENCLAVE_FIELD_NAME``) from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sealgate.protocol.public.settings import setting

__all__ = ["EnclaveConfig", "parse_duration", "parse_route", "show_duration"]

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> float:
    """Parse ``90``, ``90s``, ``15m``, ``1h``, ``1d`` or ``0.5`` into seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like 90s, 15m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _duration_or_never(value: str) -> float | None:
    return None if value.strip().lower() == "never" else parse_duration(value)


def show_duration(seconds: float | None) -> str:
    """A duration as ``--help`` shows it: ``5m``, ``30s``, ``0.005s`` or ``never``."""
    if seconds is None:
        return "never"
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


def parse_route(value: str) -> tuple[str, str]:
    """``'GET /v1/models'`` as ``("GET", "/v1/models")``."""
    method, _, path = value.strip().partition(" ")
    path = path.strip()
    if not method or not path.startswith("/"):
        raise ValueError(f"{value!r} must look like 'GET /v1/models'")
    return method.upper(), path


def _show_routes(routes: tuple[tuple[str, str], ...] | frozenset[tuple[str, str]]) -> str:
    return ", ".join(f"{method} {path}" for method, path in routes) or "none"


def _duration(default: float, help: str) -> Any:
    """A setting given as a duration (``30s``, ``5m``)."""
    return setting(default, help=help, parse=parse_duration, show=show_duration, metavar="DURATION")


def _routes(default: Any, help: str, option: str) -> Any:
    """A setting given as repeated ``'METHOD /path'`` values."""
    kind = {"default_factory": default} if callable(default) else {"default": default}
    return setting(
        **kind,
        help=help,
        parse=parse_route,
        show=_show_routes,
        metavar="'METHOD /path'",
        names=(option,),
    )


@dataclass(frozen=True, slots=True)
class EnclaveConfig:
    """Limits, timeouts and policies of one enclave server."""

    plaintext_paths: frozenset[tuple[str, str]] = _routes(
        frozenset,
        "Forward this path without encryption (repeatable), e.g. 'GET /v1/models'.",
        "--allow-plaintext",
    )
    max_body_size: int = setting(
        32 * 1024 * 1024, help="Largest decrypted request body accepted (413 above it).", minimum=1
    )
    max_frame_size: int = setting(
        1024 * 1024 + 16,
        help="Largest request frame (ciphertext) accepted (413 above it).",
        minimum=1,
    )
    max_concurrent_requests: int = setting(
        128,
        help="Requests exchanging with the engine at once (503 with Retry-After above it).",
        minimum=1,
        names=("--max-concurrent",),
    )
    body_timeout: float = _duration(30.0, "408 when a request body sends nothing for this long.")
    #: However the body trickles in: 32 MiB at 1 Mbit/s still fits the default.
    body_deadline: float = _duration(
        300.0, "408 when a request body is not complete this long after its head."
    )
    #: 1 KiB/s is far below any real link and far above a slow-drip attack.
    body_min_rate: float = setting(
        1024.0,
        help="408 when a body averages fewer bytes/second than this once "
        "body_min_rate_grace has passed (0: no minimum).",
        minimum=0,
    )
    body_min_rate_grace: float = _duration(
        10.0, "How long a body may arrive before its minimum rate applies."
    )
    #: Counted over every request from its first body byte until its engine exchange
    #: ends; one body can be up to ``max_body_size + max_frame_size`` of it.
    max_buffered_body_bytes: int = setting(
        1024 * 1024 * 1024,
        help="Request body bytes held at once over all requests (503 above it).",
        minimum=1,
    )
    attestation_cache_seconds: float = _duration(
        60.0, "How long a no-nonce attestation document is reused."
    )
    #: Each report answers a whole batch of nonces (see attestation_batch_window).
    attestation_rate: float = setting(
        10.0, help="Fresh-nonce hardware reports per second (429 above it).", minimum=0
    )
    attestation_burst: int = setting(
        20, help="Fresh-nonce reports allowed at once above attestation_rate.", minimum=1
    )
    #: The nonces of a batch are answered by one report over a Merkle root of them.
    attestation_batch_window: float = _duration(
        0.005, "Fresh nonces arriving within this long share one report."
    )
    attestation_batch_size: int = setting(256, help="Nonces per report at most.", minimum=1)
    attestation_batch_queue: int = setting(
        8, help="Batches waiting for a report; beyond them a nonce gets 429.", minimum=1
    )
    attestation_concurrency: int = setting(
        2, help="Evidence generations running at once.", minimum=1
    )
    rotate_keys_every: float | None = setting(
        None,
        help="Rotate the HPKE keys on this period, e.g. 1h ('never': keep them).",
        parse=_duration_or_never,
        show=show_duration,
        metavar="DURATION",
    )
    key_grace: float = _duration(300.0, "How long a replaced key keeps decrypting.")
    #: The native-mode SDK prefers the hybrid key; off publishes X25519 keys only, as
    #: enclaves before it did.
    post_quantum_keys: bool = setting(
        True, help="Make an MLKEM768-X25519 key beside each X25519 key."
    )
    retry_after: int = setting(1, help="Retry-After seconds sent with 503 overloaded.", minimum=0)
    #: RFC 9458 §6.9.
    replay_window: float = _duration(
        60.0, "Native mode: how far a sealed request's inner Date may be from the enclave's clock."
    )
    replay_capacity: int = setting(
        100_000, help="Native mode: encapsulated keys remembered to refuse replays.", minimum=1
    )
    native_routes: tuple[tuple[str, str], ...] = _routes(
        (
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/completions"),
            ("POST", "/v1/embeddings"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/"),
            ("POST", "/v1/responses"),
        ),
        "A route the native mode forwards (repeatable; replaces the default list). A path "
        "ending in / allows one more segment: 'GET /v1/models/' matches /v1/models/{id}.",
        "--native-route",
    )
    chunk_bucket: int = setting(
        128,
        help="Native mode: every sealed response chunk's plaintext is a multiple of this (0: off).",
        minimum=0,
    )
    #: Fewer, coarser chunks blur the token count and timing, at the cost of up to this
    #: much latency.
    sse_coalesce_interval: float = _duration(
        0.0,
        "Native mode: server-sent events produced within this long of the first unsent one "
        "leave together, in one padded chunk (0: each at once).",
    )
    #: SSE comment lines per frame, trailing whitespace after JSON: what Tinfoil's clients
    #: pass through unchanged.
    ehbp_padding: bool = setting(True, help="EHBP: pad sealed responses to chunk_bucket too.")
    #: Part of the measured engine configuration: clients route a model only to enclaves
    #: whose evidence (or release) names it.
    models: tuple[str, ...] = setting(
        (),
        help="A model the engine serves (repeatable), measured into the attestation. The "
        "engine's GET /v1/models must list it: the enclave refuses to start otherwise, "
        "and reports unhealthy while it cannot tell.",
        names=("--model",),
        metavar="NAME",
    )
    engine_check_interval: float = _duration(30.0, "How often the engine's model list is checked.")
    engine_check_timeout: float = _duration(
        5.0, "How long each engine check may take (also delays start-up)."
    )

    def __post_init__(self) -> None:
        if self.max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be at least 1")
