"""``sealgate gateway``: the untrusted front door of a fleet of enclaves."""

from __future__ import annotations

import logging
from pathlib import Path

import click

__all__ = ["gateway"]


@click.command()
@click.option(
    "--enclave",
    "enclaves",
    multiple=True,
    metavar="URL",
    help="Enclave base URL, e.g. http://10.0.0.5:8080 (repeatable).",
)
@click.option(
    "--enclaves-dns",
    "dns",
    multiple=True,
    metavar="NAME:PORT",
    help="Every address behind NAME is an enclave (a headless Service); re-resolved.",
)
@click.option(
    "--fleet-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file with enclaves = [URL, ...] and/or dns = [NAME:PORT, ...]; re-read on change.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=int,
    help="Worker processes sharing the port (each polls the fleet itself).",
)
@click.option("--max-body-bytes", default=64 * 1024 * 1024, show_default=True, type=int)
@click.option("--max-connections", default=10_000, show_default=True, type=int)
@click.option(
    "--header-timeout",
    default=15.0,
    show_default=True,
    type=float,
    help="Seconds to receive a whole request head (a total deadline, not an idle timeout).",
)
@click.option(
    "--body-timeout",
    default=30.0,
    show_default=True,
    type=float,
    help="Seconds without request body bytes before 408; also the body rate's grace period.",
)
@click.option(
    "--body-min-rate",
    default=4096.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Bytes/s a request body must average after --body-timeout, else 408 (0: off).",
)
@click.option(
    "--nonce-rate",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Fresh-nonce attestation requests per second per client address (0: no limit).",
)
@click.option(
    "--nonce-burst",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Fresh-nonce attestation requests a client address may make at once.",
)
@click.option("--poll-interval", default=1.0, show_default=True, type=float)
@click.option("--discovery-interval", default=5.0, show_default=True, type=float)
@click.option("--drain-timeout", default=30.0, show_default=True, type=float)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option("--log-level", default="info", show_default=True)
def gateway(
    enclaves: tuple[str, ...],
    dns: tuple[str, ...],
    fleet_file: Path | None,
    host: str,
    port: int,
    workers: int,
    max_body_bytes: int,
    max_connections: int,
    header_timeout: float,
    body_timeout: float,
    body_min_rate: float,
    nonce_rate: float,
    nonce_burst: int,
    poll_interval: float,
    discovery_interval: float,
    drain_timeout: float,
    access_log: bool,
    log_level: str,
) -> None:
    """Route sealed requests across a fleet of enclaves; it can read none of them."""
    from .config import GatewayConfig
    from .discovery import Discovery, DiscoveryError
    from .run import run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    if not (enclaves or dns or fleet_file):
        raise click.UsageError(
            "give at least one --enclave URL, --enclaves-dns NAME:PORT or --fleet-file"
        )
    file_dns: list[str] = []
    if fleet_file is not None:
        data = Discovery.load_file(fleet_file) if fleet_file.exists() else {}
        listed = data.get("dns", [])
        file_dns = [str(d) for d in listed] if isinstance(listed, list) else []
    try:
        discovery = Discovery(static=enclaves, file=fleet_file, dns=[*dns, *file_dns])
    except DiscoveryError as exc:
        raise click.ClickException(str(exc)) from exc
    config = GatewayConfig(
        max_body_bytes=max_body_bytes,
        max_connections=max_connections,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        body_min_rate=body_min_rate,
        nonce_rate=nonce_rate,
        nonce_burst=nonce_burst,
        poll_interval=poll_interval,
        discovery_interval=discovery_interval,
        drain_timeout=drain_timeout,
        access_log=access_log,
    )
    click.echo(f"gateway listening on http://{host}:{port} ({workers} worker(s))")
    run(config, discovery, host, port, workers)
