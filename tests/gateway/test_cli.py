"""``sealgate gateway`` flags reach the data plane's configuration."""

from __future__ import annotations

from click.testing import CliRunner
from sealgate.gateway import GatewayConfig
from sealgate.gateway.cli import gateway


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
