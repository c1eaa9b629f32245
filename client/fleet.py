"""The client's view of a fleet: fetched from the gateway, verified here, enclave chosen per request.

The gateway is not trusted. It lists enclaves with their published attestation
documents; every document is verified against the policy (in parallel, cached by
document until its signed age runs out), and only keys bound in verified evidence
are ever used. The gateway's load hint only chooses among verified enclaves.

Everything the gateway sends is hostile input: bodies are size-capped while they
stream, every directory field is type- and range-checked, and an entry that fails
in any way (even with an unexpected exception) is refused on its own, with a record,
while the other enclaves stay usable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import re
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from sealgate.protocol.evidence.attestation import (
    MAX_DOCUMENT_BYTES,
    AttestationDocument,
    parse_time_nonce,
)
from sealgate.protocol.evidence.binding import MAX_NONCE_SIZE
from sealgate.protocol.public.errors import ProtocolError
from sealgate.protocol.public.headers import KEY_ID
from sealgate.protocol.public.keyconfig import KeyConfig
from sealgate.protocol.public.paths import ATTESTATION, FLEET
from sealgate.protocol.public.suites import KEM_X25519_HKDF_SHA256

from .affinity import affine_choice, rendezvous_order
from .errors import (
    EvidenceFormatError,
    FleetUnavailable,
    NoVerifiedEnclave,
    PostQuantumModeRequired,
    SealgateError,
    VerificationError,
)
from .models import UnknownModel
from .policy import Policy
from .verification import Verification
from .verify import VerifiedDocument, verify_document

__all__ = [
    "Fleet",
    "VerifiedEnclave",
    "FLEET_PATH",
    "ATTESTATION_PATH",
    "gateway_root",
    "get_capped",
    "BodyRefused",
    "unexpected_failure",
]

log = logging.getLogger("sealgate.client")

FLEET_PATH = FLEET
ATTESTATION_PATH = ATTESTATION
FLEET_FORMAT = "sealgate-fleet/v1"
_MAX_FLEET_BYTES = 16 * 1024 * 1024
_MAX_ENCLAVES = 1024
_MAX_KEYS = 64
_MAX_ID = 64
_MAX_LOAD = 1e9
_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{_MAX_ID}}}\Z")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}\Z")
#: Upper bound on one download from the gateway, however slowly it trickles bytes.
_DOWNLOAD_SECONDS = 60.0


def gateway_root(url: str) -> tuple[str, str | None]:
    """``url`` without a trailing ``/v1``, and a note for the user when one was dropped.

    A sealgate gateway serves its fleet directory at its root; the SDK adds ``/v1`` itself
    for OpenAI calls. ``https://api.example.com/v1`` (the usual OpenAI base URL) would
    otherwise fetch ``/v1/.well-known/sealgate-fleet`` and be refused by the gateway.
    """
    url = url.rstrip("/")
    parts = urlsplit(url)
    if not parts.path.endswith("/v1"):
        return url, None
    root = urlunsplit(parts._replace(path=parts.path[: -len("/v1")])).rstrip("/")
    return root, (
        f"the gateway URL {url} ends in /v1: drop it. A sealgate gateway URL is the server's "
        f"root (sealgate adds /v1 for OpenAI calls itself); using {root}"
    )


@dataclass(frozen=True, slots=True)
class VerifiedEnclave:
    """An enclave whose evidence verified, with the keys it binds (current key first).

    ``evidence_at`` is when that evidence was produced: its signed time, or when this
    client's fresh nonce was answered (``-inf`` when unknown).
    """

    id: str
    keys: tuple[KeyConfig, ...]
    verification: Verification
    load: float
    healthy: bool
    expires_at: float
    evidence_at: float = float("-inf")

    @property
    def models(self) -> tuple[str, ...] | None:
        """The models this enclave is trusted with (None: any; see :class:`Verification`)."""
        return self.verification.models

    def serves(self, model: str | None) -> bool:
        return model is None or self.models is None or model in self.models


class BodyRefused(SealgateError):
    """A server's answer was refused before it was parsed (too large, too slow)."""


class _BadEntry(Exception):
    """A directory entry that is malformed: refused on its own."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(detail)
        self.name = name
        self.detail = detail

    def refusal(self) -> VerificationError:
        record = Verification(subject=f"enclave {self.name}")
        return record.fail("directory entry", self.detail, error=EvidenceFormatError)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One validated entry of the gateway's fleet directory."""

    id: str
    keys: tuple[str, ...]
    healthy: bool
    load: float
    document: AttestationDocument

    @classmethod
    def from_dict(cls, raw: object, index: int) -> _Entry:
        """Validate one parsed entry; raise :class:`_BadEntry` naming what is wrong."""
        name = f"#{index}"
        if not isinstance(raw, dict):
            raise _BadEntry(name, f"entry {name} is a JSON {type(raw).__name__}, not an object")
        entry_id = raw.get("id")
        if not isinstance(entry_id, str) or not _ID.match(entry_id):
            raise _BadEntry(name, f"entry {name}: 'id' must be 1-{_MAX_ID} of [A-Za-z0-9._:-]")
        name = entry_id
        keys = raw.get("keys")
        if not isinstance(keys, list) or len(keys) > _MAX_KEYS:
            raise _BadEntry(name, f"'keys' must be a list of at most {_MAX_KEYS} fingerprints")
        if not all(isinstance(k, str) and _FINGERPRINT.match(k) for k in keys):
            raise _BadEntry(name, "'keys' must hold key fingerprints (16 lowercase hex digits)")
        healthy = raw.get("healthy")
        if not isinstance(healthy, bool):
            raise _BadEntry(name, "'healthy' must be true or false")
        load = raw.get("load")
        if (
            isinstance(load, bool)
            or not isinstance(load, int | float)
            or not math.isfinite(load)
            or not 0 <= load <= _MAX_LOAD
        ):
            raise _BadEntry(name, f"'load' must be a finite number from 0 to {_MAX_LOAD:g}")
        in_flight = raw.get("in_flight", 0)
        if isinstance(in_flight, bool) or not isinstance(in_flight, int) or in_flight < 0:
            raise _BadEntry(name, "'in_flight' must be a non-negative integer")
        try:
            document = AttestationDocument.from_dict(raw.get("attestation"))
        except ProtocolError as exc:
            raise _BadEntry(name, f"attestation document: {exc.message}") from None
        if len(document.nonce) > MAX_NONCE_SIZE:
            raise _BadEntry(name, f"the document's nonce is over {MAX_NONCE_SIZE} bytes")
        size = len(document.to_json())
        if size > MAX_DOCUMENT_BYTES:
            raise _BadEntry(name, f"the attestation document is {size} bytes, over the limit")
        return cls(entry_id, tuple(keys), healthy, float(load), document)


def get_capped(
    http: httpx.Client,
    url: str,
    limit: int,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytearray]:
    """GET ``url``: its status and, for a 200, its body, refused as soon as it exceeds ``limit``.

    A Content-Length above the limit is refused before any of the body is read, and
    without one the running total is checked after every chunk: a hostile server cannot
    make the client buffer more than ``limit`` bytes (and a little).
    """
    deadline = time.monotonic() + _DOWNLOAD_SECONDS
    # Ask for no content coding, so the count is of what crossed the network.
    merged = {"Accept-Encoding": "identity", **(headers or {})}
    with http.stream("GET", url, params=params, headers=merged) as response:
        if response.status_code != 200:
            return response.status_code, bytearray()
        declared = response.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise BodyRefused(f"it sent an invalid Content-Length {declared[:40]!r}")
            if int(declared) > limit:
                raise BodyRefused(f"it announced {int(declared)} bytes; the limit is {limit}")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise BodyRefused(f"it sent more than the {limit}-byte limit")
            if time.monotonic() > deadline:
                raise BodyRefused(f"it took over {_DOWNLOAD_SECONDS:.0f}s")
        return 200, body


def _parse_directory(body: bytearray) -> list[object]:
    """The entries of a fleet directory, after checking its envelope."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FleetUnavailable(f"the fleet directory is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict) or parsed.get("format") != FLEET_FORMAT:
        raise FleetUnavailable(f"the fleet directory is not a {FLEET_FORMAT} object")
    entries = parsed.get("enclaves")
    if not isinstance(entries, list):
        raise FleetUnavailable("the fleet directory's 'enclaves' is not a list")
    if len(entries) > _MAX_ENCLAVES:
        raise FleetUnavailable(
            f"the fleet directory lists {len(entries)} enclaves; at most {_MAX_ENCLAVES} are accepted"
        )
    for field in ("version", "generated_at"):
        value = parsed.get(field, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FleetUnavailable(f"the fleet directory's {field!r} is not a non-negative integer")
    return entries


def unexpected_failure(subject: str, platform: str, exc: Exception) -> VerificationError:
    """A refusal for an entry whose evidence made parsing or verification fail unexpectedly."""
    record = Verification(subject=subject, platform=platform)
    detail = str(exc)[:200]
    return record.fail(
        "evidence",
        f"the evidence could not be parsed or verified ({type(exc).__name__}"
        + (f": {detail}" if detail else "")
        + "); this enclave is refused",
        error=EvidenceFormatError,
    )


class Fleet:
    """Thread-safe: the sync and async transports share one instance.

    ``retire_for`` bounds how long a key the gateway reported as rotated out (422) is
    set aside when no fresh evidence settles the question either way.
    """

    def __init__(
        self,
        gateway_url: str,
        policy: Policy,
        *,
        http: httpx.Client | None = None,
        refresh_interval: float = 30.0,
        max_workers: int = 8,
        clock: Callable[[], float] = time.time,
        retire_for: float = 30.0,
    ) -> None:
        root, note = gateway_root(gateway_url)
        if note is not None:
            warnings.warn(note, UserWarning, stacklevel=2)
        self.gateway_url = root
        self.policy = policy
        self._http = http or httpx.Client(timeout=10.0, follow_redirects=False)
        self._owns_http = http is None
        self.refresh_interval = refresh_interval
        self.retire_for = retire_for
        self._clock = clock
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="sealgate-verify"
        )
        self._lock = threading.RLock()
        self.enclaves: dict[str, VerifiedEnclave] = {}
        self.failures: dict[str, VerificationError] = {}
        self._cache: dict[str, tuple[VerifiedDocument, float]] = {}
        # fingerprint -> when the gateway said the enclave refused it (422)
        self._retired: dict[str, float] = {}
        self._down: dict[str, float] = {}
        self._refreshed_at = float("-inf")
        self.refreshes = 0
        self.verifications = 0

    # -- refreshing -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Fetch the fleet directory and verify every listed enclave now.

        Raises :class:`FleetUnavailable` only when the directory as a whole cannot be
        fetched or parsed; a bad entry is refused on its own (in :attr:`failures`).
        """
        with self._lock:
            failures: dict[str, VerificationError] = {}
            entries: list[_Entry] = []
            ids: set[str] = set()
            for index, raw in enumerate(self._fetch()):
                try:
                    entry = _Entry.from_dict(raw, index)
                except _BadEntry as exc:
                    failures[exc.name if exc.name not in failures else f"#{index}"] = exc.refusal()
                    continue
                except Exception as exc:  # noqa: BLE001 - one bad entry must not take the fleet down
                    failures[f"#{index}"] = unexpected_failure(f"enclave #{index}", "", exc)
                    continue
                if entry.id in ids or entry.id in failures:
                    failures[f"#{index}"] = _BadEntry(
                        f"#{index}", f"entry #{index} repeats the id {entry.id!r}"
                    ).refusal()
                    continue
                ids.add(entry.id)
                entries.append(entry)
            enclaves: dict[str, VerifiedEnclave] = {}
            for entry_id, outcome in self._pool.map(self._verify_entry, entries):
                if isinstance(outcome, VerificationError):
                    failures[entry_id] = outcome
                else:
                    enclaves[entry_id] = outcome
            for entry_id, failure in failures.items():
                log.warning("enclave %s refused: %s", entry_id, failure)
            self.enclaves, self.failures = enclaves, failures
            self._refreshed_at = self._clock()
            self.refreshes += 1
            self._review_retired()

    def records(self) -> list[Verification]:
        """The verification records of the last refresh: verified enclaves, then refused ones."""
        with self._lock:
            return [e.verification for e in self.enclaves.values()] + [
                f.verification for f in self.failures.values()
            ]

    def ensure_fresh(self) -> None:
        """Refresh if the directory is older than ``refresh_interval`` or a verification expired."""
        now = self._clock()
        with self._lock:
            stale = now - self._refreshed_at > self.refresh_interval
            expired = any(e.expires_at <= now for e in self.enclaves.values())
            if stale or expired or not self.enclaves:
                self.refresh()

    def _fetch(self) -> list[object]:
        try:
            status, body = get_capped(self._http, self.gateway_url + FLEET_PATH, _MAX_FLEET_BYTES)
        except httpx.HTTPError as exc:
            raise FleetUnavailable(
                f"cannot reach the gateway at {self.gateway_url}: {exc}"
            ) from exc
        except BodyRefused as exc:
            raise FleetUnavailable(
                f"the fleet directory from {self.gateway_url} was refused: {exc}"
            ) from None
        if status != 200:
            raise FleetUnavailable(
                f"the gateway answered {status} for {FLEET_PATH}; is {self.gateway_url} a "
                "sealgate gateway? (use the server's root URL, without /v1)"
            )
        return _parse_directory(body)

    def _verify_entry(self, entry: _Entry) -> tuple[str, VerifiedEnclave | VerificationError]:
        subject = f"enclave {entry.id}"
        try:
            if self.policy.require_fresh_nonce:
                verified = self._verify_fresh(subject, entry.keys[0] if entry.keys else None)
                evidence_at = verified.verification.verified_at
            else:
                verified = self._verify_cached(subject, entry.document)
                signed = parse_time_nonce(verified.document.nonce)
                evidence_at = float("-inf") if signed is None else float(signed)
            verified = self._check_listing(verified, entry.keys)
        except VerificationError as exc:
            return entry.id, exc
        except Exception as exc:
            log.debug("enclave %s: unexpected verification failure", entry.id, exc_info=True)
            return entry.id, unexpected_failure(subject, entry.document.platform, exc)
        return entry.id, VerifiedEnclave(
            id=entry.id,
            keys=verified.keys,
            verification=verified.verification,
            load=entry.load,
            healthy=entry.healthy,
            expires_at=self._expiry(verified.document, verified.verification),
            evidence_at=evidence_at,
        )

    def _verify_cached(self, subject: str, document: AttestationDocument) -> VerifiedDocument:
        digest = hashlib.sha256(document.to_json()).hexdigest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        verified = verify_document(document, self.policy, subject=subject, now=now)
        self.verifications += 1
        self._cache[digest] = (verified, self._expiry(document, verified.verification))
        if len(self._cache) > 1024:
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        return verified

    def _verify_fresh(self, subject: str, route_key: str | None) -> VerifiedDocument:
        """Ask the enclave holding ``route_key`` for evidence over a nonce of ours; verify it."""
        record = Verification(subject=subject)
        if not route_key:
            raise record.fail(
                "fresh nonce", "the gateway lists no key to route the nonce request by"
            )
        nonce = os.urandom(32)
        try:
            status, body = get_capped(
                self._http,
                self.gateway_url + ATTESTATION_PATH,
                MAX_DOCUMENT_BYTES,
                params={"nonce": nonce.hex()},
                headers={KEY_ID: route_key},
            )
            if status != 200:
                raise BodyRefused(f"the gateway answered {status}")
            document = AttestationDocument.from_json(bytes(body))
        except (httpx.HTTPError, ProtocolError, BodyRefused) as exc:
            raise record.fail(
                "fresh nonce", f"could not obtain a nonce-bound document: {exc}"
            ) from None
        verified = verify_document(
            document, self.policy, subject=subject, nonce=nonce, now=self._clock()
        )
        self.verifications += 1
        return verified

    def _check_listing(
        self, verified: VerifiedDocument, listed: tuple[str, ...]
    ) -> VerifiedDocument:
        """``verified`` with one more step: the gateway lists only keys its evidence binds.

        The step goes on a copy of the record, so a cached verification is never changed.
        """
        record = dataclasses.replace(verified.verification, steps=list(verified.verification.steps))
        bound = set(record.key_fingerprints)
        stray = [k for k in listed if k not in bound]
        expected, actual = ", ".join(sorted(bound)), ", ".join(listed)
        if stray:
            raise record.fail(
                "gateway listing",
                "the gateway lists keys this enclave's evidence does not bind "
                "(swapped or stale document)",
                expected=expected,
                actual=actual,
            )
        record.passed(
            "gateway listing",
            "the gateway's key list for this enclave matches the keys its evidence binds",
            expected=expected,
            actual=actual,
        )
        return VerifiedDocument(verified.document, verified.keys, record)

    def _expiry(self, document: AttestationDocument, record: Verification) -> float:
        if self.policy.max_age is None:
            return float("inf")
        signed = parse_time_nonce(document.nonce)
        base = signed if signed is not None else record.verified_at
        return base + self.policy.max_age

    # -- choosing -------------------------------------------------------------------------
    def served_models(self) -> dict[str, list[str]]:
        """Model -> ids of the verified enclaves trusted with it (enclaves naming none left out)."""
        with self._lock:
            served: dict[str, list[str]] = {}
            for enclave in self.enclaves.values():
                for model in enclave.models or ():
                    served.setdefault(model, []).append(enclave.id)
            return {m: sorted(ids) for m, ids in served.items()}

    def choose(
        self,
        exclude: set[str] | frozenset[str] = frozenset(),
        *,
        settle: float = 5.0,
        model: str | None = None,
        tag: bytes | None = None,
        post_quantum: bool = False,
    ) -> tuple[VerifiedEnclave, KeyConfig]:
        """A verified, healthy enclave serving ``model`` and its current key.

        Without ``tag``: random among the least loaded. With a routing tag (cache
        affinity): the tag's rendezvous choice among the usable candidates that are not
        overloaded, so a conversation stays where its prefix is cached. A model no verified enclave serves raises
        :class:`~sealgate.client.models.UnknownModel` at once. When every candidate was
        just ruled out by a rotation (422) or an outage (503), the gateway's directory
        lags by a poll or two: wait up to ``settle`` seconds for it to catch up.

        ``post_quantum=True`` (the native mode) picks the enclave's MLKEM768-X25519 key,
        or its X25519 key only if its evidence binds no hybrid key at all and the policy
        allows it: a hybrid key set aside after a 422 never downgrades the request to
        X25519. Without it (EHBP) the key is X25519, which
        ``Policy(require_post_quantum=True)`` refuses with :class:`PostQuantumModeRequired`.
        """
        if not post_quantum and self.policy.require_post_quantum:
            raise PostQuantumModeRequired(
                "the policy requires post-quantum keys (require_post_quantum=True), but this "
                "mode can only seal to X25519: use the native mode"
            )
        self.ensure_fresh()
        deadline = self._clock() + settle
        while True:
            with self._lock:
                if not any(e.serves(model) for e in self.enclaves.values()) and self.enclaves:
                    raise UnknownModel(str(model), sorted(self.served_models()), self.gateway_url)
                candidates = [
                    c for c in self._candidates(exclude, post_quantum) if c[0].serves(model)
                ]
                waiting = bool(self._retired) or any(t > self._clock() for t in self._down.values())
                winner = None
                if candidates and tag is not None:
                    winner = affine_choice(tag, {e.id: e.load for e, _ in candidates})
                if winner is not None:
                    return next(c for c in candidates if c[0].id == winner)
                if candidates:
                    lowest = min(e.load for e, _ in candidates)
                    best = [c for c in candidates if c[0].load <= lowest + 0.05]
                    return random.choice(best)  # noqa: S311 - load spreading, not security
                if not waiting or self._clock() >= deadline:
                    outcome = (
                        "nothing was sent"
                        if not exclude
                        else "the enclaves tried refused it before processing"
                    )
                    raise NoVerifiedEnclave(
                        f"no verified enclave is available through {self.gateway_url} "
                        f"({len(self.enclaves)} verified, {len(self.failures)} refused); {outcome}",
                        dict(self.failures),
                    )
            time.sleep(0.2)
            self.refresh()

    def choose_many(
        self,
        count: int,
        exclude: set[str] | frozenset[str] = frozenset(),
        *,
        model: str | None = None,
        tag: bytes | None = None,
        post_quantum: bool = False,
    ) -> list[tuple[VerifiedEnclave, KeyConfig]]:
        """Up to ``count`` distinct verified, healthy enclaves serving ``model``, best first.

        The first is :meth:`choose`'s pick (so affinity and load spreading are unchanged);
        the others follow in the tag's rendezvous order, or least loaded first, each with
        the same kind of key :meth:`choose` picks (its hybrid X-Wing key with
        ``post_quantum`` when it has one). They are the candidates of a multi-recipient
        request, in the order the gateway should try.
        """
        first = self.choose(exclude, model=model, tag=tag, post_quantum=post_quantum)
        if count <= 1:
            return [first]
        with self._lock:
            rest = [
                c
                for c in self._candidates(set(exclude) | {first[0].id}, post_quantum)
                if c[0].serves(model) and c[1].fingerprint != first[1].fingerprint
            ]
        if tag is not None:
            order = {e: i for i, e in enumerate(rendezvous_order(tag, [c[0].id for c in rest]))}
            rest.sort(key=lambda c: order[c[0].id])
        else:
            random.shuffle(rest)  # equal loads: spread the second choices too
            rest.sort(key=lambda c: c[0].load)
        return [first, *rest[: count - 1]]

    def _candidates(
        self, exclude: set[str] | frozenset[str], post_quantum: bool
    ) -> list[tuple[VerifiedEnclave, KeyConfig]]:
        now = self._clock()
        candidates = []
        for enclave in self.enclaves.values():
            if enclave.id in exclude or not enclave.healthy or self._down.get(enclave.id, 0) > now:
                continue
            hybrid = [k for k in enclave.keys if k.post_quantum]
            if post_quantum and (hybrid or self.policy.require_post_quantum):
                usable = hybrid
            else:
                usable = [k for k in enclave.keys if k.kem_id == KEM_X25519_HKDF_SHA256]
            key = next((k for k in usable if not self._is_retired(k.fingerprint, now)), None)
            if key is not None:
                candidates.append((enclave, key))
        return candidates

    def _is_retired(self, fingerprint: str, now: float) -> bool:
        since = self._retired.get(fingerprint)
        return since is not None and now - since < self.retire_for

    def _review_retired(self) -> None:
        """Re-admit set-aside keys that evidence newer than the refusal still binds.

        Keys no verified enclave binds any more are forgotten, and so are set-asides
        older than ``retire_for``: the gateway's word alone never retires a key for good.
        """
        now = self._clock()
        bound: dict[str, float] = {}
        for enclave in self.enclaves.values():
            for key in enclave.keys:
                bound[key.fingerprint] = max(
                    bound.get(key.fingerprint, enclave.evidence_at), enclave.evidence_at
                )
        self._retired = {
            fp: since
            for fp, since in self._retired.items()
            if fp in bound and bound[fp] <= since and now - since < self.retire_for
        }

    def key_unknown(self) -> None:
        """The gateway did not know our key (421): the directory changed."""
        self.refresh()

    def key_rotated(self, key: KeyConfig, enclave_id: str | None = None) -> None:
        """The gateway says the enclave refused ``key`` (422): re-attest before believing it.

        The answer is unauthenticated, so the key is only set aside: a fresh-nonce attestation
        of the enclave that holds it either still binds the key (it is re-admitted at once)
        or does not (it stays out until the directory drops it). Either way the set-aside
        ends after ``retire_for`` seconds, so fake 422s cannot disable a client for good.
        """
        with self._lock:
            self._retired[key.fingerprint] = self._clock()
        subject = f"enclave {enclave_id}" if enclave_id else f"key {key.fingerprint}"
        try:
            fresh = self._verify_fresh(subject, key.fingerprint)
        except VerificationError as exc:
            log.info("re-attestation after a 422 for key %s failed: %s", key.fingerprint, exc)
        except Exception as exc:  # noqa: BLE001 - a hostile answer must not escape as a crash
            log.info("re-attestation after a 422 for key %s failed: %r", key.fingerprint, exc)
        else:
            if key.fingerprint in fresh.verification.key_fingerprints:
                log.info("fresh evidence still binds key %s: re-admitted", key.fingerprint)
                with self._lock:
                    self._retired.pop(key.fingerprint, None)
                return
        self.refresh()

    def enclave_down(self, enclave_id: str, retry_after: float = 1.0) -> None:
        """The gateway could not reach the enclave (503): avoid it for a while."""
        with self._lock:
            self._down[enclave_id] = self._clock() + max(0.5, min(retry_after, 30.0))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        if self._owns_http:
            self._http.close()
