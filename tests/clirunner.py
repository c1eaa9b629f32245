"""A click ``CliRunner`` that keeps stderr apart on every supported click version."""

from __future__ import annotations

from click.testing import CliRunner


def stderr_runner() -> CliRunner:
    """click < 8.2 mixes stderr into ``output`` unless asked not to; 8.2+ always separates it
    (and no longer accepts the argument)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()
