"""The client's view of a fleet: fetched from the gateway, verified here, enclave chosen per request.

The gateway is not trusted. It lists enclaves with their published attestation
documents; every document is verified against the policy (in parallel, cached by
document until its signed age runs out), and only keys bound in verified evidence
are ever used. The gateway's load hint only chooses among verified enclaves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from sealgate.protocol.attestation import AttestationDocument, parse_time_nonce
from sealgate.protocol.errors import ProtocolError
from sealgate.protocol.keyconfig import KeyConfig

from .errors import FleetUnavailable, NoVerifiedEnclave, VerificationError
from .policy import Policy
from .verification import Verification
from .verify import VerifiedDocument, verify_document

__all__ = ["Fleet", "VerifiedEnclave", "FLEET_PATH", "ATTESTATION_PATH"]

log = logging.getLogger("sealgate.client")

FLEET_PATH = "/.well-known/sealgate-fleet"
ATTESTATION_PATH = "/.well-known/sealgate-attestation"
_MAX_FLEET_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class VerifiedEnclave:
    """An enclave whose evidence verified, with the keys it binds (current key first)."""

    id: str
    keys: tuple[KeyConfig, ...]
    verification: Verification
    load: float
    healthy: bool
    expires_at: float


class Fleet:
    """Thread-safe: the sync and async transports share one instance."""

    def __init__(
        self,
        gateway_url: str,
        policy: Policy,
        *,
        http: httpx.Client | None = None,
        refresh_interval: float = 30.0,
        max_workers: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.policy = policy
        self._http = http or httpx.Client(timeout=10.0, follow_redirects=False)
        self._owns_http = http is None
        self.refresh_interval = refresh_interval
        self._clock = clock
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="sealgate-verify"
        )
        self._lock = threading.RLock()
        self.enclaves: dict[str, VerifiedEnclave] = {}
        self.failures: dict[str, VerificationError] = {}
        self._cache: dict[str, tuple[VerifiedDocument, float]] = {}
        self._retired: set[str] = set()
        self._down: dict[str, float] = {}
        self._refreshed_at = float("-inf")
        self.refreshes = 0
        self.verifications = 0

    # -- refreshing -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Fetch the fleet directory and verify every listed enclave now."""
        with self._lock:
            entries = self._fetch()
            results = list(self._pool.map(self._verify_entry, entries))
            enclaves: dict[str, VerifiedEnclave] = {}
            failures: dict[str, VerificationError] = {}
            for entry_id, outcome in results:
                if isinstance(outcome, VerificationError):
                    failures[entry_id] = outcome
                    log.warning("enclave %s refused: %s", entry_id, outcome)
                else:
                    enclaves[entry_id] = outcome
            self.enclaves, self.failures = enclaves, failures
            self._refreshed_at = self._clock()
            self.refreshes += 1
            live = {k.fingerprint for e in enclaves.values() for k in e.keys}
            self._retired &= live

    def ensure_fresh(self) -> None:
        """Refresh if the directory is older than ``refresh_interval`` or a verification expired."""
        now = self._clock()
        with self._lock:
            stale = now - self._refreshed_at > self.refresh_interval
            expired = any(e.expires_at <= now for e in self.enclaves.values())
            if stale or expired or not self.enclaves:
                self.refresh()

    def _fetch(self) -> list[dict[str, Any]]:
        try:
            response = self._http.get(self.gateway_url + FLEET_PATH)
        except httpx.HTTPError as exc:
            raise FleetUnavailable(
                f"cannot reach the gateway at {self.gateway_url}: {exc}"
            ) from exc
        if response.status_code != 200:
            raise FleetUnavailable(
                f"the gateway answered {response.status_code} for {FLEET_PATH}; is {self.gateway_url} a sealgate gateway?"
            )
        if len(response.content) > _MAX_FLEET_BYTES:
            raise FleetUnavailable("the fleet directory is too large")
        try:
            body = json.loads(response.content)
            entries = body["enclaves"]
            if body.get("format") != "sealgate-fleet/v1" or not isinstance(entries, list):
                raise ValueError("unexpected format")
        except (ValueError, KeyError, TypeError) as exc:
            raise FleetUnavailable(f"the fleet directory is malformed: {exc}") from None
        return [e for e in entries if isinstance(e, dict)]

    def _verify_entry(
        self, entry: dict[str, Any]
    ) -> tuple[str, VerifiedEnclave | VerificationError]:
        entry_id = str(entry.get("id", "?"))[:32]
        subject = f"enclave {entry_id}"
        try:
            document = AttestationDocument.from_dict(entry.get("attestation"))
        except ProtocolError as exc:
            record = Verification(subject=subject)
            return entry_id, record.fail("document format", exc.message)
        listed = [str(k) for k in entry.get("keys", []) if isinstance(k, str)]
        try:
            if self.policy.require_fresh_nonce:
                verified = self._verify_fresh(subject, listed)
            else:
                verified = self._verify_cached(subject, document)
            self._check_listing(verified, listed)
        except VerificationError as exc:
            return entry_id, exc
        expires = self._expiry(verified.document, verified.verification)
        load = entry.get("load", 0.0)
        return entry_id, VerifiedEnclave(
            id=entry_id,
            keys=verified.keys,
            verification=verified.verification,
            load=float(load) if isinstance(load, int | float) else 0.0,
            healthy=bool(entry.get("healthy", False)),
            expires_at=expires,
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

    def _verify_fresh(self, subject: str, listed: list[str]) -> VerifiedDocument:
        record = Verification(subject=subject)
        if not listed:
            raise record.fail(
                "fresh nonce", "the gateway lists no key to route the nonce request by"
            )
        nonce = os.urandom(32)
        try:
            response = self._http.get(
                self.gateway_url + ATTESTATION_PATH,
                params={"nonce": nonce.hex()},
                headers={"Sealgate-Key-Id": listed[0]},
            )
            response.raise_for_status()
            document = AttestationDocument.from_json(response.content)
        except (httpx.HTTPError, ProtocolError) as exc:
            raise record.fail(
                "fresh nonce", f"could not obtain a nonce-bound document: {exc}"
            ) from None
        verified = verify_document(
            document, self.policy, subject=subject, nonce=nonce, now=self._clock()
        )
        self.verifications += 1
        return verified

    def _check_listing(self, verified: VerifiedDocument, listed: list[str]) -> None:
        bound = set(verified.verification.key_fingerprints)
        stray = [k for k in listed if k not in bound]
        verified.verification.check(
            "gateway listing",
            not stray,
            "the gateway's key list for this enclave matches the keys its evidence binds"
            if not stray
            else "the gateway lists keys this enclave's evidence does not bind (swapped or stale document)",
            expected=", ".join(sorted(bound)),
            actual=", ".join(listed),
        )

    def _expiry(self, document: AttestationDocument, record: Verification) -> float:
        if self.policy.max_age is None:
            return float("inf")
        signed = parse_time_nonce(document.nonce)
        base = signed if signed is not None else record.verified_at
        return base + self.policy.max_age

    # -- choosing -------------------------------------------------------------------------
    def choose(
        self, exclude: set[str] | frozenset[str] = frozenset(), *, settle: float = 5.0
    ) -> tuple[VerifiedEnclave, KeyConfig]:
        """A verified, healthy enclave and its current key: random among the least loaded.

        When every candidate was just ruled out by a rotation (422) or an outage (503),
        the gateway's directory lags by a poll or two: wait up to ``settle`` seconds for
        it to catch up before giving up.
        """
        self.ensure_fresh()
        deadline = self._clock() + settle
        while True:
            with self._lock:
                candidates = self._candidates(exclude)
                waiting = bool(self._retired) or any(t > self._clock() for t in self._down.values())
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

    def _candidates(
        self, exclude: set[str] | frozenset[str]
    ) -> list[tuple[VerifiedEnclave, KeyConfig]]:
        now = self._clock()
        candidates = []
        for enclave in self.enclaves.values():
            if enclave.id in exclude or not enclave.healthy or self._down.get(enclave.id, 0) > now:
                continue
            key = next((k for k in enclave.keys if k.fingerprint not in self._retired), None)
            if key is not None:
                candidates.append((enclave, key))
        return candidates

    def key_unknown(self) -> None:
        """The gateway did not know our key (421): the directory changed."""
        self.refresh()

    def key_rotated(self, key: KeyConfig) -> None:
        """The enclave refused the key (422): stop using it and re-attest."""
        with self._lock:
            self._retired.add(key.fingerprint)
        self.refresh()

    def enclave_down(self, enclave_id: str, retry_after: float = 1.0) -> None:
        """The gateway could not reach the enclave (503): avoid it for a while."""
        with self._lock:
            self._down[enclave_id] = self._clock() + max(0.5, min(retry_after, 30.0))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        if self._owns_http:
            self._http.close()
