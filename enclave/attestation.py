"""Attestation documents: evidence over the binding of the current keys, cached and rate-limited.

Evidence generation can be expensive (a hardware round trip), so a flood of fresh
nonces must not exhaust the host: nonce requests pass a token bucket and a small
concurrency limit, and documents without a nonce are cached (bound to a time nonce)
until the keys change or the cache age passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sealgate.protocol.attestation import AttestationDocument, time_nonce
from sealgate.protocol.binding import report_data

from .attesters import Attester
from .attesters.software import sealgate_version
from .keyring import KeyRing

__all__ = ["AttestationService", "RateLimited", "TokenBucket"]


class RateLimited(Exception):
    """Too many fresh attestations requested; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"attestation rate limit exceeded; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> float:
        """Take a token; return 0 on success, else seconds until one is available."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class AttestationService:
    """Builds :class:`AttestationDocument` s for the keys in a :class:`KeyRing`."""

    def __init__(
        self,
        attester: Attester,
        keyring: KeyRing,
        *,
        engine: dict[str, object],
        tls_key_hash: bytes | None = None,
        cache_seconds: float = 60.0,
        rate: float = 10.0,
        burst: int = 20,
        concurrency: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.attester = attester
        self.keyring = keyring
        self.tls_key_hash = tls_key_hash
        self.cache_seconds = cache_seconds
        self._bucket = TokenBucket(rate, burst)
        self._slots = asyncio.Semaphore(concurrency)
        self._refresh = asyncio.Lock()
        self._clock = clock
        self._cached: tuple[int, float, AttestationDocument] | None = None
        self._info = {
            "sealgate_version": sealgate_version(),
            "engine": str(engine.get("engine", "unknown")),
        }

    def _build(self, nonce: bytes) -> AttestationDocument:
        keys = self.keyring.encoded_configs()
        evidence = self.attester.attest(report_data(keys, nonce, self.tls_key_hash))
        return AttestationDocument(
            platform=self.attester.platform,
            key_configs=keys,
            evidence=evidence.evidence,
            nonce=nonce,
            tls_key_hash=self.tls_key_hash,
            collateral=evidence.collateral,
            info=self._info,
        )

    async def fresh(self, nonce: bytes) -> AttestationDocument:
        """A document bound to the client's nonce (rate-limited)."""
        wait = self._bucket.take()
        if wait:
            raise RateLimited(wait)
        async with self._slots:
            return await asyncio.to_thread(self._build, nonce)

    async def cached(self) -> AttestationDocument:
        """A document bound to a recent time nonce, shared by all callers."""
        self.keyring.expire()
        async with self._refresh:
            now = self._clock()
            if self._cached is not None:
                generation, built_at, document = self._cached
                if generation == self.keyring.generation and now - built_at < self.cache_seconds:
                    return document
            generation = self.keyring.generation
            async with self._slots:
                document = await asyncio.to_thread(self._build, time_nonce(int(now)))
            self._cached = (generation, now, document)
            return document

    def invalidate(self) -> None:
        """Forget the cached document (after a key rotation)."""
        self._cached = None
