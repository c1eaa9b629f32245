"""``sealgate chat --gateway URL "prompt"``: an encrypted, streamed chat completion in the terminal."""

from __future__ import annotations

import click

from ..errors import SealgateError
from ..policy import Policy
from ..session import SecureClient
from ..transport import ENCLAVE_HEADER
from .options import policy_options


@click.command()
@click.option(
    "--gateway", "gateway_url", required=True, metavar="URL", help="The sealgate gateway."
)
@click.option("--model", default=None, help="Model id (default: the first the engine lists).")
@click.argument("prompt")
@policy_options
def chat(gateway_url: str, model: str | None, prompt: str, policy: Policy) -> None:
    """Verify the fleet, then stream an encrypted answer to PROMPT."""
    try:
        with SecureClient(gateway_url, policy) as secure:
            client = secure.openai()
            chosen = model or client.models.list().data[0].id
            with client.chat.completions.with_streaming_response.create(
                model=chosen, messages=[{"role": "user", "content": prompt}], stream=True
            ) as response:
                served_by = response.headers.get(ENCLAVE_HEADER, "?")
                for chunk in response.parse():
                    if chunk.choices and chunk.choices[0].delta.content:
                        click.echo(chunk.choices[0].delta.content, nl=False)
            click.echo()
            click.echo(f"[sealed end to end; served by enclave {served_by}]", err=True)
    except SealgateError as exc:
        raise click.ClickException(str(exc)) from exc
