"""``sealgate verify-evidence`` for auditors, on the real captures."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sealgate.client.cli import main


def test_sev_snp_evidence(genoa, tmp_path):
    report, vcek, _ = genoa
    (tmp_path / "report.bin").write_bytes(report)
    (tmp_path / "vcek.der").write_bytes(vcek)
    args = [
        "verify-evidence",
        "--platform",
        "sev-snp",
        "--report",
        str(tmp_path / "report.bin"),
        "--vcek",
        str(tmp_path / "vcek.der"),
        "--at",
        "2026-01-22T00:00:00Z",
        "--json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["ok"] and out["values"]["measurement"] == report[0x90:0xC0].hex()
    expired = CliRunner().invoke(main, [*args[:-3], "--at", "2040-01-01T00:00:00Z", "--json"])
    assert expired.exit_code == 1
    assert [s["name"] for s in json.loads(expired.output)["steps"] if not s["ok"]] == [
        "vcek validity"
    ]


def test_tdx_evidence(vectors):
    folder = vectors / "tdx-quote-v4"
    args = [
        "verify-evidence",
        "--platform",
        "tdx",
        "--quote",
        str(folder / "quote.bin"),
        "--collateral",
        str(folder / "collateral"),
        "--at",
        "2026-01-20T00:00:00Z",
    ]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    expected = json.loads((folder / "expected.json").read_text())["expected"]
    assert out["values"]["rtmr1"] == expected["registers_mrtd_rtmr0_rtmr1_rtmr2_rtmr3"][2]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0 and "VERIFIED" in table.output and "quote signature" in table.output
