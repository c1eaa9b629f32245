"""Settings declared once in a dataclass; one JSON-lines log format."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner
from sealgate.protocol.public.logs import JsonLines, configure, fields
from sealgate.protocol.public.settings import click_options, config_from, setting, settings_of


def _route(text: str) -> tuple[str, str]:
    method, _, path = text.partition(" ")
    if not path.startswith("/"):
        raise ValueError(f"{text!r} must look like 'GET /v1/models'")
    return method.upper(), path


def _seconds_or_never(text: str) -> float | None:
    return None if text == "never" else float(text)


@dataclass(frozen=True, slots=True)
class Example:
    limit: int = setting(8, help="How many.", minimum=1)
    ratio: float = setting(0.5, help="How much.")
    name: str = setting("x", help="What.")
    loud: bool = setting(True, help="Whether.")
    every: float | None = setting(None, help="How often.", parse=_seconds_or_never)
    models: tuple[str, ...] = setting((), help="Which.", names=("--model",))
    routes: frozenset[tuple[str, str]] = setting(
        default_factory=frozenset, help="Where.", parse=_route, names=("--route",)
    )
    internal: int = 3  # not a setting: no option, no variable


@click.command()
@click_options(Example, "SEALGATE_TEST")
def show(**values: object) -> None:
    click.echo(repr(config_from(Example, values)))


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(show, args, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_defaults_come_from_the_dataclass():
    assert _run([]).strip() == repr(Example())


def test_every_setting_has_an_option_and_a_variable():
    settings = {s.name: s for s in settings_of(Example, "SEALGATE_TEST")}
    assert set(settings) == {"limit", "ratio", "name", "loud", "every", "models", "routes"}
    assert settings["limit"].envvar == "SEALGATE_TEST_LIMIT"
    assert settings["models"].names == ("--model",)
    help_text = CliRunner().invoke(show, ["--help"]).output
    for s in settings.values():
        assert s.envvar in help_text


def test_options_and_variables_land_in_the_same_config():
    by_option = _run(
        [
            *("--limit", "3", "--no-loud", "--every", "90", "--model", "a", "--model", "b"),
            *("--route", "get /v1/models", "--ratio", "0.25", "--name", "y"),
        ]
    )
    by_env = _run(
        [],
        env={
            "SEALGATE_TEST_LIMIT": "3",
            "SEALGATE_TEST_LOUD": "false",
            "SEALGATE_TEST_EVERY": "90",
            "SEALGATE_TEST_MODELS": "a,b",
            "SEALGATE_TEST_ROUTES": "GET /v1/models",
            "SEALGATE_TEST_RATIO": "0.25",
            "SEALGATE_TEST_NAME": "y",
        },
    )
    expected = Example(
        limit=3,
        ratio=0.25,
        name="y",
        loud=False,
        every=90.0,
        models=("a", "b"),
        routes=frozenset({("GET", "/v1/models")}),
    )
    assert by_option.strip() == by_env.strip() == repr(expected)


@pytest.mark.parametrize(
    ("args", "env", "complaint"),
    [
        (["--limit", "0"], None, "0 is not in the range x>=1"),
        (["--route", "nowhere"], None, "must look like 'GET /v1/models'"),
        ([], {"SEALGATE_TEST_ROUTES": "nowhere"}, "must look like 'GET /v1/models'"),
    ],
)
def test_bad_values_are_refused_with_the_reason(args, env, complaint):
    result = CliRunner().invoke(show, args, env=env)
    assert result.exit_code == 2
    assert complaint in result.output


def test_a_setting_type_without_a_parser_is_refused_at_declaration():
    @dataclass
    class Bad:
        every: float | None = setting(None, help="x")

    with pytest.raises(TypeError, match="give parse="):
        settings_of(Bad, "X")


@pytest.fixture
def root_logger():
    """configure() replaces the root handlers; give pytest's back afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield root
    root.handlers[:], root.level = saved, level


def test_log_lines_are_json_with_only_the_declared_keys(root_logger):
    stream = io.StringIO()
    configure("debug", stream)
    log = logging.getLogger("sealgate.test")
    extra = fields(request_id="r1", key_id="k", status=200, duration_ms=1.5)
    extra["sealgate_fields"]["body"] = "secret prompt"  # not a LogFields key: never written
    log.info("request", extra=extra)
    try:
        raise ValueError("the message could quote a prompt")
    except ValueError:
        log.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "request"
    assert (first["request_id"], first["key_id"], first["status"]) == ("r1", "k", 200)
    assert first["ts"].endswith("Z") and first["level"] == "info"
    assert "body" not in first and "secret prompt" not in stream.getvalue()
    assert second["exception"] == "ValueError" and "quote a prompt" not in stream.getvalue()
    assert any("test_settings_and_logs.py" in w for w in second["where"])


def test_the_formatter_is_the_one_every_process_installs(root_logger):
    configure("info", io.StringIO())
    assert isinstance(root_logger.handlers[0].formatter, JsonLines)
