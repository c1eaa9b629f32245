"""``sealgate redteam``: the catalogue against the SDK, the CLI, a weakened SDK, EHBP clients.

The parametrized test runs the very entries the command runs, so tool and tests cannot
drift apart: a defence the threat model promises that stops working fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sealgate.client.cli import main
from sealgate.client.redteam import CATALOGUE, Outcome
from sealgate.client.redteam.runner import SdkSubject, local_adversary, run_attacks

from ..clirunner import stderr_runner
from ..gateway.test_ehbp_fleet import npm_ehbp  # noqa: F401 - the session fixture

#: Rows whose honest answer is a known limit even for the SDK (README, "Known limits").
LIMITS = {"token-lengths"}
#: Slow by design (the gateway's 15 s header and 30 s body deadlines): the CLI run below.
SLOW = {a.id for a in CATALOGUE if a.slow}
EHBP_LIMITS = {"resp-truncate-boundary", "status-rewrite", "replay-enclave"}


@pytest.fixture(scope="module")
def adversary():
    with local_adversary() as (ctx, fleet):
        ctx.subject = SdkSubject(fleet.policy())
        yield ctx


@pytest.mark.parametrize("attack", [a for a in CATALOGUE if a.id not in SLOW], ids=lambda a: a.id)
def test_every_promised_defence_holds_in_the_sdk(adversary, attack):
    [row] = run_attacks(adversary, [attack], {"client", "gateway", "enclave"})
    expected = Outcome.LIMIT if attack.id in LIMITS else Outcome.CAUGHT
    assert row.result.outcome is expected, row.result.evidence


def _run(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["redteam", "--json", *args], catch_exceptions=False)
    return result.exit_code, json.loads(result.output[result.output.index("{") :])


def test_the_command_reports_every_promised_defence_caught():
    done = subprocess.run(
        [sys.executable, "-c", "from sealgate.client.cli import main; main()", "redteam", "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(done.stdout)
    rows = {row["id"]: row for row in report["rows"]}
    assert set(rows) == {a.id for a in CATALOGUE}
    for attack_id, row in rows.items():
        expected = "not caught (limit of the protocol)" if attack_id in LIMITS else "caught"
        assert row["result"] == expected, row
        assert row["promise"] and row["evidence"]
    assert done.returncode == 0 and report["ok"] is True


def test_a_client_that_ignores_the_final_chunk_fails_the_truncation_rows():
    code, report = _run(
        "--sdk",
        "tests.client.redteam_weak:weak_client",
        "--only",
        "resp-truncate-boundary",
        "--only",
        "resp-bitflip",
    )
    rows = {row["id"]: row for row in report["rows"]}
    assert rows["resp-truncate-boundary"]["result"] == "not caught"
    assert "accepted tampered data" in rows["resp-truncate-boundary"]["evidence"]
    assert rows["resp-bitflip"]["result"] == "caught"  # the AEAD itself still holds
    assert code == 1 and report["ok"] is False


def _ehbp_rows(code: int, report: dict) -> dict[str, dict]:
    rows = {row["id"]: row for row in report["rows"]}
    for attack_id in EHBP_LIMITS:
        assert rows[attack_id]["result"] == "not caught (limit of the protocol)", rows[attack_id]
    assert rows["resp-bitflip"]["result"] == "caught"
    return rows


def _ehbp_args() -> list[str]:
    args = []
    for attack_id in [*sorted(EHBP_LIMITS), "resp-bitflip", "key-substitution"]:
        args += ["--only", attack_id]
    return args


def test_tinfoil_python_ehbp_client_shows_the_documented_limits():
    pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    code, report = _run("--client-cmd", "tinfoil-ehbp", *_ehbp_args())
    rows = _ehbp_rows(code, report)
    # The bare EHBP transport seals to whatever key it is served: a finding, not a limit.
    assert rows["key-substitution"]["result"] == "not caught"
    assert code == 1


def test_npm_ehbp_client_shows_the_documented_limits(npm_ehbp, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SEALGATE_REDTEAM_EHBP_DIR", str(npm_ehbp))
    code, report = _run("--client-cmd", "npm-ehbp", *_ehbp_args())
    rows = _ehbp_rows(code, report)
    assert rows["key-substitution"]["result"] == "not caught"


def test_a_deployed_gateway_is_attacked_only_when_named_and_with_a_warning(adversary):
    code, report = _run(
        "--gateway", adversary.gateway_url, "--only", "gw-smuggling", "--only", "gw-malformed"
    )
    assert [row["result"] for row in report["rows"]] == ["caught", "caught"]
    assert code == 0
    warned = stderr_runner().invoke(
        main, ["redteam", "--gateway", adversary.gateway_url, "--only", "gw-malformed"]
    )
    assert "only on systems you operate" in " ".join(warned.stderr.split())
    result = CliRunner().invoke(main, ["redteam", "--gateway", "ftp://127.0.0.1:9"])
    assert result.exit_code == 2 and "not an http(s) URL" in result.output
