"""``sealgate enclave``: run the enclave server (inside the confidential VM).

Every :class:`~sealgate.enclave.config.EnclaveConfig` setting is an option and a
``SEALGATE_ENCLAVE_<FIELD>`` variable (derived from the dataclass); the other options
(address, attester, engine, evidence files, log level) take ``SEALGATE_ENCLAVE_<OPTION>``
variables too. ``--print-measurement`` prints the software measurement of the engine
the options describe and exits, so a verifier can learn what a ``software`` enclave
started with the same options will report without importing the enclave.
"""

from __future__ import annotations

import functools
import logging
import socket
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sealgate.protocol.public.settings import click_options, config_from

from .attesters import AttesterKind
from .config import EnclaveConfig

if TYPE_CHECKING:
    from .attesters.gpu import GpuSource

__all__ = ["ENV_PREFIX", "enclave"]

#: The prefix of every variable ``sealgate enclave`` reads.
ENV_PREFIX = "SEALGATE_ENCLAVE"

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class GpuMode(StrEnum):
    """Where NVIDIA GPU evidence comes from."""

    NONE = "none"
    NVML = "nvml"  # GPUs in confidential-computing mode
    FILES = "files"  # captured reports, for development


#: A non-config option: it shows the variable click derives from ``ENV_PREFIX``.
_option = functools.partial(click.option, show_envvar=True)


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


@click.command(context_settings={"auto_envvar_prefix": ENV_PREFIX, "show_default": True})
@_option("--host", default="127.0.0.1", help="Address to listen on.")
@_option("--port", default=8080, type=int, help="Port to listen on; 0 picks a free one.")
@_option(
    "--attester",
    type=click.Choice([kind.value for kind in AttesterKind]),
    default=AttesterKind.SOFTWARE.value,
    help="Evidence backend; software is for development only.",
)
@_option(
    "--software-root-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM Ed25519 key used as the software root (default: a new one per start).",
)
@_option(
    "--vcek",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SEV-SNP: VCEK certificate to attach when the host provides none.",
)
@_option(
    "--tdx-collateral",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="TDX: directory of Intel PCS collateral to attach to documents.",
)
@_option(
    "--gpu",
    type=click.Choice([mode.value for mode in GpuMode]),
    default=GpuMode.NONE.value,
    help="NVIDIA GPU evidence: none, NVML (GPUs in CC mode), or captured files (development).",
)
@_option(
    "--gpu-report",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="--gpu files: a captured SPDM report (one per GPU; the variable lists them "
    "separated by spaces).",
)
@_option(
    "--gpu-chain",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="--gpu files: the PEM chain of each --gpu-report, in the same order.",
)
@_option(
    "--gpu-rim",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="NVIDIA RIMs to staple to documents (driver and VBIOS).",
)
@_option(
    "--gpu-nonce",
    metavar="HEX",
    help="--gpu files: the nonce to bind (default: the first captured report's).",
)
@_option(
    "--tsm-root",
    type=click.Path(path_type=Path),
    hidden=True,
    help="configfs-tsm report directory (default /sys/kernel/config/tsm/report).",
)
@_option(
    "--engine",
    type=click.Choice(["demo"]),
    default=None,
    help="Built-in engine (the default when --upstream is not given).",
)
@_option("--upstream", metavar="URL", help="OpenAI-compatible engine to forward to.")
@_option(
    "--demo-token-delay",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds between tokens streamed by the demo engine.",
)
@_option(
    "--tls-public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM certificate or public key of this enclave's TLS endpoint, bound into attestation.",
)
@_option("--log-level", type=click.Choice(_LOG_LEVELS, case_sensitive=False), default="info")
@click.option(
    "--print-measurement",
    is_flag=True,
    allow_from_autoenv=False,  # a variable must never turn a server into a one-shot command
    help="Print the hex software measurement of the engine these options describe "
    "(--upstream, --model) and exit without serving: what a software-attested enclave "
    "started with the same options reports.",
)
@click_options(EnclaveConfig, ENV_PREFIX)
def enclave(
    host: str,
    port: int,
    attester: str,
    software_root_key: Path | None,
    vcek: Path | None,
    tdx_collateral: Path | None,
    gpu: str,
    gpu_report: tuple[Path, ...],
    gpu_chain: tuple[Path, ...],
    gpu_rim: tuple[Path, ...],
    gpu_nonce: str | None,
    tsm_root: Path | None,
    engine: str | None,
    upstream: str | None,
    demo_token_delay: float,
    tls_public_key: Path | None,
    log_level: str,
    print_measurement: bool,
    **settings: Any,
) -> None:
    """Run an enclave: attested HPKE keys, decrypt, forward to the engine, encrypt back."""
    if engine and upstream:
        raise click.UsageError("give either --engine demo or --upstream URL, not both")
    try:
        config = config_from(EnclaveConfig, settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    served = config.models or None
    if print_measurement:
        from .attesters import measure_software
        from .engines import engine_description

        click.echo(measure_software(engine_description(upstream, served)).hex())
        return

    import uvicorn
    from sealgate.protocol.public.logs import configure

    from .app import create_app
    from .attesters import AttesterError, create_attester
    from .engines import HTTPEngine, demo_engine

    configure(log_level)
    logging.captureWarnings(True)  # a warning is a JSON line too
    chosen = (
        HTTPEngine(upstream, models=served)
        if upstream
        else demo_engine(demo_token_delay, models=served)
    )
    try:
        backend = create_attester(
            AttesterKind(attester),
            root_key=software_root_key,
            engine=chosen.description,
            vcek=vcek,
            tdx_collateral=tdx_collateral,
            tsm_root=tsm_root,
        )
        gpus = _gpu_source(GpuMode(gpu), gpu_report, gpu_chain, gpu_rim, gpu_nonce)
    except AttesterError as exc:
        raise click.ClickException(str(exc)) from exc
    if config.models and upstream:
        _refuse_missing_models(upstream, config.models, config.engine_check_timeout)
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
            log_config=None,  # configure() above: every line is JSON
            log_level=log_level.lower(),
            access_log=False,  # the enclave writes its own, without sealed content
            http="httptools",
            ws="none",
            timeout_keep_alive=30,
            lifespan="on",
        )
    )
    with sock:
        server.run(sockets=[sock])
    if not server.started:
        raise click.ClickException("the enclave server did not start; see the log above")


def _gpu_source(
    mode: GpuMode,
    reports: tuple[Path, ...],
    chains: tuple[Path, ...],
    rims: tuple[Path, ...],
    nonce: str | None,
) -> GpuSource | None:
    """The GPU evidence source ``--gpu`` names (None: the enclave claims no GPU)."""
    from .attesters import AttesterError
    from .attesters.gpu import FileGpuSource, NvmlGpuSource

    if mode is GpuMode.NONE:
        if reports or chains or nonce:
            raise AttesterError("--gpu-report/--gpu-chain/--gpu-nonce need --gpu files")
        return None
    if mode is GpuMode.NVML:
        return NvmlGpuSource([p.read_bytes() for p in rims])
    try:
        pinned = None if nonce is None else bytes.fromhex(nonce)
    except ValueError:
        raise AttesterError(f"--gpu-nonce {nonce!r} is not hex") from None
    return FileGpuSource.from_files(list(reports), list(chains), list(rims), pinned)
