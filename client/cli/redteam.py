"""``sealgate redteam``: run the threat model's attacks and report what was caught."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..redteam.report import table, to_json, to_junit, to_markdown
from ..redteam.runner import ADAPTERS, Row, run_local, run_remote

NOTICE = (
    "WARNING: `sealgate redteam --gateway/--enclave` sends hostile traffic (smuggling, "
    "slowloris, floods, malformed bodies) to the URL you gave and to nothing else. Use it only "
    "on systems you operate or are authorised to test."
)


def _factory(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise click.BadParameter(f"cannot load {spec!r}: {error}", param_hint="--sdk") from None


@click.command()
@click.option(
    "--client-cmd",
    metavar="CMD",
    help="Attack this client program instead of the SDK (see the README for its contract); "
    f"ready adapters: {', '.join(ADAPTERS)}.",
)
@click.option("--gateway", "gateway", metavar="URL", help="Attack this deployed gateway.")
@click.option("--enclave", "enclave", metavar="URL", help="Attack this deployed enclave.")
@click.option("--max-requests", default=40, show_default=True, help="Bound per remote attack.")
@click.option("--deadline", default=20.0, show_default=True, help="Seconds per remote attack.")
@click.option("--only", multiple=True, metavar="ID", help="Run only these attack ids.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--markdown", is_flag=True, help="Print the report as a Markdown table.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML.")
@click.option(
    "--sdk", hidden=True, help="module:factory(url, policy) building the client under test."
)
def redteam(
    client_cmd: str | None,
    gateway: str | None,
    enclave: str | None,
    max_requests: int,
    deadline: float,
    only: tuple[str, ...],
    as_json: bool,
    markdown: bool,
    junit: Path | None,
    sdk: str | None,
) -> None:
    """Attack the SDK, a client program, or your own deployment; exit 1 if a promised
    defence failed.

    With no URL a local fleet (three enclaves, a gateway) is started with an adversarial
    gateway in front of it: nothing leaves 127.0.0.1.
    """
    err = Console(stderr=True)
    rows: list[Row]
    if gateway or enclave:
        for url in (gateway, enclave):
            if url is not None and not url.startswith(("http://", "https://")):
                raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="URL")
        if client_cmd or sdk:
            raise click.UsageError("--gateway/--enclave attack servers; drop --client-cmd/--sdk")
        err.print(f"[bold red]{NOTICE}[/]")
        rows = run_remote(
            gateway, enclave, max_requests=max_requests, deadline=deadline, only=set(only) or None
        )
    else:
        rows = run_local(
            client_cmd=client_cmd,
            factory=_factory(sdk) if sdk else None,
            only=set(only) or None,
            progress=lambda line: err.print(f"[dim]{line}[/]"),
        )
    if junit is not None:
        junit.write_text(to_junit(rows))
    if as_json:
        click.echo(to_json(rows))
    elif markdown:
        click.echo(to_markdown(rows))
    else:
        table(rows, Console(width=200) if not sys.stdout.isatty() else Console())
    if any(row.failed for row in rows):
        sys.exit(1)
