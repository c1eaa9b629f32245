"""Attestation documents: evidence over the binding of the current keys, batched and cached.

Evidence generation can be expensive (a hardware round trip), so fresh nonces are
batched: the nonces that arrive within ``batch_window`` seconds (at most
``batch_size`` of them) share ONE report, which binds a Merkle root over all of
them (:mod:`sealgate.protocol.evidence.nonce_batch`); each client gets the report plus its
inclusion proof. Reports pass a token bucket and a small concurrency limit, and
while a batch waits for them it keeps admitting nonces, so the report rate stays
bounded however many clients ask, and a flood of nonces shares reports with
everyone else instead of draining a per-nonce budget. Only when ``batch_queue``
batches are already waiting is a nonce refused (429 with Retry-After). Documents
without a nonce are cached (bound to a time nonce) until the keys change or the
cache age passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace

from sealgate.protocol.evidence.attestation import AttestationDocument, time_nonce
from sealgate.protocol.evidence.binding import report_data
from sealgate.protocol.evidence.gpu import gpu_nonce
from sealgate.protocol.evidence.nonce_batch import MAX_BATCH_SIZE, NONCE_SIZE, NonceBatch

from .attesters import Attester, Evidence
from .attesters.gpu import GpuSource
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


class _Batch:
    """Client nonces waiting for one report; ``result`` resolves when it is made."""

    __slots__ = ("full", "nonces", "result")

    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}  # nonce -> leaf index (a repeated nonce shares it)
        self.full = asyncio.Event()
        self.result: asyncio.Future[tuple[bytes, Evidence, NonceBatch | None]] = (
            asyncio.get_running_loop().create_future()
        )
        # Mark the outcome retrieved even when every waiter hung up (no "never retrieved").
        self.result.add_done_callback(lambda f: f.cancelled() or f.exception())


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
        batch_window: float = 0.005,
        batch_size: int = 256,
        batch_queue: int = 8,
        clock: Callable[[], float] = time.time,
        gpu_source: GpuSource | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        if batch_window < 0 or batch_queue < 1:
            raise ValueError("batch_window must be >= 0 and batch_queue >= 1")
        self.attester = attester
        self.keyring = keyring
        self.tls_key_hash = tls_key_hash
        self.gpu_source = gpu_source
        self.cache_seconds = cache_seconds
        self.batch_window = batch_window
        self.batch_size = batch_size
        self.batch_queue = batch_queue
        self._bucket = TokenBucket(rate, burst)
        self._tokens = asyncio.Lock()  # batches take report tokens in arrival order
        self._slots = asyncio.Semaphore(concurrency)
        self._refresh = asyncio.Lock()
        self._clock = clock
        self._cached: tuple[int, float, AttestationDocument] | None = None
        self._open: _Batch | None = None
        self._batches: set[asyncio.Task[None]] = set()
        #: Nonces admitted and not yet answered (introspection for tests and metrics).
        self.pending = 0
        #: Fresh-nonce reports made, and the nonces they answered.
        self.reports = 0
        self.nonces_served = 0
        self._info = {
            "sealgate_version": sealgate_version(),
            "engine": str(engine.get("engine", "unknown")),
        }
        models = engine.get("models")
        if isinstance(models, list | tuple):  # public claim for operators; clients verify it
            self._info["models"] = ",".join(sorted(str(m) for m in models))

    def _attest(self, nonce: bytes) -> tuple[bytes, Evidence]:
        """GPUs first, over a nonce derived from the CPU binding; then the CPU report over both."""
        keys = self.keyring.encoded_configs()
        if self.gpu_source is None:
            return keys, self.attester.attest(report_data(keys, nonce, self.tls_key_hash))
        binding = report_data(keys, nonce, self.tls_key_hash)
        gpu = self.gpu_source.collect(gpu_nonce(binding))
        bound = report_data(keys, nonce, self.tls_key_hash, gpu.digest())
        return keys, replace(self.attester.attest(bound), gpu=gpu)

    def _document(
        self, keys: bytes, evidence: Evidence, nonce: bytes, tree: NonceBatch | None, index: int
    ) -> AttestationDocument:
        return AttestationDocument(
            platform=self.attester.platform,
            key_configs=keys,
            evidence=evidence.evidence,
            nonce=nonce if tree is None else tree.bound_nonce,
            tls_key_hash=self.tls_key_hash,
            collateral=evidence.collateral,
            info=self._info,
            nonce_proof=None if tree is None else tree.proof(index),
            gpu=evidence.gpu,
        )

    def _build(self, nonce: bytes) -> AttestationDocument:
        """One report over one directly bound nonce (blocking)."""
        keys, evidence = self._attest(nonce)
        return self._document(keys, evidence, nonce, None, 0)

    async def fresh(self, nonce: bytes) -> AttestationDocument:
        """A document whose report binds the client's nonce, alone or in a batch.

        Raises :class:`RateLimited` when ``batch_queue`` batches are already waiting.
        """
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"a client nonce must be {NONCE_SIZE} bytes")
        batch = self._join(nonce)
        self.pending += 1
        try:
            # Shielded: a client that hangs up must not cancel the report its batch shares.
            keys, evidence, tree = await asyncio.shield(batch.result)
        finally:
            self.pending -= 1
        self.nonces_served += 1
        return self._document(keys, evidence, nonce, tree, batch.nonces[nonce])

    def _join(self, nonce: bytes) -> _Batch:
        batch = self._open
        if batch is None:
            if len(self._batches) >= self.batch_queue:
                raise RateLimited(max(self.batch_window, len(self._batches) / self._bucket.rate))
            batch = self._open = _Batch()
            task = asyncio.create_task(self._run(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)
        batch.nonces.setdefault(nonce, len(batch.nonces))
        if len(batch.nonces) >= self.batch_size:
            self._close(batch)
            batch.full.set()
        return batch

    def _close(self, batch: _Batch) -> None:
        """Admit no more nonces to ``batch``; the next nonce opens a new one."""
        if self._open is batch:
            self._open = None

    async def _run(self, batch: _Batch) -> None:
        """Collect for the window (or until full), wait for a token and a slot, then attest."""
        try:
            if self.batch_window > 0 and not batch.full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(batch.full.wait(), self.batch_window)
            async with self._tokens:
                while wait := self._bucket.take():
                    await asyncio.sleep(wait)  # still open: late nonces join this report
            async with self._slots:
                self._close(batch)
                nonces = tuple(batch.nonces)
                outcome = await asyncio.to_thread(self._attest_batch, nonces)
            self.reports += 1
            batch.result.set_result(outcome)
        except Exception as error:  # noqa: BLE001 - re-raised in every waiter of the batch
            batch.result.set_exception(error)
        finally:
            self._close(batch)
            if not batch.result.done():
                batch.result.cancel()

    def _attest_batch(self, nonces: tuple[bytes, ...]) -> tuple[bytes, Evidence, NonceBatch | None]:
        """Blocking: a batch of one binds its nonce directly (a v1 document), more a tree root."""
        if len(nonces) == 1:
            return (*self._attest(nonces[0]), None)
        tree = NonceBatch.of(nonces)
        return (*self._attest(tree.bound_nonce), tree)

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
