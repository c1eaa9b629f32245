"""``sealgate chat --gateway URL "prompt"``: an encrypted, streamed chat completion in the terminal."""

from __future__ import annotations

import click
import openai

from ..errors import EnclaveError, SealgateError
from ..policy import Policy
from ..session import SecureClient
from ..transport import ENCLAVE_HEADER
from .options import policy_options, root_url

__all__ = ["chat", "request_failure"]


def request_failure(exc: BaseException) -> click.ClickException:
    """Why a request failed, in one line: the enclave's own (authenticated) problem if it sent one.

    The openai SDK wraps what the sealing transport raises (``APIConnectionError``) and
    turns error answers into ``APIStatusError``: look behind both.
    """
    enclave = EnclaveError.of(exc)
    if enclave is not None and enclave.problem is not None:
        return click.ClickException(str(enclave))
    if enclave is not None:  # the engine's own error body, which the SDK's message quotes
        return click.ClickException(f"{exc} (from enclave {enclave.enclave}, authenticated)")
    current: BaseException | None = exc
    for _ in range(16):
        if current is None:
            break
        if isinstance(current, SealgateError):
            return click.ClickException(str(current))
        current = current.__cause__ or current.__context__
    return click.ClickException(f"{type(exc).__name__}: {exc}")


@click.command()
@click.option(
    "--gateway", "gateway_url", required=True, metavar="URL", help="The sealgate gateway."
)
@click.option(
    "--model",
    default=None,
    help="Model id; only enclaves verified for it are used (default: the first listed).",
)
@click.argument("prompt")
@policy_options
def chat(gateway_url: str, model: str | None, prompt: str, policy: Policy) -> None:
    """Verify the fleet, then stream an encrypted answer to PROMPT."""
    try:
        with SecureClient(root_url(gateway_url), policy) as secure:
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
    except (SealgateError, openai.OpenAIError) as exc:
        raise request_failure(exc) from exc
