"""The ``sealgate`` command line.

The base install (protocol + client) provides the client commands, declared below. Other
packages add their own through the ``sealgate.commands`` entry-point group (the enclave
and the gateway declare theirs in ``pyproject.toml``), so the client never imports them.
Every command loads its module only when invoked, and says which extra to install when
a dependency is missing (an entry point's extra is named after its command).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import click

__all__ = ["main"]

# command name -> (module, attribute, extra that provides its dependencies)
_COMMANDS: dict[str, tuple[str, str, str | None]] = {}


def register(name: str, target: str, extra: str | None = None) -> None:
    """Declare a lazily imported subcommand ``module:attribute``."""
    module, attribute = target.split(":")
    _COMMANDS[name] = (module, attribute, extra)


#: The entry-point group other packages declare their commands in.
ENTRY_POINT_GROUP = "sealgate.commands"


def _commands() -> dict[str, tuple[str, str, str | None]]:
    found = {ep.name: (ep.module, ep.attr, ep.name) for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **_COMMANDS}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_commands()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        commands = _commands()
        if cmd_name not in commands:
            return super().get_command(ctx, cmd_name)
        module, attribute, extra = commands[cmd_name]
        try:
            command = getattr(importlib.import_module(module), attribute)
        except ModuleNotFoundError as exc:
            return _missing(cmd_name, exc.name or module, extra)
        assert isinstance(command, click.Command)
        return command


def _missing(name: str, package: str, extra: str | None) -> click.Command:
    """A stand-in that explains which extra to install (and keeps ``--help`` working)."""
    hint = f"pip install 'sealgate[{extra}]'" if extra else "reinstall sealgate"
    message = f"'sealgate {name}' needs the missing package {package!r}. Install it with: {hint}"

    def fail() -> None:
        raise click.ClickException(message)

    return click.Command(
        name,
        callback=fail,
        help=f"(not installed: {hint})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sealgate")
def main() -> None:
    """sealgate: HPKE end-to-end encrypted inference behind an untrusted gateway."""


register("keyconfig", "sealgate.client.cli.keyconfig:keyconfig")
register("verify", "sealgate.client.cli.verify:verify")
register("verify-evidence", "sealgate.client.cli.evidence:verify_evidence")
register("verify-release", "sealgate.client.cli.release:verify_release")
register("measure", "sealgate.client.cli.release:measure")
register("chat", "sealgate.client.cli.chat:chat", extra="openai")
register("demo", "sealgate.client.cli.demo:demo", extra="demo")
register("redteam", "sealgate.client.cli.redteam:redteam", extra="demo")
