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


def _snp_args(tmp_path, report: bytes, vcek: bytes) -> list[str]:
    (tmp_path / "report.bin").write_bytes(report)
    (tmp_path / "vcek.der").write_bytes(vcek)
    return [
        "verify-evidence",
        "--platform",
        "sev-snp",
        "--report",
        str(tmp_path / "report.bin"),
        "--vcek",
        str(tmp_path / "vcek.der"),
        "--at",
        "2026-01-22T00:00:00Z",
    ]


def test_a_malformed_vcek_is_refused_without_a_traceback(genoa, tmp_path):
    report, vcek, _ = genoa
    bad = bytearray(vcek)
    bad[12] ^= 0x01  # the version INTEGER becomes 3: cryptography raises InvalidVersion
    args = _snp_args(tmp_path, report, bytes(bad))
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 1 and isinstance(table.exception, SystemExit), table.output
    assert "Traceback" not in table.output
    assert "REFUSED" in table.output and "vcek format" in table.output
    assert "InvalidVersion" in table.output  # what the parser said, inside the refusal
    as_json = CliRunner().invoke(main, [*args, "--json"])
    assert as_json.exit_code == 1 and isinstance(as_json.exception, SystemExit)
    out = json.loads(as_json.output)
    assert not out["ok"] and [s["name"] for s in out["steps"] if not s["ok"]] == ["vcek format"]
    assert out["values"] == {} and out["report_data"] == ""


def test_json_report_data_has_one_source(genoa, tmp_path, vectors):
    report, vcek, _ = genoa
    result = CliRunner().invoke(main, [*_snp_args(tmp_path, report, vcek), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["report_data"] == report[0x50:0x90].hex()
    assert "report_data" not in out["values"]
    assert out["measurement"] == {"measurement": report[0x90:0xC0].hex()}
    assert out["values"]["chip_id"] == report[0x1A0:0x1E0].hex()

    folder = vectors / "tdx-quote-v4"
    args = ["verify-evidence", "--platform", "tdx", "--quote", str(folder / "quote.bin")]
    args += ["--collateral", str(folder / "collateral"), "--at", "2026-01-20T00:00:00Z", "--json"]
    tdx = json.loads(CliRunner().invoke(main, args).output)
    expected = json.loads((folder / "expected.json").read_text())["expected"]
    assert tdx["report_data"] == (
        expected["report_data_0_32_tls_spki_sha256"]
        + expected["report_data_32_64_hpke_x25519_public_key"]
    )
    assert "report_data" not in tdx["values"] and tdx["values"]["fmspc"] == "90c06f000000"
    table = CliRunner().invoke(main, args[:-1])
    assert f"report_data:{tdx['report_data']}" in "".join(table.output.split())  # wrapped
