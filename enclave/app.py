"""The enclave's ASGI application: its own endpoints plus the sealed proxy for everything else.

* ``GET /.well-known/hpke-keys`` — the current X25519 key as one bare key config (what EHBP
  clients read), ``application/ohttp-keys``.
* ``GET /.well-known/ohttp-keys`` — the RFC 9458 §3.2 list of every active key.
* ``GET /.well-known/sealgate-attestation[?nonce=<64 hex>]`` — the attestation document.
* ``GET /.well-known/ohttp-gateway`` — the key list again (RFC 9540); ``POST`` a
  native-mode request (chunked OHTTP + Binary HTTP, :mod:`sealgate.enclave.native`).
* ``GET /healthz`` and ``GET /metrics`` — plaintext, no secrets. ``/healthz`` answers 503
  while the engine does not serve every model in ``EnclaveConfig.models``.
* anything else — decrypted, forwarded to the engine, and the answer encrypted back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sealgate.protocol.public import paths
from sealgate.protocol.public.keyconfig import MEDIA_TYPE as KEYS_MEDIA_TYPE
from sealgate.protocol.public.logs import fields
from sealgate.protocol.public.problem import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from sealgate.protocol.public.problem import PROBLEMS, Problem
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from .attestation import AttestationService, RateLimited
from .attesters import Attester, AttesterError
from .attesters.gpu import GpuSource
from .config import EnclaveConfig
from .engines import Engine
from .engines.models import EngineModels, MissingModels, check_models
from .intake import BodyIntake
from .keyring import KeyRing
from .metrics import EnclaveMetrics
from .native import NativeGateway
from .sealed import SealedProxy
from .slots import EngineSlots

__all__ = ["create_app", "Enclave"]

log = logging.getLogger("sealgate.enclave")


@dataclass(slots=True)
class Enclave:
    """Everything one enclave server holds; ``app`` is what uvicorn serves."""

    app: Starlette
    config: EnclaveConfig
    keyring: KeyRing
    attestation: AttestationService
    engine: Engine
    metrics: EnclaveMetrics
    #: Request bodies still arriving, and the byte budget they share (both modes).
    intake: BodyIntake
    #: The engine's ``max_concurrent_requests`` slots (both modes).
    slots: EngineSlots
    proxy: SealedProxy
    #: The native mode's endpoint, with its replay guard (``native.guard``).
    native: NativeGateway
    #: The latest answer to "does the engine serve the claimed models?".
    engine_models: EngineModels

    def rotate_keys(self) -> None:
        """Rotate now (the previous key keeps decrypting for the grace period)."""
        self.keyring.rotate()
        self.attestation.invalidate()
        self.metrics.key_rotations.inc()


def _problem(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    return Response(
        problem.to_bytes(), problem.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def create_app(
    attester: Attester,
    engine: Engine,
    config: EnclaveConfig | None = None,
    keyring: KeyRing | None = None,
    tls_key_hash: bytes | None = None,
    gpu_source: GpuSource | None = None,
) -> Enclave:
    """Assemble an enclave; nothing is read from globals or the environment."""
    config = config or EnclaveConfig()
    keyring = keyring or KeyRing(
        config.rotate_keys_every, config.key_grace, post_quantum=config.post_quantum_keys
    )
    metrics = EnclaveMetrics()
    attestation = AttestationService(
        attester,
        keyring,
        engine=engine.description,
        tls_key_hash=tls_key_hash,
        cache_seconds=config.attestation_cache_seconds,
        rate=config.attestation_rate,
        burst=config.attestation_burst,
        concurrency=config.attestation_concurrency,
        batch_window=config.attestation_batch_window,
        batch_size=config.attestation_batch_size,
        batch_queue=config.attestation_batch_queue,
        gpu_source=gpu_source,
    )
    intake = BodyIntake(config, metrics)
    slots = EngineSlots(config.max_concurrent_requests, config.retry_after, metrics.active_streams)
    proxy = SealedProxy(config, keyring, engine, metrics, intake, slots)
    native = NativeGateway(config, keyring, engine, metrics, intake, slots)

    async def hpke_keys(request: Request) -> Response:
        return Response(
            keyring.current.config.to_bytes(),
            media_type=KEYS_MEDIA_TYPE,
            headers={"cache-control": "no-store"},
        )

    async def ohttp_keys(request: Request) -> Response:
        return Response(
            keyring.encoded_configs(),
            media_type=KEYS_MEDIA_TYPE,
            headers={"cache-control": "no-store"},
        )

    async def attestation_document(request: Request) -> Response:
        raw_nonce = request.query_params.get("nonce")
        try:
            if raw_nonce is None:
                document = await attestation.cached()
                metrics.attestations.labels("cached").inc()
            else:
                if len(raw_nonce) != 64:
                    return _problem(PROBLEMS.MALFORMED_REQUEST("nonce must be 64 hex digits"))
                try:
                    nonce = bytes.fromhex(raw_nonce)
                except ValueError:
                    return _problem(PROBLEMS.MALFORMED_REQUEST("nonce must be 64 hex digits"))
                document = await attestation.fresh(nonce)
                metrics.attestations.labels("fresh").inc()
        except RateLimited as limited:
            metrics.attestations.labels("rate_limited").inc()
            retry = str(max(1, math.ceil(limited.retry_after)))
            return _problem(PROBLEMS.RATE_LIMITED(str(limited)), {"retry-after": retry})
        except AttesterError as error:
            log.error("attestation failed: %s", error)  # the client is told the same
            return _problem(PROBLEMS.UPSTREAM_UNAVAILABLE(f"attestation failed: {error}"))
        return Response(
            document.to_json(), media_type="application/json", headers={"cache-control": "no-store"}
        )

    async def healthz(request: Request) -> Response:
        models = enclave.engine_models
        return JSONResponse(
            {
                "status": "ok" if models.healthy else "unhealthy",
                "engine": models.to_json(),
                "platform": attester.platform,
                "keys": [k.fingerprint for k in keyring.active()],
                "in_flight": slots.in_flight,
                "receiving": intake.receiving,
                "load": round(slots.load, 4),
            },
            status_code=200 if models.healthy else 503,
            headers={"cache-control": "no-store"},
        )

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    enclave: Enclave

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _check_engine(enclave, first=True)  # raises MissingModels: refuse to start
        rotation = asyncio.create_task(_rotation_loop(enclave))
        checks = asyncio.create_task(_engine_check_loop(enclave))
        try:
            yield
        finally:
            for task in (rotation, checks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await engine.aclose()

    app = Starlette(
        routes=[
            Route(paths.EHBP_KEYS, hpke_keys, methods=["GET"]),
            Route(paths.OHTTP_KEYS, ohttp_keys, methods=["GET"]),
            Route(paths.ATTESTATION, attestation_document, methods=["GET"]),
            Route(paths.HEALTH, healthz, methods=["GET"]),
            Route(paths.METRICS, metrics_endpoint, methods=["GET"]),
            Route(paths.OHTTP_GATEWAY, native, methods=["GET", "POST"]),
            Mount("/", app=proxy),
        ],
        lifespan=lifespan,
    )
    enclave = Enclave(
        app,
        config,
        keyring,
        attestation,
        engine,
        metrics,
        intake,
        slots,
        proxy,
        native,
        EngineModels(config.models),
    )
    return enclave


async def _check_engine(enclave: Enclave, *, first: bool = False) -> None:
    """Ask the engine which models it serves; log what changed; refuse a mismatch at start."""
    config = enclave.config
    previous = enclave.engine_models
    result = await check_models(enclave.engine, config.models, config.engine_check_timeout)
    enclave.engine_models = result
    if not first and (result.served, result.error) == (previous.served, previous.error):
        return
    if result.error is not None:
        level = logging.ERROR if config.models else logging.WARNING
        log.log(level, "engine model check failed: %s", result.error)
    elif result.missing:
        if first:
            raise MissingModels(result.missing, result.served)
        log.error("%s", MissingModels(result.missing, result.served))
    else:
        log.info(
            "engine serves %s; claimed: %s",
            ", ".join(result.served) or "no models",
            ", ".join(config.models) or "none",
        )


async def _engine_check_loop(enclave: Enclave) -> None:
    while True:
        interval = enclave.config.engine_check_interval
        # Unhealthy (an engine still loading its model, say): ask again soon.
        await asyncio.sleep(interval if enclave.engine_models.healthy else min(interval, 1.0))
        await _check_engine(enclave)


async def _rotation_loop(enclave: Enclave) -> None:
    keyring = enclave.keyring
    interval = (
        1.0 if keyring.rotate_every is None else max(0.05, min(1.0, keyring.rotate_every / 4))
    )
    while True:
        await asyncio.sleep(interval)
        before = keyring.current.fingerprint
        if keyring.maybe_rotate():
            enclave.attestation.invalidate()
            if keyring.current.fingerprint != before:
                enclave.metrics.key_rotations.inc()
                log.info("rotated HPKE key", extra=fields(key_id=keyring.current.fingerprint[:16]))
