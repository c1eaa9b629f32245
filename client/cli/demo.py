"""``sealgate demo``: a verified, encrypted, streamed chat completion through a load-balanced fleet."""

from __future__ import annotations

import time
from typing import Any

import click
import openai
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ..demo import DemoFleet
from ..errors import SealgateError
from ..session import SecureClient
from ..transport import ENCLAVE_HEADER
from .chat import request_failure
from .report import render_summary

#: The gateway access-log fields shown (keys of :class:`~sealgate.protocol.public.logs.LogFields`)
#: and their column headings.
ACCESS_COLUMNS = {
    "method": "method",
    "path": "path",
    "key_id": "key id",
    "enclave_id": "enclave",
    "status": "status",
    "outcome": "outcome",
    "bytes_in": "bytes in",
    "bytes_out": "bytes out",
    "duration_ms": "ms",
}
SNIPPET = """\
from sealgate.client import Policy, SecureClient

policy = Policy.software(
    "{root}",  # the demo's software root: development only, never for real data
    "{measurement}",
)
client = SecureClient("{gateway}", policy).openai()
stream = client.chat.completions.create(
    model="sealgate-demo-echo",
    messages=[{{"role": "user", "content": "hello"}}],
    stream=True,
)
for chunk in stream:
    if chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
"""


MODEL_A, MODEL_B = "sealgate-demo-echo", "sealgate-demo-mini"


def _cell(value: object) -> str:
    """An access-log value as a table cell (durations to 0.1 ms)."""
    if isinstance(value, float):
        return f"{value:.1f}"
    return "" if value is None else str(value)


def show_model_routing(console: Console, secure: SecureClient, client: Any) -> None:
    """Three requests per model; where each landed and what that enclave is verified for."""
    table = Table()
    for column in ("requested model", "served by enclave", "enclave verified for"):
        table.add_column(column, no_wrap=True)
    for name in sorted(secure.fleet.served_models()):
        for _ in range(3):
            raw = client.chat.completions.with_raw_response.create(
                model=name, messages=[{"role": "user", "content": "which model?"}]
            )
            enclave = raw.headers.get(ENCLAVE_HEADER, "?").split(";")[0]
            verified = secure.fleet.enclaves.get(enclave)
            table.add_row(
                name,
                enclave,
                ", ".join(verified.models or ("any",)) if verified else "?",
            )
    console.print(table)
    console.print(
        "[dim]the SDK read `model` before sealing; the gateway routed by key id only.[/]\n"
    )


def show_access_log(console: Console, records: list[dict[str, object]]) -> None:
    """The gateway's access-log records as a table (one shared method and path said once)."""
    columns = dict(ACCESS_COLUMNS)
    routes = {(r.get("method"), r.get("path")) for r in records}
    if len(routes) == 1:
        ((method, path),) = routes
        console.print(f"every request: [bold]{method} {path}[/]")
        del columns["method"], columns["path"]
    table = Table()
    for heading in columns.values():
        table.add_column(heading, overflow="ellipsis")
    for record in records:
        table.add_row(*(_cell(record.get(key)) for key in columns))
    console.print(table)


@click.command()
@click.option("--prompt", default="Tell me why the gateway cannot read this.", show_default=True)
@click.option("--enclaves", default=3, show_default=True, type=int)
@click.option(
    "--upstream",
    metavar="URL",
    help="Use a real OpenAI-compatible engine instead of the demo engine.",
)
@click.option(
    "--model", default=None, help="Model id for --upstream (default: the first it lists)."
)
@click.option(
    "--token-delay",
    default=0.04,
    show_default=True,
    type=float,
    help="Seconds between demo-engine tokens, to make streaming visible.",
)
@click.option(
    "--one-model",
    is_flag=True,
    help="Every demo enclave serves the same model (default: the last one serves a second).",
)
@click.option("--keep-running", is_flag=True, help="Leave the fleet up and print how to use it.")
def demo(
    prompt: str,
    enclaves: int,
    upstream: str | None,
    model: str | None,
    token_delay: float,
    one_model: bool,
    keep_running: bool,
) -> None:
    """Start enclaves + gateway on loopback, verify them, stream a sealed chat completion."""
    console = Console()
    console.print(
        Panel.fit(
            "[bold]sealgate demo[/]: enclaves with the [yellow]software[/] attester (a development "
            "stand-in for SEV-SNP/TDX hardware), one untrusted gateway, and a client that verifies "
            "before it encrypts.",
            border_style="blue",
        )
    )
    try:
        models: list[tuple[str, ...]] | None = None
        if not upstream and not one_model and enclaves >= 2:
            solo_a: tuple[str, ...] = (MODEL_A,)
            models = [solo_a] * (enclaves - 1) + [(MODEL_B,)]
        with DemoFleet(
            enclaves, upstream=upstream, token_delay=token_delay, models=models
        ) as fleet:
            console.print(f"started {enclaves} enclave(s): {', '.join(fleet.enclave_urls)}")
            console.print(f"started the gateway: {fleet.gateway_url}\n")
            policy = fleet.policy()
            with SecureClient(fleet.gateway_url, policy) as secure:
                console.rule("1. the client verifies every enclave the gateway lists")
                render_summary(console, secure.verify())
                fleet.gateway_saw(timeout=0.5)  # drop the set-up noise

                console.rule(
                    "2. a sealed, streamed chat completion through the official openai SDK"
                )
                client = secure.openai()
                chosen = model or client.models.list().data[0].id
                console.print(f"[dim]model {chosen}; prompt:[/] {prompt}\n")
                started = time.perf_counter()
                with client.chat.completions.with_streaming_response.create(
                    model=chosen, messages=[{"role": "user", "content": prompt}], stream=True
                ) as response:
                    served_by = response.headers.get(ENCLAVE_HEADER, "?")
                    tokens = 0
                    for chunk in response.parse():
                        if chunk.choices and chunk.choices[0].delta.content:
                            tokens += 1
                            console.print(
                                chunk.choices[0].delta.content,
                                end="",
                                style="bold green",
                                soft_wrap=True,
                            )
                console.print(
                    f"\n\n[dim]{tokens} tokens in {time.perf_counter() - started:.2f}s, "
                    f"opened and authenticated frame by frame; served by enclave[/] "
                    f"[cyan]{served_by}[/]\n"
                )

                if models is not None:
                    console.rule(
                        "one gateway, two models: each request goes to its model's enclaves"
                    )
                    show_model_routing(console, secure, client)

                console.rule("3. what the gateway saw (its access log: routing metadata only)")
                show_access_log(console, fleet.gateway_saw())
                console.print(
                    "[dim]request and response bodies crossed the gateway as HPKE "
                    "ciphertext; it holds no key that can open them.[/]\n"
                )

            if keep_running:
                measurement = policy.measurements[0].registers["measurement"]
                pins = " ".join(
                    f"--measurement software:{m.registers['measurement']}"
                    for m in policy.measurements
                )
                console.rule("the fleet keeps running (Ctrl-C to stop)")
                console.print(f"gateway:  {fleet.gateway_url}")
                for url in fleet.enclave_urls:
                    console.print(f"enclave:  {url}")
                # Plain, unwrapped output, so that both can be copied as they are.
                click.echo(
                    "\nverify it:  sealgate verify "
                    f"{fleet.gateway_url} --software-root {fleet.root_public_key.hex()} {pins}\n"
                )
                click.echo(
                    SNIPPET.format(
                        root=fleet.root_public_key.hex(),
                        measurement=measurement,
                        gateway=fleet.gateway_url,
                    )
                )
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        console.print("\n[dim]stopped; the fleet is shut down.[/]")
    except (SealgateError, openai.OpenAIError) as exc:
        raise request_failure(exc) from exc
