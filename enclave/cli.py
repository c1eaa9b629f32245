"""``sealgate enclave``: run the enclave server (inside the confidential VM)."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .attesters.gpu import GpuSource

__all__ = ["enclave", "parse_duration"]

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> float:
    """Parse ``90``, ``90s``, ``15m``, ``1h`` or ``1d`` into seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration like 90s, 15m or 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


class _Duration(click.ParamType):  # type: ignore[type-arg]
    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        return value if isinstance(value, float) else parse_duration(str(value))


def _tls_key_hash(path: Path | None) -> bytes | None:
    """SHA-256 of the SubjectPublicKeyInfo of a PEM certificate or public key."""
    if path is None:
        return None
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = path.read_bytes()
    try:
        key = x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        try:
            key = serialization.load_pem_public_key(data)  # type: ignore[assignment]
        except ValueError:
            raise click.BadParameter(
                f"{path} is neither a PEM certificate nor a PEM public key"
            ) from None
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def _listen(host: str, port: int) -> socket.socket:
    """Bind the server socket here, so the port we print is the bound one (``--port 0``)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(2048)  # connectable from now on: clients queue until uvicorn accepts
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host} port {port}: {exc.strerror or exc}; "
            "choose another --host or --port"
        ) from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _plaintext_path(value: str) -> tuple[str, str]:
    method, _, path = value.strip().partition(" ")
    if not method or not path.startswith("/"):
        raise click.BadParameter(f"{value!r} must look like 'GET /v1/models'")
    return method.upper(), path


def _refuse_missing_models(upstream: str, models: tuple[str, ...], timeout: float) -> None:
    """Exit with a one-line reason when the engine answers but lacks a claimed model.

    The app checks again at start-up (and then periodically); this copy only spares the
    operator a traceback. An engine that does not answer yet is left to those checks.
    """
    import asyncio

    from .engines import HTTPEngine
    from .engines.models import check_models

    async def check() -> None:
        engine = HTTPEngine(upstream)
        try:
            result = await check_models(engine, models, timeout)
        finally:
            await engine.aclose()
        if result.missing:
            served = ", ".join(result.served) or "nothing"
            raise click.ClickException(
                f"the engine at {upstream} does not serve {', '.join(result.missing)} "
                f"(it serves: {served}); start the engine with that model or change --model"
            )

    asyncio.run(check())


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=int,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--attester",
    type=click.Choice(["software", "sev-snp", "tdx"]),
    default="software",
    show_default=True,
    help="Evidence backend; software is for development only.",
)
@click.option(
    "--software-root-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM Ed25519 key used as the software root (default: a new one per start).",
)
@click.option(
    "--vcek",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SEV-SNP: VCEK certificate to attach when the host provides none.",
)
@click.option(
    "--tdx-collateral",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="TDX: directory of Intel PCS collateral to attach to documents.",
)
@click.option(
    "--gpu",
    "gpu_mode",
    type=click.Choice(["none", "nvml", "files"]),
    default="none",
    show_default=True,
    help="NVIDIA GPU evidence: none, NVML (GPUs in CC mode), or captured files (development).",
)
@click.option(
    "--gpu-report",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="--gpu files: a captured SPDM report (one per GPU).",
)
@click.option(
    "--gpu-chain",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="--gpu files: the PEM chain of each --gpu-report, in the same order.",
)
@click.option(
    "--gpu-rim",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="NVIDIA RIMs to staple to documents (driver and VBIOS).",
)
@click.option(
    "--gpu-nonce",
    metavar="HEX",
    help="--gpu files: the nonce to bind (default: the first captured report's).",
)
@click.option(
    "--tsm-root",
    type=click.Path(path_type=Path),
    hidden=True,
    help="configfs-tsm report directory (default /sys/kernel/config/tsm/report).",
)
@click.option(
    "--engine",
    type=click.Choice(["demo"]),
    default=None,
    help="Built-in engine (the default when --upstream is not given).",
)
@click.option("--upstream", metavar="URL", help="OpenAI-compatible engine to forward to.")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME",
    help="A model the engine serves (repeatable). Part of the measured engine configuration: "
    "clients route a model only to enclaves whose evidence (or release) names it. The "
    "engine's GET /v1/models must list it: the enclave refuses to start otherwise, and "
    "reports unhealthy while it cannot tell.",
)
@click.option(
    "--demo-token-delay",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds between tokens streamed by the demo engine.",
)
@click.option(
    "--rotate-keys-every",
    type=_Duration(),
    default=None,
    help="Rotate the HPKE key on this period (e.g. 1h); default: never.",
)
@click.option(
    "--key-grace",
    type=_Duration(),
    default="5m",
    show_default=True,
    help="How long a replaced key keeps decrypting.",
)
@click.option(
    "--post-quantum-keys/--no-post-quantum-keys",
    default=True,
    show_default=True,
    help="Make an MLKEM768-X25519 key beside each X25519 key (the SDK prefers it).",
)
@click.option(
    "--allow-plaintext",
    "plaintext",
    multiple=True,
    metavar="'METHOD /path'",
    help="Forward this path without encryption (repeatable), e.g. 'GET /v1/models'.",
)
@click.option(
    "--tls-public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate or public key of this enclave's TLS endpoint, bound into attestation.",
)
@click.option("--max-concurrent", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--max-body-size", type=int, default=32 * 1024 * 1024, show_default=True)
@click.option(
    "--body-timeout",
    type=_Duration(),
    default="30s",
    show_default=True,
    help="408 when a request body sends nothing for this long.",
)
@click.option(
    "--body-deadline",
    type=_Duration(),
    default="5m",
    show_default=True,
    help="408 when a request body is not complete this long after its head.",
)
@click.option(
    "--body-min-rate",
    type=click.FloatRange(min=0),
    default=1024.0,
    show_default=True,
    help="408 when a body averages fewer bytes/second after 10 s (0: no minimum).",
)
@click.option(
    "--max-buffered-body-bytes",
    type=click.IntRange(min=1),
    default=1024 * 1024 * 1024,
    show_default=True,
    help="Request body bytes held at once over all requests (503 above it).",
)
@click.option("--log-level", default="info", show_default=True)
def enclave(
    host: str,
    port: int,
    attester: str,
    software_root_key: Path | None,
    vcek: Path | None,
    tdx_collateral: Path | None,
    gpu_mode: str,
    gpu_report: tuple[Path, ...],
    gpu_chain: tuple[Path, ...],
    gpu_rim: tuple[Path, ...],
    gpu_nonce: str | None,
    tsm_root: Path | None,
    engine: str | None,
    upstream: str | None,
    models: tuple[str, ...],
    demo_token_delay: float,
    rotate_keys_every: float | None,
    key_grace: float,
    post_quantum_keys: bool,
    plaintext: tuple[str, ...],
    tls_public_key: Path | None,
    max_concurrent: int,
    max_body_size: int,
    body_timeout: float,
    body_deadline: float,
    body_min_rate: float,
    max_buffered_body_bytes: int,
    log_level: str,
) -> None:
    """Run an enclave: attested HPKE keys, decrypt, forward to the engine, encrypt back."""
    import uvicorn

    from .app import create_app
    from .attesters import AttesterError, create_attester
    from .config import EnclaveConfig
    from .engines import HTTPEngine, demo_engine

    if engine and upstream:
        raise click.UsageError("give either --engine demo or --upstream URL, not both")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    served = tuple(models) or None
    chosen = (
        HTTPEngine(upstream, models=served)
        if upstream
        else demo_engine(demo_token_delay, models=served)
    )
    try:
        backend = create_attester(
            attester,
            root_key=software_root_key,
            engine=chosen.description,
            vcek=vcek,
            tdx_collateral=tdx_collateral,
            tsm_root=tsm_root,
        )
        gpus = _gpu_source(gpu_mode, gpu_report, gpu_chain, gpu_rim, gpu_nonce)
    except AttesterError as exc:
        raise click.ClickException(str(exc)) from exc
    config = EnclaveConfig(
        plaintext_paths=frozenset(_plaintext_path(p) for p in plaintext),
        max_concurrent_requests=max_concurrent,
        max_body_size=max_body_size,
        body_timeout=body_timeout,
        body_deadline=body_deadline,
        body_min_rate=body_min_rate,
        max_buffered_body_bytes=max_buffered_body_bytes,
        rotate_keys_every=rotate_keys_every,
        key_grace=key_grace,
        post_quantum_keys=post_quantum_keys,
        models=models,
    )
    if models and upstream:
        _refuse_missing_models(upstream, models, config.engine_check_timeout)
    built = create_app(
        backend, chosen, config, tls_key_hash=_tls_key_hash(tls_public_key), gpu_source=gpus
    )
    sock = _listen(host, port)
    for name, value in backend.describe().items():
        click.echo(f"{name}: {value}")
    for name, value in (gpus.describe() if gpus is not None else {}).items():
        click.echo(f"{name}: {value}")
    click.echo(f"key: {built.keyring.current.fingerprint}")
    if built.keyring.current_hybrid is not None:
        click.echo(f"post-quantum key: {built.keyring.current_hybrid.fingerprint}")
    click.echo(f"engine: {chosen.description}")
    click.echo(f"listening: {_url(sock)}")
    server = uvicorn.Server(
        uvicorn.Config(
            built.app,
            log_level=log_level,
            access_log=False,
            timeout_keep_alive=30,
            lifespan="on",
        )
    )
    with sock:
        server.run(sockets=[sock])
    if not server.started:
        raise click.ClickException("the enclave server did not start; see the log above")


def _gpu_source(
    mode: str,
    reports: tuple[Path, ...],
    chains: tuple[Path, ...],
    rims: tuple[Path, ...],
    nonce: str | None,
) -> GpuSource | None:
    """The GPU evidence source ``--gpu`` names (None: the enclave claims no GPU)."""
    from .attesters import AttesterError
    from .attesters.gpu import FileGpuSource, NvmlGpuSource

    if mode == "none":
        if reports or chains or nonce:
            raise AttesterError("--gpu-report/--gpu-chain/--gpu-nonce need --gpu files")
        return None
    if mode == "nvml":
        return NvmlGpuSource([p.read_bytes() for p in rims])
    try:
        pinned = None if nonce is None else bytes.fromhex(nonce)
    except ValueError:
        raise AttesterError(f"--gpu-nonce {nonce!r} is not hex") from None
    return FileGpuSource.from_files(list(reports), list(chains), list(rims), pinned)
