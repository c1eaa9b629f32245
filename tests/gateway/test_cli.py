"""``sealgate gateway`` options and ``SEALGATE_GATEWAY_*`` variables reach the configuration."""

from __future__ import annotations

import dataclasses

from click.testing import CliRunner
from sealgate.gateway import GatewayConfig
from sealgate.gateway.cli import gateway
from sealgate.gateway.config import ENV_PREFIX
from sealgate.protocol.public.settings import settings_of


def test_hardening_flags_reach_the_config(monkeypatch):
    seen: list[GatewayConfig] = []
    monkeypatch.setattr(
        "sealgate.gateway.run.run", lambda config, *args, **kwargs: seen.append(config)
    )
    args = ["--enclave", "http://127.0.0.1:9", "--header-timeout", "3", "--body-timeout", "4"]
    args += ["--body-min-rate", "512", "--nonce-rate", "0.5", "--nonce-burst", "4"]
    result = CliRunner().invoke(gateway, args)
    assert result.exit_code == 0, result.output
    [config] = seen
    assert (config.header_timeout, config.body_timeout, config.body_min_rate) == (3, 4, 512)
    assert (config.nonce_rate, config.nonce_burst) == (0.5, 4)


def test_negative_rates_are_refused():
    result = CliRunner().invoke(gateway, ["--enclave", "http://127.0.0.1:9", "--nonce-rate", "-1"])
    assert result.exit_code != 0
    assert "--nonce-rate" in result.output


def _non_defaults() -> dict[str, object]:
    """A value other than the default for every setting of GatewayConfig."""
    values: dict[str, object] = {}
    for s in settings_of(GatewayConfig, ENV_PREFIX):
        if s.kind == "flag":
            values[s.name] = not s.default
        elif s.kind == "int":
            values[s.name] = s.default + 3
        else:
            values[s.name] = s.default + 0.25
    return values


def _invoke(monkeypatch, args: list[str], env: dict[str, str]) -> GatewayConfig:
    seen: list[GatewayConfig] = []
    monkeypatch.setattr(
        "sealgate.gateway.run.run", lambda config, *args, **kwargs: seen.append(config)
    )
    result = CliRunner().invoke(gateway, args, env=env)
    assert result.exit_code == 0, result.output
    [config] = seen
    return config


def test_every_setting_is_settable_by_option_and_by_environment_variable(monkeypatch):
    wanted = _non_defaults()
    assert set(wanted) == {f.name for f in dataclasses.fields(GatewayConfig)}  # none missed
    expected = GatewayConfig(**wanted)  # type: ignore[arg-type]
    assert expected != GatewayConfig()
    args = ["--enclave", "http://127.0.0.1:9"]
    env: dict[str, str] = {"SEALGATE_GATEWAY_ENCLAVE": "http://127.0.0.1:9"}
    for s in settings_of(GatewayConfig, ENV_PREFIX):
        value = wanted[s.name]
        if s.kind == "flag":
            flag = s.names[0].removeprefix("--")
            args.append(f"--{flag}" if value else f"--no-{flag}")
            env[s.envvar] = "true" if value else "false"
        else:
            args += [s.names[0], str(value)]
            env[s.envvar] = str(value)
    assert _invoke(monkeypatch, args, {}) == expected
    assert _invoke(monkeypatch, [], env) == expected


def test_help_shows_an_option_and_a_variable_for_every_setting():
    result = CliRunner().invoke(gateway, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for s in settings_of(GatewayConfig, ENV_PREFIX):
        assert s.names[0] in text, s.name
        assert s.envvar in text, s.name
    assert len(settings_of(GatewayConfig, ENV_PREFIX)) == len(dataclasses.fields(GatewayConfig))
    for other in ("ENCLAVE", "ENCLAVES_DNS", "FLEET_FILE", "HOST", "PORT", "WORKERS", "LOG_LEVEL"):
        assert f"SEALGATE_GATEWAY_{other}" in text


def test_the_previous_option_spellings_still_work(monkeypatch):
    args = ["--enclave", "http://127.0.0.1:9", "--enclave", "http://127.0.0.1:10"]
    args += ["--enclaves-dns", "enclaves.local:8080", "--host", "127.0.0.1", "--port", "0"]
    args += ["--workers", "1", "--max-body-bytes", "10", "--max-connections", "5"]
    args += ["--poll-interval", "0.5", "--discovery-interval", "2", "--drain-timeout", "1"]
    args += ["--no-access-log", "--log-level", "warning"]
    config = _invoke(monkeypatch, args, {})
    assert (config.max_body_bytes, config.max_connections, config.access_log) == (10, 5, False)
    assert (config.poll_interval, config.discovery_interval, config.drain_timeout) == (0.5, 2, 1)
