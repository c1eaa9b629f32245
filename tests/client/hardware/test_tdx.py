"""Intel TDX verification on a real v4 quote with captured Intel PCS collateral, offline."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import struct
import urllib.parse

import pytest
from sealgate.client import ExpectedMeasurement, Policy, TdxPolicy, Verification, verify_document
from sealgate.client.errors import (
    CertificateChainError,
    EvidenceFormatError,
    EvidenceSignatureError,
    PlatformPolicyError,
    TcbError,
    VerificationError,
)
from sealgate.client.verify import tdx as tdx_module
from sealgate.client.verify.tdx import Collateral, TdxQuote, check_td_policy, verify_tdx
from sealgate.protocol import AttestationDocument

INSIDE = dt.datetime(2026, 1, 20, tzinfo=dt.UTC).timestamp()
FMSPC = "90c06f000000"


@pytest.fixture(scope="module")
def tdx(vectors):
    folder = vectors / "tdx-quote-v4"
    quote = (folder / "quote.bin").read_bytes()
    collateral = Collateral.from_directory(folder / "collateral", FMSPC)
    expected = json.loads((folder / "expected.json").read_text())["expected"]
    return quote, collateral, expected, folder


def _verify(quote, collateral, when=INSIDE, policy=None):
    record = Verification("tdx")
    return verify_tdx(quote, collateral, policy or TdxPolicy(), record, when), record


def test_real_quote_verifies_and_yields_the_expected_registers(tdx):
    quote, collateral, expected, _ = tdx
    parsed, record = _verify(quote, collateral)
    assert record.ok
    registers = parsed.td_report.registers()
    assert [registers[n] for n in ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3")] == expected[
        "registers_mrtd_rtmr0_rtmr1_rtmr2_rtmr3"
    ]
    assert parsed.td_report.report_data[:32].hex() == expected["report_data_0_32_tls_spki_sha256"]
    assert (
        parsed.td_report.report_data[32:].hex()
        == expected["report_data_32_64_hpke_x25519_public_key"]
    )
    names = {s.name for s in record.steps}
    assert {
        "pck root",
        "qe report signature",
        "attestation key binding",
        "quote signature",
        "tcb info signature",
        "qe identity signature",
        "tcb status",
        "td debug disabled",
    } <= names


def test_every_single_bit_flip_in_the_signed_part_is_refused(tdx):
    quote, collateral, _, _ = tdx
    for byte in range(632):
        for bit in range(8):
            flipped = bytearray(quote)
            flipped[byte] ^= 1 << bit
            with pytest.raises(VerificationError):
                _verify(bytes(flipped), collateral)


def _with_chain(quote: bytes, pem: bytes) -> bytes:
    """The quote with its PCK certificate chain replaced (lengths fixed up)."""
    parsed = TdxQuote.from_bytes(quote)
    quote[: 632 + 4 + 128 + 6]
    inner = (
        parsed.qe_report
        + parsed.qe_report_signature
        + struct.pack("<H", len(parsed.qe_auth_data))
        + parsed.qe_auth_data
    )
    inner += struct.pack("<HI", 5, len(pem)) + pem
    cert_data = struct.pack("<HI", 6, len(inner)) + inner
    sig = parsed.signature + parsed.attestation_key + cert_data
    return quote[:632] + struct.pack("<I", len(sig)) + sig


def test_swapped_pck_is_refused(tdx):
    quote, collateral, _, folder = tdx
    # Intel's real TCB signing chain, in place of the PCK chain: it chains to the same root,
    # but that key did not sign the quoting enclave's report.
    tcb_chain = urllib.parse.unquote(
        (folder / "collateral" / "tcb_info_90c06f000000_chain.txt").read_text()
    )
    with pytest.raises((EvidenceSignatureError, EvidenceFormatError)):
        _verify(_with_chain(quote, tcb_chain.encode()), collateral)


def test_a_wrong_root_is_refused(tdx, monkeypatch, vectors):
    quote, collateral, _, _ = tdx
    from cryptography import x509

    amd_ark = x509.load_pem_x509_certificates((vectors / "amd" / "ask_ark_genoa.pem").read_bytes())[
        1
    ]
    monkeypatch.setattr(tdx_module, "_sgx_root", lambda: amd_ark)
    with pytest.raises(CertificateChainError, match="pck root"):
        _verify(quote, collateral)


def test_expired_collateral_time_is_refused(tdx):
    quote, collateral, _, _ = tdx
    with pytest.raises(TcbError, match="tcb info validity"):
        _verify(quote, collateral, dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp())


def test_collateral_for_another_platform_is_refused(tdx):
    quote, _, _, folder = tdx
    with pytest.raises(TcbError, match="fmspc"):
        _verify(quote, Collateral.from_directory(folder / "collateral", "00a06d080000"))


def test_tampered_collateral_signature_is_refused(tdx):
    quote, collateral, _, _ = tdx
    tampered = dataclasses.replace(
        collateral, tcb_info=collateral.tcb_info.replace(b'"UpToDate"', b'"UpToDatf"', 1)
    )
    with pytest.raises(EvidenceSignatureError, match="tcb info signature"):
        _verify(quote, tampered)


def test_tcb_status_outside_the_accepted_set_is_refused(tdx):
    quote, collateral, _, _ = tdx
    with pytest.raises(TcbError):
        _verify(
            quote,
            collateral,
            policy=TdxPolicy(accepted_tcb_statuses=frozenset({"SWHardeningNeeded"})),
        )


def test_debug_td_is_refused_by_default(tdx):
    quote, _, _, _ = tdx
    report = TdxQuote.from_bytes(quote).td_report
    debug = dataclasses.replace(report, td_attributes=b"\x01" + report.td_attributes[1:])
    with pytest.raises(PlatformPolicyError, match="debug"):
        check_td_policy(Verification("tdx"), debug, TdxPolicy())
    check_td_policy(Verification("tdx"), debug, TdxPolicy(allow_debug=True))
    check_td_policy(Verification("tdx"), report, TdxPolicy())


def test_malformed_quotes_are_format_errors(tdx):
    quote, collateral, _, _ = tdx
    for bad in (quote[:600], b"\x05" + quote[1:], quote[:-71] + b"\x01" * 71):
        with pytest.raises(EvidenceFormatError):
            _verify(bad, collateral)


def test_tdx_document_through_the_client_verifier_interface(tdx):
    quote, _collateral, expected, folder = tdx
    files = {p.name: p.read_bytes() for p in (folder / "collateral").iterdir()}
    from sealgate.protocol import PrivateKey, encode_key_configs

    document = AttestationDocument(
        platform="tdx",
        key_configs=encode_key_configs([PrivateKey.generate().key_config()]),
        evidence=quote,
        collateral=files,
    )
    regs = expected["registers_mrtd_rtmr0_rtmr1_rtmr2_rtmr3"]
    policy = Policy().with_measurements(
        ExpectedMeasurement("tdx", {"rtmr1": regs[2], "rtmr2": regs[3]})
    )
    with pytest.raises(VerificationError) as excinfo:
        verify_document(document, policy, now=INSIDE)
    assert (
        excinfo.value.step == "report_data binding"
    )  # hardware fine, but Tinfoil's keys, not ours
    assert excinfo.value.verification.measurement["rtmr1"] == regs[2]
