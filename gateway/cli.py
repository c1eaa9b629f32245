"""``sealgate gateway``: the untrusted front door of a fleet of enclaves.

Every option can also be set by a ``SEALGATE_GATEWAY_*`` environment variable (shown in
``--help``): the settings of :class:`~sealgate.gateway.config.GatewayConfig` by their own
declaration, the others by the command's ``auto_envvar_prefix``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from sealgate.protocol.public.logs import configure, fields
from sealgate.protocol.public.settings import click_options, config_from

from .config import ENV_PREFIX, GatewayConfig

__all__ = ["gateway"]

log = logging.getLogger("sealgate.gateway")


@click.command(context_settings={"auto_envvar_prefix": ENV_PREFIX})
@click.option(
    "--enclave",
    "enclave",
    multiple=True,
    metavar="URL",
    show_envvar=True,
    help="Enclave base URL, e.g. http://10.0.0.5:8080 (repeatable; space-separated in the "
    "variable).",
)
@click.option(
    "--enclaves-dns",
    "enclaves_dns",
    multiple=True,
    metavar="NAME:PORT",
    show_envvar=True,
    help="Every address behind NAME is an enclave (a headless Service); re-resolved.",
)
@click.option(
    "--fleet-file",
    type=click.Path(dir_okay=False, path_type=Path),
    show_envvar=True,
    help="TOML file with enclaves = [URL, ...] and/or dns = [NAME:PORT, ...]; re-read on change.",
)
@click.option("--host", default="127.0.0.1", show_default=True, show_envvar=True)
@click.option("--port", default=8000, show_default=True, type=int, show_envvar=True)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    show_envvar=True,
    help="Worker processes sharing the port (each polls the fleet itself).",
)
@click.option("--log-level", default="info", show_default=True, show_envvar=True)
@click_options(GatewayConfig, ENV_PREFIX)
def gateway(
    enclave: tuple[str, ...],
    enclaves_dns: tuple[str, ...],
    fleet_file: Path | None,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    **settings: Any,
) -> None:
    """Route sealed requests across a fleet of enclaves; it can read none of them."""
    from .discovery import Discovery, DiscoveryError
    from .run import run

    configure(log_level)
    if not (enclave or enclaves_dns or fleet_file):
        raise click.UsageError(
            "give at least one --enclave URL, --enclaves-dns NAME:PORT or --fleet-file"
        )
    file_dns: list[str] = []
    if fleet_file is not None:
        data = Discovery.load_file(fleet_file) if fleet_file.exists() else {}
        listed = data.get("dns", [])
        file_dns = [str(d) for d in listed] if isinstance(listed, list) else []
    try:
        discovery = Discovery(static=enclave, file=fleet_file, dns=[*enclaves_dns, *file_dns])
    except DiscoveryError as exc:
        raise click.ClickException(str(exc)) from exc
    config = config_from(GatewayConfig, settings)
    log.info(
        f"gateway listening with {workers} worker(s)",
        extra=fields(peer=f"http://{host}:{port}", count=workers),
    )
    run(config, discovery, host, port, workers)
