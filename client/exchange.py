"""The sans-IO half of the sealing transports: one request's attempts, as steps.

Both modes - native chunked OHTTP (:mod:`.native`) and EHBP (:mod:`.transport`) - make
the same moves and differ only in how they seal and open. An :class:`Exchange` is one
caller's request; the blocking and the async drivers (:mod:`.drivers`) do nothing but
the I/O between its steps, so the rules below exist once:

1. ``prepare()``: seal the next attempt to a verified enclave and give the request to
   send (blocking: choosing an enclave may refresh the fleet); raises the last error
   once ``max_attempts`` are spent;
2. ``on_response_head(status, headers)``: a sealed answer (True), a plaintext refusal
   (False), or a forgery (raises :class:`ResponseIntegrityError`);
3. a refusal: ``on_refusal(status, headers, body)`` (the body's first
   :data:`MAX_ERROR_BODY` bytes) says how to retry or raises; the driver waits
   ``retry.pause`` (so the gateway's directory can catch up), ``apply(retry)`` tells the
   fleet (blocking), and it goes back to 1;
4. a sealed answer: ``open(headers)`` gives an :class:`Opening`; the driver feeds it
   chunks while it ``wants_more`` (the head of an inner response, a small problem read
   whole); if the body ended there, ``on_complete()`` may still ask for a re-sealed
   request (back to 1);
5. ``response(outer, stream)``: what the caller sees; ``stream`` feeds the rest of the
   body through the same :class:`Opening`.

Recovery re-seals a *new* request from the buffered plaintext, and only where the
enclave cannot have processed it: 421 (unknown key: the directory changed), 422 (key
rotated out: re-attest), 503 before forwarding (another enclave).
"""

from __future__ import annotations

import dataclasses
import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Generic, TypeVar

from sealgate.protocol.public.errors import MalformedProblem
from sealgate.protocol.public.headers import VERIFIED_ENCLAVE
from sealgate.protocol.public.keyconfig import KeyConfig
from sealgate.protocol.public.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.public.problem import PROBLEMS, Problem

from .errors import (
    ENCLAVE_ERROR_EXTENSION,
    EnclaveError,
    ForwardingFailed,
    GatewayError,
    RequestNotSent,
)
from .fleet import Fleet, VerifiedEnclave
from .models import Route, Router

__all__ = [
    "ENCLAVE_HEADER",
    "MAX_ERROR_BODY",
    "Action",
    "Attempt",
    "Exchange",
    "Opening",
    "ProblemCapture",
    "Retry",
    "SealingCore",
]

#: Added by the transport (not by any server) to opened responses: who served it.
ENCLAVE_HEADER = VERIFIED_ENCLAVE
#: The longest wait before re-sealing after a key refusal (421/422).
_MAX_KEY_PAUSE = 2.0
#: How much of a plaintext refusal, or of a sealed problem document, is read.
MAX_ERROR_BODY = 64 * 1024


class Action(enum.Enum):
    """Why another attempt follows, and what the fleet learns from it."""

    REFRESH = "refresh"  # 421 unknown key: the gateway's directory changed
    ROTATED = "rotated"  # 422 key config: the enclave rotated its key; re-attest it
    DOWN = "down"  # 503 enclave unavailable before forwarding: another enclave
    BUSY = "busy"  # 503 overloaded, refused before decryption: another enclave
    STALE = "stale"  # sealed 400 stale request: re-seal with the enclave's clock


@dataclass(frozen=True, slots=True)
class Retry:
    """What to do before the next attempt (``delay``: the server's Retry-After; ``lagged``:
    how many key refusals this request had before this one)."""

    action: Action
    delay: float = 0.0
    lagged: int = 0

    @property
    def pause(self) -> float:
        """Seconds to wait first: the gateway's directory lags an enclave's rotation by up to
        a poll (1 s by default), so each further key refusal waits longer: 0.15, 0.45, 1.35 s."""
        if self.action not in (Action.REFRESH, Action.ROTATED):
            return 0.0
        return min(0.15 * float(3**self.lagged), _MAX_KEY_PAUSE)


@dataclass(slots=True)
class Attempt:
    """One sealed request: the enclave and key it is sealed to, and its ciphertext."""

    enclave: VerifiedEnclave
    key: KeyConfig
    wire: bytes

    def served_by(self) -> tuple[str, str]:
        """The :data:`ENCLAVE_HEADER` field naming the enclave that answered."""
        return ENCLAVE_HEADER, f"{self.enclave.id}; key={self.key.fingerprint}"


class ProblemCapture:
    """Keeps a sealed error body (up to a cap) and, once it authenticated to its end, parses it."""

    __slots__ = ("_data", "_over", "error")

    def __init__(self, error: EnclaveError) -> None:
        self.error = error
        self._data = bytearray()
        self._over = False

    def feed(self, plaintext: bytes) -> None:
        if self._over:
            return
        self._data += plaintext
        if len(self._data) > MAX_ERROR_BODY:
            self._over = True
            self._data = bytearray()

    def finish(self) -> None:
        if self._over or not self._data:
            return
        try:
            self.error.problem = Problem.from_bytes(bytes(self._data))
        except MalformedProblem:
            self.error.problem = None


class Opening(ABC):
    """Sans-IO: a sealed response body's bytes in, authenticated plaintext pieces out.

    A mode implements :meth:`push` and :meth:`finish` (raising
    :class:`ResponseIntegrityError`). Pieces opened while the driver reads ahead wait in
    ``ready``; every piece handed to the caller also goes to ``capture`` when the answer
    is a problem document, which is parsed once the body authenticated to its end.
    """

    def __init__(self) -> None:
        self.ready: list[bytes] = []
        self.capture: ProblemCapture | None = None
        #: The outer body ended and :meth:`finish` accepted it.
        self.finished = False

    @abstractmethod
    def push(self, chunk: bytes) -> list[bytes]:
        """Plaintext pieces (never empty ones) opened from the next chunk of the body."""

    @abstractmethod
    def finish(self) -> list[bytes]:
        """The last pieces, once the body ended; raises if it ended early."""

    @property
    def wants_more(self) -> bool:
        """Whether the driver reads on before handing the response out."""
        return False

    def read_ahead(self, chunk: bytes | None) -> None:
        """Open a chunk (None: the body ended) before the response is handed out."""
        if chunk is None:
            self.ready += self.finish()
            self.finished = True
        else:
            self.ready += self.push(chunk)

    def release(self) -> list[bytes]:
        """The pieces opened while reading ahead, handed to the caller now."""
        ready, self.ready = self.ready, []
        return self._handed(ready)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Pieces of the next chunk, for the caller."""
        pieces = self.push(chunk)
        if self.capture is not None:  # inline: this runs once a chunk of every stream
            self._handed(pieces)
        return pieces

    def end(self) -> list[bytes]:
        """The last pieces for the caller once the body ended; completes the capture."""
        out = [] if self.finished else self._handed(self.finish())
        self.finished = True
        if self.capture is not None:
            self.capture.finish()
        return out

    def _handed(self, pieces: list[bytes]) -> list[bytes]:
        if self.capture is not None:
            for piece in pieces:
                self.capture.feed(piece)
        return pieces


A = TypeVar("A", bound=Attempt)


class SealingCore:
    """What a transport keeps across requests: the fleet, the limits, the mode's settings."""

    #: The mode's :class:`Exchange` class, made once per request.
    exchange_class: type[Exchange[Any]]

    def __init__(
        self,
        fleet: Fleet,
        *,
        max_attempts: int = 4,
        max_body: int = 64 * 1024 * 1024,
        router: Router | None = None,
    ) -> None:
        self.fleet = fleet
        self.max_attempts = max(1, max_attempts)
        self.max_body = max_body
        #: What a request is routed by (its model; with cache affinity, its routing tag).
        self.router = router or Router()

    def check_size(self, body: bytes) -> None:
        if len(body) > self.max_body:
            raise RequestNotSent(f"request body of {len(body)} bytes exceeds max_body")

    def is_local(self, method: str, path: str) -> bool:
        """Whether the transport may answer this request itself (without the fleet)."""
        return False

    def local_response(self, http: ModuleType, method: str, path: str) -> Any:
        """The locally made answer, or None to send the request (blocking: may use the fleet)."""
        return None

    def exchange(self, http: ModuleType, request: Any, body: bytes) -> Exchange[Any]:
        """A new exchange for ``request`` with its read ``body``."""
        return self.exchange_class(self, http, request, body)


class Exchange(ABC, Generic[A]):
    """One caller's request through its attempts, without I/O (see the module's steps).

    ``http`` is the module (httpx or httpx2) whose request and response objects are made.
    """

    def __init__(self, core: SealingCore, http: ModuleType, request: Any, body: bytes) -> None:
        core.check_size(body)
        self.core = core
        self.http = http
        self.request = request
        self.body = body
        #: Enclaves not to choose again for this request.
        self.exclude: set[str] = set()
        #: What to raise if no attempt is left.
        self.last: GatewayError | None = None
        self.attempts = 0
        #: 421/422 refusals so far: each waits longer for the gateway's directory.
        self.key_refusals = 0
        self._route: Route | None = None
        self._attempt: A | None = None
        self._opening: Opening | None = None

    @property
    def route(self) -> Route:
        """The request's route, derived once (blocking: it may parse a large JSON body)."""
        if self._route is None:
            request = self.request
            self._route = self.core.router.route(request.method, request.url.path, self.body)
        return self._route

    @property
    def attempt(self) -> A:
        assert self._attempt is not None, "prepare() first"
        return self._attempt

    @property
    def opening(self) -> Opening:
        assert self._opening is not None, "open() first"
        return self._opening

    def prepare(self) -> Any:
        """The next request to send (blocking); raises the last error when none is left."""
        if self.attempts >= self.core.max_attempts:
            assert self.last is not None
            raise self.last
        self.attempts += 1
        self._opening = None
        self._attempt = self.seal()
        return self.outgoing(self._attempt)

    @abstractmethod
    def seal(self) -> A:
        """Choose an enclave not in ``exclude`` and seal the request to it (blocking)."""

    @abstractmethod
    def outgoing(self, attempt: A) -> Any:
        """The request as it goes to the gateway."""

    @abstractmethod
    def on_response_head(self, status: int, headers: Any) -> bool:
        """A sealed answer (True), a plaintext refusal (False), or a forgery (raises)."""

    def open(self, headers: Any) -> Opening:
        """Start opening a sealed answer with these outer headers."""
        self._opening = self.opener(headers)
        return self._opening

    @abstractmethod
    def opener(self, headers: Any) -> Opening:
        """The mode's :class:`Opening` for a sealed answer with these outer headers."""

    def on_complete(self) -> Retry | None:
        """A sealed answer read to its end while reading ahead: a retry, or None to hand it out."""
        return None

    @abstractmethod
    def response(self, outer: Any, stream: Any) -> Any:
        """The response the caller sees; ``stream`` yields the rest of the opened body."""

    def on_refusal(self, status: int, headers: Any, body: bytes) -> Retry:
        """Classify a plaintext refusal; return how to retry or raise."""
        problem: Problem | None = None
        if _media_type(headers.get("content-type", "")) == PROBLEM_MEDIA_TYPE:
            try:
                problem = Problem.from_bytes(body)
            except MalformedProblem:
                problem = None
        retry = self._retry_for(status, problem, _retry_after(headers))
        if retry is None:
            raise _refused(status, problem)
        retry = self.adjust(retry)
        if retry.action in (Action.REFRESH, Action.ROTATED):
            retry = dataclasses.replace(retry, lagged=self.key_refusals)
            self.key_refusals += 1
        self.last = GatewayError(
            status,
            None,
            f"gave up after {self.core.max_attempts} attempts; the last answer was {status} "
            f"({retry.action.value}): no verified enclave could take the request. Nothing was "
            "processed twice: every retry was a request the enclave had refused or never received",
        )
        return retry

    def _retry_for(self, status: int, problem: Problem | None, retry_after: float) -> Retry | None:
        if problem is None:
            return None
        enclave = self.attempt.enclave.id
        if status == 421 and problem.is_(PROBLEMS.UNKNOWN_KEY):
            return Retry(Action.REFRESH)
        if status == 422 and problem.is_(PROBLEMS.KEY_CONFIG):
            return Retry(Action.ROTATED)
        if status == 503 and problem.is_(PROBLEMS.ENCLAVE_UNAVAILABLE):
            self.exclude.add(enclave)
            return Retry(Action.DOWN, retry_after)
        if status == 503 and problem.is_(PROBLEMS.OVERLOADED):
            self.exclude.add(enclave)  # refused before decryption: safe elsewhere
            return Retry(Action.BUSY, retry_after)
        if status == 502 and problem.is_(PROBLEMS.FORWARDING_FAILED):
            raise ForwardingFailed(
                status,
                problem,
                f"the gateway lost enclave {enclave} after forwarding the sealed "
                "request; it may have been processed, so sealgate does not re-send it",
            )
        return None

    def adjust(self, retry: Retry) -> Retry:
        """A mode's correction of a refusal's retry (the multi-recipient rules)."""
        return retry

    def apply(self, retry: Retry) -> None:
        """Update the fleet for a retry (blocking; the async driver runs it in a thread)."""
        attempt = self.attempt
        if retry.action is Action.REFRESH:
            self.core.fleet.key_unknown()
        elif retry.action is Action.ROTATED:
            self.core.fleet.key_rotated(attempt.key, attempt.enclave.id)
        elif retry.action in (Action.DOWN, Action.BUSY):
            self.core.fleet.enclave_down(attempt.enclave.id, retry.delay or 1.0)

    def hand_out(
        self, outer: Any, status: int, headers: list[tuple[str, str]], problem: bool, stream: Any
    ) -> Any:
        """The caller's response: an error status carries an :class:`EnclaveError` in its
        extensions, whose problem document (``problem``: the body is one) is filled in
        once the body authenticated to its end."""
        extensions = dict(outer.extensions)
        if status >= 400:
            error = EnclaveError(status, self.attempt.enclave.id)
            extensions[ENCLAVE_ERROR_EXTENSION] = error
            if problem:
                self.opening.capture = ProblemCapture(error)
        headers.append(self.attempt.served_by())
        return self.http.Response(status, headers=headers, stream=stream, extensions=extensions)


def _media_type(value: str) -> str:
    return value.split(";", maxsplit=1)[0].strip()


def _retry_after(headers: Any) -> float:
    try:
        return float(headers.get("retry-after", "1"))
    except ValueError:
        return 1.0


def _refused(status: int, problem: Problem | None) -> GatewayError:
    what = ""
    if problem is not None:
        what = f"{problem.title}: {problem.detail}" if problem.detail else problem.title
    return GatewayError(
        status,
        problem,
        f"unauthenticated {status} from the gateway path (not enclave output)"
        + (f": {what}" if what else ""),
    )
