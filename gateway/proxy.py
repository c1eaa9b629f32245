"""The data plane: an HTTP/1.1 reverse proxy on asyncio protocols and httptools.

Why not a framework: on the project's 2-core benchmark machine a Starlette app
forwarding with httpx reached about 2.5% of nginx's throughput and one with an
aiohttp client about 25% (see ``bench/gateway_bench.py``). This module parses with
httptools (llhttp, as uvicorn does), keeps pooled keep-alive connections to each
enclave and moves bytes between transports without an ASGI layer or a task per
request.

What it does to a request:

* parse the head (limits: size, time), pick the enclave by ``Sealgate-Key-Id``;
  unknown key -> 421, enclave down or unreachable -> 503 *before any byte was
  forwarded*, so the client may re-encrypt to another enclave;
* requests without a key id that are EHBP-sealed, and key discovery under
  ``/.well-known/``, go to the fleet's primary enclave (EHBP clients seal to the key
  it published). While the first enclave decides, the gateway keeps a copy of such a
  request (bounded) and holds back the response head: if the enclave refuses it with
  EHBP's key-config 422 - sent before anything reached the engine - the copy is
  replayed on another enclave, else the response passes through as usual;
* multi-recipient requests (``message/sealgate-multi-req``) name their candidate
  enclaves in a public header at the start of the body: the gateway reads it (bounded),
  forwards to the first usable candidate with its ``Sealgate-Key-Id``, and with the same
  bounded copy fails over to the next candidate on a connect failure or a plaintext
  421/422/503 - answers an enclave gives before it opens the request, so before any
  processing. A sealed answer or a connection lost after forwarding is never retried;
* forward the head (minus hop-by-hop headers) and the body as it arrives, with
  backpressure both ways (a full socket buffer pauses reading the other side);
* pass the enclave's response through byte for byte - status line, headers, body,
  including any problem document - parsing it only to find where it ends.

It never looks inside bodies: they are ciphertext, and no code here could open them.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import math
import os
import time
from typing import cast

import httptools
from sealgate.protocol.public import paths
from sealgate.protocol.public.errors import ProtocolError
from sealgate.protocol.public.headers import KEY_ID, ROUTE_TAG, wire
from sealgate.protocol.public.logs import GATEWAY_ACCESS_LOGGER, fields
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.public.multi_header import MAX_CANDIDATES, MAX_WRAPPED_KEY, MultiHeader
from sealgate.protocol.public.multi_header import MEDIA_TYPE as MULTI_MEDIA_TYPE
from sealgate.protocol.public.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.public.problem import PROBLEMS, Problem

from .config import GatewayConfig
from .fleet import Fleet, Member, Route, RouteStatus
from .http11 import HOP_BY_HOP, problem_response
from .local import LocalEndpoints
from .metrics import GatewayMetrics
from .outcome import FailoverReason, Outcome
from .ratelimit import NonceLimiter

__all__ = ["ClientConnection", "DataPlane", "Exchange", "UpstreamConnection", "UpstreamPool"]

log = logging.getLogger("sealgate.gateway.routing")
access_log = logging.getLogger(GATEWAY_ACCESS_LOGGER)

_KEY_ID = wire(KEY_ID)
_ROUTE_TAG = wire(ROUTE_TAG)
_EHBP_KEY = wire(EHBP.encapsulated_key_header)
_EHBP_NONCE = wire(EHBP.response_nonce_header)
_CONTENT_TYPE = b"content-type"
#: Fields this hop reads (and, for the hop-by-hop ones, re-creates) instead of only copying.
_SPECIAL = HOP_BY_HOP | {_KEY_ID, _EHBP_KEY, _CONTENT_TYPE}
_WELL_KNOWN = paths.WELL_KNOWN.encode()
_MAX_HELD_RESPONSE = 64 * 1024  # a key-config problem document is far smaller
_PROBLEM_TYPE = PROBLEM_MEDIA_TYPE.encode()
_MULTI_TYPE = MULTI_MEDIA_TYPE.encode()
#: The largest public header of a multi-recipient request (X-Wing's 1120-byte enc).
_MAX_MULTI_HEADER = 2 + MAX_CANDIDATES * (15 + 1120 + 2 + MAX_WRAPPED_KEY)
#: Plaintext statuses an enclave answers before opening a multi-recipient request.
_MULTI_REFUSALS = frozenset({421, 422, 503})
#: The one status an enclave refuses an EHBP request with before opening it (key config).
_EHBP_REFUSALS = frozenset({422})
_HIGH_WATER = 256 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Connection options that name no field the data plane forwards (RFC 9112 9.3, 9.6).
_CONNECTION_OPTIONS = HOP_BY_HOP | {b"close", b""}


class _Head:
    """A request head as it will be forwarded, and what this hop read from it."""

    __slots__ = ("content_length", "lines", "multi", "nominated")

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.content_length = 0
        self.nominated: set[bytes] | None = None  # field names listed in Connection
        self.multi = False  # a multi-recipient request (its candidates are in the body)


class DataPlane:
    """What every connection of one worker shares: its collaborators and its live state.

    The worker (``server.Gateway``) hands in the collaborators explicitly: the settings, the
    routing table, the metrics, the gateway's own endpoints and the fresh-nonce limiter. The
    state the data plane changes (open connections, streams in flight, pooled enclave
    connections, the cached clock) is its own; the worker only reads it.
    """

    def __init__(
        self,
        config: GatewayConfig,
        fleet: Fleet,
        metrics: GatewayMetrics,
        local: LocalEndpoints,
        nonce_limit: NonceLimiter,
    ) -> None:
        self.config = config
        self.fleet = fleet
        self.metrics = metrics
        self.local = local
        self.nonce_limit = nonce_limit
        self.pool = UpstreamPool(config.pool_size)
        self.connections: set[ClientConnection] = set()
        self.active_streams = 0
        self.draining = False
        self.now = time.monotonic()  # refreshed by sweep(); for idle bookkeeping only
        # Request ids: this worker's pid and a random tag (unique across replicas), a serial.
        self._id_prefix = f"{os.getpid():x}{os.urandom(3).hex()}-"
        self.serials = itertools.count(1)

    def connection(self) -> ClientConnection:
        """A protocol for one accepted client connection (``loop.create_server``'s factory)."""
        return ClientConnection(self)

    def request_id(self, exchange: Exchange) -> str:
        return f"{self._id_prefix}{exchange.serial:x}"

    def sweep(self, now: float) -> None:
        """Enforce the timeouts of every connection and expire idle pooled ones."""
        self.now = now
        for conn in list(self.connections):
            conn.check_timeouts(now)
        self.pool.sweep(now, self.config.pool_idle_timeout)

    def record(self, exchange: Exchange) -> None:
        """A finished exchange: count it, and write its access-log line."""
        outcome = exchange.outcome or Outcome.OK
        if outcome is Outcome.OK and exchange.status >= 400:
            outcome = Outcome.of_enclave_status(exchange.status)
        exchange.outcome = outcome
        enclave = exchange.member.id if exchange.member is not None else "-"
        seconds = time.perf_counter() - exchange.started_at
        self.metrics.record(enclave, outcome, seconds)
        if self.config.access_log and outcome is not Outcome.LOCAL:
            access_log.info(
                "request",
                extra=fields(
                    request_id=self.request_id(exchange),
                    method=exchange.method.decode("latin-1"),
                    path=exchange.url.split(b"?", 1)[0].decode("latin-1"),
                    key_id=exchange.key_id[:16] or "-",
                    enclave_id=enclave,
                    status=exchange.status,
                    outcome=outcome,
                    bytes_in=exchange.request_bytes,
                    bytes_out=exchange.response_bytes,
                    duration_ms=round(seconds * 1000, 3),
                ),
            )

    async def drain(self, timeout: float) -> None:
        """Close idle connections, let exchanges in flight finish for ``timeout`` s, cut the rest."""
        self.draining = True
        for conn in list(self.connections):
            if not conn.queue:
                conn.close()  # idle keep-alive connections go now
        deadline = time.monotonic() + timeout
        while any(c.queue for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        self.pool.close_all()


class UpstreamPool:
    """Idle keep-alive connections per enclave, at most ``size`` each."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: dict[str, collections.deque[UpstreamConnection]] = {}

    def take(self, member: Member) -> UpstreamConnection | None:
        idle = self.idle.get(member.url)
        while idle:
            conn = idle.pop()
            # A transport already closing (the enclave's FIN read this loop turn) is skipped:
            # a request written to it would be lost and surface as ForwardingFailed.
            if not conn.closed and not (conn.transport is not None and conn.transport.is_closing()):
                return conn
        return None

    def put(self, conn: UpstreamConnection, now: float) -> None:
        idle = self.idle.get(conn.member.url)
        if idle is None:
            idle = self.idle[conn.member.url] = collections.deque()
        if conn.closed or len(idle) >= self.size:
            conn.close()
            return
        conn.idle_since = now
        idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        idle = self.idle.get(conn.member.url)
        if idle is not None and conn in idle:
            idle.remove(conn)

    def sweep(self, now: float, max_idle: float) -> None:
        for idle in self.idle.values():
            while idle and now - idle[0].idle_since > max_idle:
                idle.popleft().close()

    def close_member(self, url: str) -> None:
        for conn in self.idle.pop(url, ()):
            conn.close()

    def close_all(self) -> None:
        for url in list(self.idle):
            self.close_member(url)


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an enclave, carrying one exchange at a time."""

    def __init__(self, member: Member, pool: UpstreamPool) -> None:
        self.member = member
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.keep_alive = True
        self.idle_since = 0.0
        self.write_paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for: the connection is unusable
            self.close()
            return
        exchange.upstream_data(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            exchange.upstream_failed("malformed response from enclave")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.discard(self)
        if self.exchange is not None:
            self.exchange.upstream_failed("enclave closed the connection")

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchange is not None:
            self.exchange.client.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None:
            self.exchange.client.resume_reading()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        if self.exchange is not None:
            self.exchange.status_known(self.parser.get_status_code())
            if self.exchange.method == b"HEAD":  # no body follows, whatever the headers say
                self.keep_alive = False
                self.exchange.upstream_complete()

    def on_message_complete(self) -> None:
        if self.exchange is not None and self.exchange.method != b"HEAD":
            self.exchange.upstream_complete()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Exchange:
    """One request/response through the gateway."""

    __slots__ = (
        "body_started",
        "bytes_forwarded",
        "cancelled",
        "chunked",
        "client",
        "close_after",
        "done_request",
        "done_response",
        "ehbp",
        "expect_continue",
        "finished",
        "has_body",
        "headers",
        "held",
        "held_back_base",
        "key_id",
        "last_activity",
        "local",
        "member",
        "method",
        "multi",
        "multi_head",
        "multi_members",
        "outcome",
        "pending",
        "pending_size",
        "prepared",
        "replay",
        "request_bytes",
        "response_bytes",
        "running",
        "serial",
        "started_at",
        "status",
        "tried",
        "upstream",
        "url",
    )

    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = b""
        self.key_id = ""
        self.member: Member | None = None
        self.upstream: UpstreamConnection | None = None
        self.local: bytes | None = None  # a response the gateway answers itself
        self.pending: list[bytes] = []  # request bytes waiting for the upstream connection
        self.pending_size = 0
        self.chunked = False
        self.has_body = False
        self.prepared = False
        self.running = False
        self.cancelled = False
        self.finished = False
        self.done_request = False
        self.done_response = False
        self.close_after = False
        self.ehbp = False  # sealed in EHBP mode (it names no key)
        self.replay: bytearray | None = None  # everything sent upstream, while replayable
        self.held: bytearray | None = None  # response bytes not yet released to the client
        self.tried: list[Member] = []  # enclaves that refused it before processing
        self.multi: bytearray | None = None  # a multi-recipient body until its header parsed
        self.multi_head = b""  # its forwarded head, without Sealgate-Key-Id and blank line
        self.multi_members: list[tuple[Member, str]] = []  # candidates in failover order
        self.bytes_forwarded = 0
        self.request_bytes = 0
        self.response_bytes = 0
        self.status = 0  # of the response: the enclave's, or the one the gateway wrote
        self.outcome: Outcome | None = None
        self.serial = next(client.plane.serials)
        self.started_at = time.perf_counter()
        self.last_activity = client.plane.now
        self.expect_continue = False
        self.body_started = 0.0  # when it became the active exchange (monotonic)
        self.held_back_base = 0.0  # the connection's held_back() at that moment

    # -- request side -----------------------------------------------------------------
    def prepare(self, parser: httptools.HttpRequestParser) -> None:
        """Headers complete: validate, route, and build the head to forward."""
        self.prepared = True
        self.method = parser.get_method()
        if parser.get_http_version() != "1.1":
            self.refuse(
                PROBLEMS.HTTP_VERSION("send HTTP/1.1 requests"), Outcome.BAD_REQUEST, close=True
            )
            return
        if parser.should_upgrade():  # Upgrade or CONNECT: refused before anything is forwarded
            self.refuse(
                PROBLEMS.MALFORMED_REQUEST("protocol upgrades are not supported"),
                Outcome.BAD_REQUEST,
                close=True,
            )
            return
        head = self._read_head()
        if head is None or not self._frame_body(head):
            return
        if head.multi:
            self._await_candidates(head)
            return
        head.lines.append(b"\r\n")
        path = b"" if self.key_id else self.url.split(b"?", 1)[0]
        if path in self.client.plane.local.paths:
            self._answer_locally(path)
        elif b"?" not in self.url or not self._rate_limited():  # only a query can carry a nonce
            self._route(path, head)

    def _read_head(self) -> _Head | None:
        """Sort the received fields into those copied as they are and those this hop reads.

        None when the head itself is refused (the refusal is set).
        """
        head = _Head([self.method + b" " + self.url + b" HTTP/1.1\r\n"])
        lines = head.lines
        for name, value in self.headers:
            lname = name.lower()
            if lname not in _SPECIAL:
                lines.append(name + b": " + value + b"\r\n")
                continue
            if not self._read_field(lname, value, head):
                return None
            if lname not in HOP_BY_HOP:
                lines.append(name + b": " + value + b"\r\n")
        if head.nominated and not head.nominated <= _CONNECTION_OPTIONS:
            # RFC 9110 7.6.1: fields the client named in Connection are for this hop only.
            drop = head.nominated - {b"host"}
            lines[1:] = [f for f in lines[1:] if f.split(b":", 1)[0].lower() not in drop]
        return head

    def _read_field(self, lname: bytes, value: bytes, head: _Head) -> bool:
        """Take what this hop needs from one field; False if it refuses the request."""
        if lname == _KEY_ID:
            if self.key_id:
                self.refuse(
                    PROBLEMS.MALFORMED_REQUEST(f"{KEY_ID} appears more than once"),
                    Outcome.BAD_REQUEST,
                    close=True,
                )
                return False
            self.key_id = value.decode("latin-1").strip().lower()
        elif lname == b"content-length":
            try:
                head.content_length = int(value)
            except ValueError:
                head.content_length = -1
        elif lname == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        elif lname == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True  # answered in start(), at the pipeline's head
        elif lname == b"connection":
            head.nominated = head.nominated or set()
            head.nominated.update(token.strip().lower() for token in value.split(b","))
        elif lname == _EHBP_KEY:
            self.ehbp = True
        elif lname == _CONTENT_TYPE:
            head.multi = head.multi or value.split(b";")[0].strip().lower() == _MULTI_TYPE
        return True

    def _frame_body(self, head: _Head) -> bool:
        """Apply the body limit and write this hop's own framing field; False if refused."""
        self.has_body = self.chunked or head.content_length != 0
        limit = self.client.plane.config.max_body_bytes
        if head.content_length > limit:
            self.refuse(
                PROBLEMS.BODY_TOO_LARGE(f"the gateway accepts at most {limit} bytes"),
                Outcome.TOO_LARGE,
                close=True,
            )
            return False
        if self.chunked:
            head.lines.append(b"transfer-encoding: chunked\r\n")
        elif head.content_length > 0:
            head.lines.append(b"content-length: %d\r\n" % head.content_length)
        return True

    def _replayable(self, head: _Head) -> bool:
        """Small enough (or chunked, checked as it arrives) to keep a copy of for a replay."""
        return self.chunked or 0 < head.content_length <= self.client.plane.config.ehbp_replay_bytes

    def _await_candidates(self, head: _Head) -> None:
        """A multi-recipient request: its candidates are in the body, routed once it is read."""
        self.multi = bytearray()
        self.multi_head = b"".join(f for f in head.lines if f.split(b":", 1)[0].lower() != _KEY_ID)
        if self._replayable(head):
            self.replay = bytearray()  # the body only: the head differs per candidate
            self.held = bytearray()
        if not self.has_body:
            self.refuse(
                PROBLEMS.MALFORMED_REQUEST("a multi-recipient request needs a body"),
                Outcome.BAD_REQUEST,
            )

    def _answer_locally(self, path: bytes) -> None:
        plane = self.client.plane
        answer = plane.local.answer(path, self.method, draining=plane.draining)
        self.local = answer.data
        self.status = answer.status
        self.outcome = Outcome.LOCAL

    def _rate_limited(self) -> bool:
        """A fresh-nonce request over its source's budget is refused (429)."""
        wait = self.client.plane.nonce_limit.wait(self.url, self.client.peer_host)
        if not wait:
            return False
        self.refuse(
            PROBLEMS.RATE_LIMITED(
                "too many fresh-nonce attestation requests from this address; "
                "retry after the Retry-After delay or use the cached document"
            ),
            Outcome.RATE_LIMITED,
            retry_after=max(1, math.ceil(wait)),
        )
        return True

    def _choose_route(self, path: bytes) -> Route:
        fleet = self.client.plane.fleet
        if self.key_id:
            return fleet.route(self.key_id)
        if self.ehbp or path.startswith(_WELL_KNOWN):
            return fleet.primary()  # key discovery, and requests sealed to the key it gave
        return fleet.any_healthy()

    def _route(self, path: bytes, head: _Head) -> None:
        """Pick the enclave and queue the head for it, or refuse before forwarding anything."""
        route = self._choose_route(path)
        if route.status is RouteStatus.UNKNOWN_KEY:
            self.refuse(
                PROBLEMS.UNKNOWN_KEY(
                    f"no enclave in this fleet holds key {self.key_id[:16]}; "
                    f"fetch {paths.FLEET} again and re-encrypt"
                ),
                Outcome.UNKNOWN_KEY,
            )
            return
        self.member = route.member
        if route.status is not RouteStatus.OK or route.member is None:
            self.refuse(
                PROBLEMS.ENCLAVE_UNAVAILABLE(
                    "the enclave holding this key is down; nothing was forwarded"
                ),
                Outcome.ENCLAVE_DOWN,
                retry_after=route.retry_after,
            )
            return
        data = b"".join(head.lines)
        self.pending.append(data)
        if (
            self.ehbp
            and not self.key_id
            and self.client.plane.config.ehbp_max_attempts > 1
            and self._replayable(head)
        ):
            self.replay = bytearray(data)
            self.held = bytearray()

    def refuse(
        self,
        problem: Problem,
        outcome: Outcome,
        *,
        close: bool = False,
        retry_after: int | None = None,
    ) -> None:
        """Answer locally; a request body that will not be forwarded ends the connection."""
        close = close or self.has_body
        self.local = problem_response(problem, close=close, retry_after=retry_after)
        self.outcome = outcome
        self.status = problem.status
        self.close_after = self.close_after or close

    def body(self, data: bytes) -> None:
        self.request_bytes += len(data)
        self.last_activity = self.client.plane.now
        if self.local is not None:
            return  # answered locally: the body is read and dropped
        if self.request_bytes > self.client.plane.config.max_body_bytes:
            if self.upstream is not None:
                self.abort("request body too large after forwarding began")
                return
            self.pending.clear()
            self.cancelled = True  # a connect in flight must not attach any more
            self.refuse(
                PROBLEMS.BODY_TOO_LARGE("request body is too large"), Outcome.TOO_LARGE, close=True
            )
            if self.running:
                self.client.write(self.local or b"")
                self.response_finished()
            return
        self.send_upstream(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        if self.multi is not None:
            self.multi += data
            self.route_multi()

    def request_complete(self) -> None:
        self.done_request = True
        if self.local is None and self.chunked:
            self.send_upstream(b"0\r\n\r\n")
        if self.multi is not None and self.local is None:  # the body ended inside the header
            self.fail_multi(
                PROBLEMS.MALFORMED_REQUEST(
                    "the multi-recipient request ended inside its candidate header"
                ),
                Outcome.BAD_REQUEST,
            )
        if self.done_response:
            self.finish()

    def send_upstream(self, data: bytes) -> None:
        replay = self.replay
        if replay is not None:
            if self.request_bytes > self.client.plane.config.ehbp_replay_bytes:
                self.replay = None  # too large to keep a copy of: it goes to one enclave
            else:
                replay.extend(data)
        upstream = self.upstream
        if upstream is None:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > _HIGH_WATER:
                self.client.pause_reading()
            return
        self.bytes_forwarded += len(data)
        upstream.write(data)

    # -- multi-recipient routing -------------------------------------------------------
    def route_multi(self) -> None:
        """Once the public header is in: order the candidates and start the first."""
        assert self.multi is not None
        try:
            parsed = MultiHeader.parse(self.multi)
        except ProtocolError as exc:
            self.fail_multi(PROBLEMS.MALFORMED_REQUEST(exc.message), Outcome.BAD_REQUEST)
            return
        if parsed is None:
            if len(self.multi) > _MAX_MULTI_HEADER:
                self.fail_multi(
                    PROBLEMS.MALFORMED_REQUEST("the multi-recipient header is too large"),
                    Outcome.BAD_REQUEST,
                )
            return
        self.multi = None
        header, _ = parsed
        fleet = self.client.plane.fleet
        known: list[tuple[int, Member, str]] = []
        down: Member | None = None
        for rank, candidate in enumerate(header.candidates):
            route = fleet.route(candidate.fingerprint)
            if route.member is None:
                continue
            if route.status is not RouteStatus.OK:
                down = down or route.member
                continue
            known.append((rank, route.member, candidate.fingerprint))
        tagged = any(name.lower() == _ROUTE_TAG for name, _ in self.headers)
        # A routing tag: keep the client's (cache-affine) order; else the least loaded first.
        known.sort(key=lambda k: (k[0],) if tagged else (k[1].in_flight, k[0]))
        self.multi_members = [(member, fp) for _, member, fp in known]
        if not self.multi_members:
            self.member = down
            if down is None:
                self.fail_multi(
                    PROBLEMS.UNKNOWN_KEY(
                        "no enclave in this fleet holds any of the request's candidate keys; "
                        f"fetch {paths.FLEET} again and re-encrypt"
                    ),
                    Outcome.UNKNOWN_KEY,
                )
            else:
                self.fail_multi(
                    PROBLEMS.ENCLAVE_UNAVAILABLE(
                        "every enclave the request names is down; nothing was forwarded"
                    ),
                    Outcome.ENCLAVE_DOWN,
                )
            return
        member, fingerprint = self.multi_members[0]
        self.member = member
        self.key_id = fingerprint
        self.pending.insert(0, self._multi_head(fingerprint))
        if self.running:
            self._dispatch(member)

    def _multi_head(self, fingerprint: str) -> bytes:
        return self.multi_head + _KEY_ID + b": " + fingerprint.encode() + b"\r\n\r\n"

    def fail_multi(self, problem: Problem, outcome: Outcome) -> None:
        """Refuse a multi-recipient request before anything was forwarded."""
        self.multi = None
        self.pending.clear()
        self.pending_size = 0
        self.replay = None
        self.held = None
        self.cancelled = True
        self.refuse(problem, outcome, close=not self.done_request)
        if self.running:
            self.client.write(self.local or b"")
            self.response_finished()

    def next_candidate(self) -> Member | None:
        """The next multi-recipient candidate to fail over to, or None."""
        tried = {m.url for m in self.tried}
        for member, fingerprint in self.multi_members:
            if member.url not in tried and member.healthy:
                self.key_id = fingerprint
                return member
        return None

    # -- starting ----------------------------------------------------------------------
    def start(self) -> None:
        """Become the active exchange of the client connection."""
        if self.running:
            return
        self.running = True
        if self.local is not None:
            self.client.write(self.local)
            self.response_finished()
            return
        client = self.client
        self.body_started = now = time.monotonic()
        self.held_back_base = client.held_back(now)
        if self.expect_continue and not self.done_request and not self.request_bytes:
            # Only now: every earlier response on this connection is complete, so the
            # interim response cannot land inside one of them (RFC 9110 10.1.1, 15.2.1).
            client.write(_CONTINUE)
        member = self.member
        if member is None:  # a multi-recipient request: routed when its header is in
            assert not self.multi_members
            return
        self._dispatch(member)

    def _dispatch(self, member: Member) -> None:
        upstream = self.client.plane.pool.take(member)
        if upstream is not None:
            self.attach(upstream)
        else:
            asyncio.get_running_loop().create_task(self.connect(member))

    async def connect(self, member: Member) -> None:
        plane = self.client.plane
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await asyncio.wait_for(
                loop.create_connection(
                    lambda: UpstreamConnection(member, plane.pool), member.host, member.port
                ),
                plane.config.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            plane.fleet.fail(member, f"connect failed: {type(exc).__name__}")
            plane.metrics.connect_failed(member.id)
            if self.client.closed or self.cancelled:
                return
            if self.multi_members and self.fail_over(FailoverReason.CONNECT_FAILED):
                return
            self.refuse(
                PROBLEMS.ENCLAVE_UNAVAILABLE("could not reach the enclave; nothing was forwarded"),
                Outcome.ENCLAVE_DOWN,
                retry_after=1,
                close=not self.done_request,
            )
            self.client.write(self.local or b"")
            self.response_finished()
            return
        if self.client.closed or self.cancelled:
            plane.pool.put(upstream, plane.now)
            return
        self.attach(upstream)

    def attach(self, upstream: UpstreamConnection) -> None:
        self.upstream = upstream
        upstream.exchange = self
        assert self.member is not None
        self.member.in_flight += 1
        self.client.plane.active_streams += 1
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_size = 0
        self.bytes_forwarded += len(data)
        upstream.write(data)
        self.client.resume_reading()

    # -- response side -----------------------------------------------------------------
    def upstream_data(self, data: bytes) -> None:
        self.last_activity = self.client.plane.now
        held = self.held
        if held is None:
            self.response_bytes += len(data)
            self.client.write(data)
            return
        # A replayable request: the response is held until its head shows it cannot be a
        # refusal before processing (status_known); any other answer is released then.
        held.extend(data)
        if len(held) > _MAX_HELD_RESPONSE:
            self.release()

    def status_known(self, status: int) -> None:
        """The enclave's response head is parsed (its bytes are already in ``held``)."""
        self.status = status
        if self.held is not None:
            refusals = _MULTI_REFUSALS if self.multi_members else _EHBP_REFUSALS
            if status not in refusals:
                self.release()

    def release(self) -> None:
        """Pass the held response on; from now on this request cannot be replayed."""
        held = self.held or b""
        self.held = None
        self.replay = None
        self.response_bytes += len(held)
        self.client.write(bytes(held))

    def replay_elsewhere(self) -> bool:
        """The whole held response is in: replay the request if it was a key-config refusal.

        That 422 is the enclave saying none of its keys opens the first frame, sent before
        anything reached the engine, so another enclave may hold the key the client used.
        False when the held response goes to the client instead.
        """
        held, member = self.held, self.member
        assert held is not None and member is not None
        plane = self.client.plane
        if self.multi_members:
            if not _is_refusal_before_opening(bytes(held), self.status, _MULTI_REFUSALS):
                self.release()
                return False
            return self.fail_over(FailoverReason.refused(self.status))
        self.tried.append(member)
        candidate = None
        if (
            self.replay is not None
            and len(self.tried) < plane.config.ehbp_max_attempts
            and _is_key_config_refusal(bytes(held), self.status)
        ):
            candidate = plane.fleet.fallback(self.tried)
        if candidate is None or self.replay is None:
            self.release()
            return False
        log.info(
            "ehbp request replayed on another enclave",
            extra=fields(
                request_id=plane.request_id(self),
                enclave_id=member.id,
                peer=candidate.url,
                attempts=len(self.tried) + 1,
            ),
        )
        self.detach(reuse=self.done_request)
        self._send_copy_to(candidate, [bytes(self.replay)])
        return True

    def fail_over(self, reason: FailoverReason) -> bool:
        """Send a multi-recipient request's copy to its next candidate (no client round trip).

        Only for answers given before the enclave opened the request: a connect failure or
        a plaintext 421/422/503. False (the caller answers the client) when no candidate is
        left or the copy was not kept.
        """
        member = self.member
        assert member is not None
        plane = self.client.plane
        self.tried.append(member)
        candidate = self.next_candidate() if self.replay is not None else None
        if candidate is None or self.replay is None:
            if self.held is not None and self.upstream is not None:
                self.release()
            return False
        log.info(
            "multi-recipient request failed over",
            extra=fields(
                request_id=plane.request_id(self),
                enclave_id=member.id,
                peer=candidate.url,
                outcome=reason,
                attempts=len(self.tried) + 1,
            ),
        )
        plane.metrics.failed_over(reason)
        self.detach(reuse=False)  # it may hold unread body bytes: never reused
        self._send_copy_to(candidate, [self._multi_head(self.key_id), bytes(self.replay)])
        return True

    def _send_copy_to(self, candidate: Member, copy: list[bytes]) -> None:
        """Start over on ``candidate`` with the kept ``copy`` of the request."""
        self.member = candidate
        self.status = 0
        self.held = bytearray()
        self.pending = copy
        self.pending_size = len(self.replay or b"")
        self._dispatch(candidate)

    def upstream_complete(self) -> None:
        if self.held is not None and self.replay_elsewhere():
            return
        self.done_response = True
        if self.outcome is None:
            self.outcome = Outcome.OK
        if not self.done_request:
            # The enclave answered before the whole body arrived: neither connection can
            # be reused.
            self.close_after = True
            if self.upstream is not None:
                self.upstream.keep_alive = False
            self.detach(reuse=False)
            self.response_finished()
            return
        self.finish()

    def upstream_failed(self, reason: str) -> None:
        if self.done_response:
            return
        if self.member is not None:
            self.client.plane.fleet.fail(self.member, reason)
        self.detach(reuse=False)
        if self.response_bytes == 0 and not self.client.closed:
            self.refuse(
                PROBLEMS.FORWARDING_FAILED(
                    f"{reason} after the request was forwarded; it may have been processed"
                ),
                Outcome.FORWARDING_FAILED,
                close=True,
            )
            self.client.write(self.local or b"")
            self.response_finished()
        else:
            self.outcome = Outcome.STREAM_BROKEN
            self.response_finished()
            self.client.abort()  # the client sees a truncated stream and fails closed

    def abort(self, reason: str) -> None:
        self.outcome = Outcome.ABORTED
        plane = self.client.plane
        enclave = self.member.id if self.member is not None else "-"
        log.info(
            f"exchange aborted: {reason}",
            extra=fields(request_id=plane.request_id(self), enclave_id=enclave),
        )
        self.detach(reuse=False)
        self.response_finished()
        self.client.abort()

    def detach(self, *, reuse: bool) -> None:
        upstream = self.upstream
        if upstream is None:
            return
        self.upstream = None
        upstream.exchange = None
        if self.member is not None:
            self.member.in_flight -= 1
        plane = self.client.plane
        plane.active_streams -= 1
        if reuse and upstream.keep_alive and not upstream.closed:
            plane.pool.put(upstream, plane.now)
        else:
            upstream.close()

    def finish(self) -> None:
        if self.done_request and self.done_response:
            self.detach(reuse=True)
            self.response_finished()

    def response_finished(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.done_response = True
        self.client.plane.record(self)
        self.client.exchange_finished(self)


class ClientConnection(asyncio.Protocol):
    """A downstream connection: parses requests and runs their exchanges in order."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[Exchange] = collections.deque()
        self.parsing: Exchange | None = None
        self.head_bytes = 0
        self.in_head = False
        self.closed = False
        self.failed = False  # a request could not be read: parse nothing more
        self.reading_paused = False
        self.paused_at = 0.0
        self.paused_total = 0.0  # seconds reading was paused by the gateway, before paused_at
        # When the next request head must be complete (header_timeout is a total deadline,
        # not an idle timeout: dripping bytes does not extend it).
        self.head_deadline = time.monotonic() + plane.config.header_timeout

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        plane = self.plane
        if len(plane.connections) >= plane.config.max_connections:
            self.transport.write(
                problem_response(
                    PROBLEMS.OVERLOADED("too many connections"), close=True, retry_after=1
                )
            )
            self.transport.close()
            self.closed = True
            plane.metrics.connection_rejected()
            return
        plane.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.plane.connections.discard(self)
        for exchange in self.queue:
            if exchange.running and not exchange.finished:
                exchange.outcome = exchange.outcome or Outcome.CLIENT_DISCONNECTED
                exchange.cancelled = True
                exchange.detach(reuse=False)  # client went away: cancel the upstream hop
                exchange.finished = True
                self.plane.record(exchange)
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        limit = self.plane.config.max_header_bytes
        while data and not self.failed:  # nothing after an unreadable request is parsed
            if self.parsing is None or self.in_head:
                # Only bytes that can still be head count against its limit: what follows
                # a complete head in the same read is its body (or the next request).
                room = limit - self.head_bytes
                if room <= 0:
                    self._reject(PROBLEMS.HEADERS_TOO_LARGE("request head is too large"))
                    return
                piece, data = data[:room], data[room:]
                self.head_bytes += len(piece)
            else:
                piece, data = data, b""
            try:
                self.parser.feed_data(piece)
            except httptools.HttpParserUpgrade:
                # prepare() refused the request; what follows it is not HTTP/1.1: it is read
                # and dropped until the refusal is sent and the connection closes.
                self.failed = True
            except httptools.HttpParserCallbackError as exc:
                # One of our callbacks raised: a gateway bug, not the client's input. Say so
                # (500, not a misleading 400) and log the real cause for the operator.
                log.error("parser callback failed", exc_info=exc.__context__ or exc)
                self._reject(PROBLEMS.INTERNAL_ERROR("the gateway failed to handle this request"))
            except httptools.HttpParserError as exc:
                self._reject(PROBLEMS.MALFORMED_REQUEST(f"malformed HTTP request: {exc}"))

    def pause_writing(self) -> None:
        head = self.queue[0] if self.queue else None
        if head is not None and head.upstream is not None and head.upstream.transport is not None:
            head.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        head = self.queue[0] if self.queue else None
        if head is not None and head.upstream is not None and head.upstream.transport is not None:
            head.upstream.transport.resume_reading()

    # -- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.queue:  # pipelined behind a response in flight: its own deadline from now
            self.head_deadline = time.monotonic() + self.plane.config.header_timeout
        self.parsing = Exchange(self)
        self.in_head = True
        self.queue.append(self.parsing)

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.parsing.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        self.in_head = False
        self.head_bytes = 0
        exchange.prepare(self.parser)
        if not self.parser.should_keep_alive():
            exchange.close_after = True
        if self.queue and exchange is self.queue[0]:
            exchange.start()

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.body(body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        self.parsing = None
        if exchange is not None:
            exchange.request_complete()

    # -- exchange bookkeeping -------------------------------------------------------------
    def exchange_finished(self, exchange: Exchange) -> None:
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        if exchange.close_after:
            self.close()
            return
        if self.queue and self.queue[0].prepared:
            self.queue[0].start()  # a pipelined request waiting its turn
        elif not self.queue:
            if self.plane.draining:
                self.close()
            elif not self.in_head:  # idle keep-alive: the next head is due from now
                self.head_deadline = time.monotonic() + self.plane.config.header_timeout

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.paused_at = time.monotonic()
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.paused_total += time.monotonic() - self.paused_at
            if self.parsing is not None:  # the client was not idle while held back
                self.parsing.last_activity = self.plane.now
            self.transport.resume_reading()

    def held_back(self, now: float) -> float:
        """Seconds the gateway has kept this connection from reading (backpressure)."""
        if self.reading_paused:
            return self.paused_total + now - self.paused_at
        return self.paused_total

    def peer_host(self) -> str:
        """The client's address, as the per-source limits count it."""
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "-"

    def _reject(self, problem: Problem, outcome: Outcome = Outcome.BAD_REQUEST) -> None:
        """The request being read cannot go on: answer ``problem`` in its turn, then close.

        The responses to requests pipelined before it are still delivered first; nothing
        after it is parsed. If it was already being forwarded, that upstream hop is cut.
        """
        self.failed = True
        self.in_head = False
        # Keep reading (and dropping) what the client still sends: closing a socket with
        # unread data resets it, and the client could lose the answer.
        self.resume_reading()
        exchange = self.parsing
        self.parsing = None
        if exchange is None or exchange.finished:
            exchange = Exchange(self)
            self.queue.append(exchange)
        exchange.prepared = True
        exchange.cancelled = True  # a connect in flight must not attach any more
        exchange.pending.clear()
        exchange.pending_size = 0
        if exchange.upstream is not None:
            if exchange.response_bytes:  # its response already started: all we can do is cut
                exchange.abort(f"request failed after the response began: {problem.detail}")
                return
            exchange.detach(reuse=False)
        exchange.refuse(problem, outcome, close=True)
        if exchange.running:
            self.write(exchange.local or b"")
            exchange.response_finished()
        elif self.queue[0] is exchange:
            exchange.start()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()

    def check_timeouts(self, now: float) -> None:
        """Called by the gateway's sweep about twice a second."""
        if self.closed:
            return
        config = self.plane.config
        if (self.in_head or not self.queue) and not self.failed and now > self.head_deadline:
            if not (self.in_head or self.head_bytes):
                self.close()  # idle keep-alive connection
                return
            self._reject(
                PROBLEMS.REQUEST_TIMEOUT(
                    f"the request head was not complete within {config.header_timeout:g} "
                    "seconds; send the whole head at once"
                ),
                Outcome.TIMEOUT,
            )
        head = self.queue[0] if self.queue else None
        if head is None or not head.running or head.finished:
            return
        if not head.done_request:
            problem = self._body_too_slow(head, now)
            if problem is not None:
                self._reject(problem, Outcome.TIMEOUT)
        elif head.upstream is not None and now - head.last_activity > config.upstream_idle_timeout:
            head.abort("enclave stopped responding")

    def _body_too_slow(self, exchange: Exchange, now: float) -> Problem | None:
        """Why the body of ``exchange`` is overdue, or None. Time held back is not counted."""
        config = self.plane.config
        if not self.reading_paused and now - exchange.last_activity > config.body_timeout:
            return PROBLEMS.REQUEST_TIMEOUT(
                f"no request body data for {config.body_timeout:g} seconds"
            )
        if config.body_min_rate <= 0:
            return None
        active = now - exchange.body_started - (self.held_back(now) - exchange.held_back_base)
        if active > config.body_timeout + exchange.request_bytes / config.body_min_rate:
            return PROBLEMS.REQUEST_TIMEOUT(
                f"the request body is arriving slower than {config.body_min_rate:g} bytes/s"
            )
        return None


def _problem_fields(response: bytes) -> tuple[dict[bytes, bytes], bytes] | None:
    """The header fields (first of each name) and the body of a complete plaintext problem
    response, or None if it is not one (streamed bodies are never refusals)."""
    head, separator, body = response.partition(b"\r\n\r\n")
    if not separator:
        return None
    found: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        found.setdefault(name.strip().lower(), value.strip())
    if b"transfer-encoding" in found:
        return None
    if found.get(b"content-type", b"").split(b";")[0].strip().lower() != _PROBLEM_TYPE:
        return None
    return found, body


def _is_refusal_before_opening(response: bytes, status: int, statuses: frozenset[int]) -> bool:
    """Is ``response`` (complete, raw; ``status`` as parsed) an enclave's plaintext problem
    with one of ``statuses``?

    Every answer an enclave gives after opening a request is a sealed 200, so a plaintext
    problem means the request was refused before it was opened (and never processed).
    """
    parsed = _problem_fields(response) if status in statuses else None
    if parsed is None:
        return False
    try:
        Problem.from_bytes(parsed[1])
    except ProtocolError:
        return False
    return True


def _is_key_config_refusal(response: bytes, status: int) -> bool:
    """Is ``response`` (complete, raw; ``status`` as parsed) an enclave's plaintext EHBP
    key-config 422?

    A sealed response carries a response nonce: it came from past the point where the
    enclave opened the request, so it is never taken for a refusal.
    """
    parsed = _problem_fields(response) if status in _EHBP_REFUSALS else None
    if parsed is None or _EHBP_NONCE in parsed[0]:
        return False
    try:
        return Problem.from_bytes(parsed[1]).is_(PROBLEMS.KEY_CONFIG)
    except ProtocolError:
        return False
