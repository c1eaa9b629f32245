"""``sealgate verify`` and ``sealgate chat`` against a real fleet on loopback."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sealgate.client.cli import main


def _policy_args(policy) -> list[str]:
    return [
        "--software-root",
        policy.software_roots[0].hex(),
        "--measurement",
        "software:" + policy.measurements[0].registers["measurement"],
    ]


def test_verify_fleet_json_and_table(trio):
    gw, policy = trio
    runner = CliRunner()
    result = runner.invoke(main, ["verify", gw.url, "--json", *_policy_args(policy)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and len(report["enclaves"]) == 3
    assert all(s["ok"] for e in report["enclaves"] for s in e["steps"])
    table = runner.invoke(main, ["verify", gw.url, *_policy_args(policy)])
    assert table.exit_code == 0 and "VERIFIED" in table.output and "3 of 3" in table.output


def test_verify_single_enclave_with_fresh_nonce(fleet):
    from sealgate.client import Policy

    server = fleet.enclave()
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    result = CliRunner().invoke(main, ["verify", server.url, "--json", *_policy_args(policy)])
    assert result.exit_code == 0, result.output
    steps = json.loads(result.output)["enclaves"][0]["steps"]
    assert any(s["name"] == "fresh nonce" and s["ok"] for s in steps)


def test_verify_fails_with_exit_1_and_names_the_step(trio):
    gw, policy = trio
    args = [
        "--software-root",
        policy.software_roots[0].hex(),
        "--measurement",
        "software:" + "00" * 48,
    ]
    result = CliRunner().invoke(main, ["verify", gw.url, "--json", *args])
    assert result.exit_code == 1
    report = json.loads(result.output)
    failed = [s for e in report["enclaves"] for s in e["steps"] if not s["ok"]]
    assert {s["name"] for s in failed} == {"measurement"}


def test_verify_default_policy_refuses_software(trio):
    gw, _ = trio
    result = CliRunner().invoke(main, ["verify", gw.url, "--json"])
    assert result.exit_code == 1
    steps = {
        s["name"] for e in json.loads(result.output)["enclaves"] for s in e["steps"] if not s["ok"]
    }
    assert steps == {"platform allowed"}


def test_chat_streams_an_encrypted_answer(trio):
    pytest.importorskip("openai")
    gw, policy = trio
    result = CliRunner().invoke(
        main, ["chat", "--gateway", gw.url, "hello cli", *_policy_args(policy)]
    )
    assert result.exit_code == 0, result.output
    assert "You said: hello cli" in result.output
