"""A failed step's detail says what failed; it never repeats the wording of a pass."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re

import pytest
from rich.console import Console
from sealgate.client import SnpPolicy, TdxPolicy, Verification
from sealgate.client.cli.report import render_verifications
from sealgate.client.der import read_tlv
from sealgate.client.errors import VerificationError
from sealgate.client.verify.sev_snp import verify_snp
from sealgate.client.verify.tdx import Collateral, TdxQuote, check_td_policy, verify_tdx

#: Words by which a failure says what went wrong.
NEGATIVE = re.compile(
    r"\b(not|NOT|no|did not|does not|differs?|exceeds|below|older|REVOKED|ALLOWS|allows|"
    r"another|malformed|unknown|mismatch)\b"
)


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= mask
    return bytes(changed)


def _failed(verify) -> Verification:
    with pytest.raises(VerificationError) as excinfo:
        verify()
    return excinfo.value.verification


def _assert_reads_as_a_failure(failed: Verification, passing: Verification) -> None:
    step = failed.failed_step
    assert step is not None
    pass_wordings = {s.detail for s in passing.steps if s.name == step.name}
    assert step.detail not in pass_wordings, f"{step.name}: {step.detail!r} reads like a pass"
    assert NEGATIVE.search(step.detail), f"{step.name}: {step.detail!r} does not say what failed"
    # What people see: the table row of the failed step carries the failure wording.
    out = io.StringIO()
    render_verifications(Console(file=out, width=400), [failed])
    row = next(
        line for line in out.getvalue().splitlines() if f" {step.name} " in line and "FAIL" in line
    )
    assert step.detail in row


def _outer_algorithm_end(vcek: bytes) -> int:
    """Offset of the last byte of the VCEK's outer signatureAlgorithm."""
    _, body, _ = read_tlv(vcek)
    start = len(vcek) - len(body)
    _, _, tbs_end = read_tlv(body)
    _, _, algorithm_end = read_tlv(body, tbs_end)
    return start + algorithm_end - 1


def _snp_cases(report: bytes, vcek: bytes, when: float, vectors):
    late = dt.datetime(2040, 1, 1, tzinfo=dt.UTC).timestamp()
    debug = vectors / "sev-snp-milan-go-sev-guest"
    milan = dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()
    return {
        "vcek tcb": (_flip(report, 0x180), vcek, when, SnpPolicy()),
        "chip id": (_flip(report, 0x1A0), vcek, when, SnpPolicy()),
        "signature algorithm": (_flip(report, 0x34, 0x02), vcek, when, SnpPolicy()),
        "report signature": (_flip(report, 0x90), vcek, when, SnpPolicy()),
        "report format": (_flip(report, 0x400), vcek, when, SnpPolicy()),
        "vcek signed by ask": (report, _flip(vcek, len(vcek) - 1), when, SnpPolicy()),
        "vcek signature algorithm": (
            report,
            _flip(vcek, _outer_algorithm_end(vcek)),
            when,
            SnpPolicy(),
        ),
        "vcek validity": (report, vcek, late, SnpPolicy()),
        "minimum tcb": (report, vcek, when, SnpPolicy(min_tcb={"snp": 99})),
        "debug disabled": (
            (debug / "report.bin").read_bytes(),
            (debug / "vcek.der").read_bytes(),
            milan,
            SnpPolicy(),
        ),
    }


def test_failed_sev_snp_steps_say_what_failed(genoa, vectors):
    report, vcek, when = genoa
    passing = Verification("pass")
    verify_snp(report, vcek, SnpPolicy(), passing, when)
    debug = vectors / "sev-snp-milan-go-sev-guest"
    debug_passing = Verification("pass")
    verify_snp(
        (debug / "report.bin").read_bytes(),
        (debug / "vcek.der").read_bytes(),
        SnpPolicy(allow_debug=True),
        debug_passing,
        dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp(),
    )
    for name, (rep, cert, at, policy) in _snp_cases(report, vcek, when, vectors).items():
        failed = _failed(
            lambda r=rep, c=cert, t=at, p=policy: verify_snp(r, c, p, Verification("f"), t)
        )
        assert failed.failed_step.name == name
        reference = debug_passing if name == "debug disabled" else passing
        _assert_reads_as_a_failure(failed, reference)
    # The example, verbatim.
    failed = _failed(
        lambda: verify_snp(_flip(report, 0x180), vcek, SnpPolicy(), Verification("f"), when)
    )
    assert "was issued for the report's reported TCB" not in failed.failed_step.detail


def test_failed_tdx_steps_say_what_failed(vectors):
    folder = vectors / "tdx-quote-v4"
    quote = (folder / "quote.bin").read_bytes()
    collateral = Collateral.from_directory(folder / "collateral", "90c06f000000")
    when = dt.datetime(2026, 1, 20, tzinfo=dt.UTC).timestamp()
    march = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()
    no_crls = dataclasses.replace(collateral, pck_crls=(), root_ca_crls=())
    tampered = dataclasses.replace(
        collateral, tcb_info=collateral.tcb_info.replace(b'"UpToDate"', b'"UpToDatf"', 1)
    )
    other = Collateral.from_directory(folder / "collateral", "00a06d080000")
    passing = Verification("pass")
    verify_tdx(quote, collateral, TdxPolicy(), passing, when)
    cases = {
        "quote signature": (_flip(quote, 100), collateral, when, TdxPolicy()),
        "pck validity": (
            quote,
            collateral,
            dt.datetime(2034, 1, 1, tzinfo=dt.UTC).timestamp(),
            TdxPolicy(),
        ),
        "pck crl validity": (quote, collateral, march, TdxPolicy()),
        "tcb info validity": (quote, no_crls, march, TdxPolicy(require_crls=False)),
        "pck revocation": (quote, no_crls, when, TdxPolicy()),
        "tcb info signature": (quote, tampered, when, TdxPolicy()),
        "tcb info fmspc": (quote, other, when, TdxPolicy()),
        "qe tcb status": (
            quote,
            collateral,
            when,
            TdxPolicy(accepted_tcb_statuses=frozenset({"SWHardeningNeeded"})),
        ),
    }
    for name, (q, c, at, policy) in cases.items():
        failed = _failed(lambda q=q, c=c, t=at, p=policy: verify_tdx(q, c, p, Verification("f"), t))
        assert failed.failed_step.name == name
        _assert_reads_as_a_failure(failed, passing)
    report = TdxQuote.from_bytes(quote).td_report
    debug = dataclasses.replace(report, td_attributes=b"\x01" + report.td_attributes[1:])
    failed = _failed(lambda: check_td_policy(Verification("f"), debug, TdxPolicy()))
    _assert_reads_as_a_failure(failed, passing)


def test_a_check_without_failure_wording_is_marked_as_unmet():
    record = Verification("plain")
    with pytest.raises(VerificationError):
        record.check("binding", False, "the keys are bound")
    assert record.failed_step.detail == "requirement not met: the keys are bound"
