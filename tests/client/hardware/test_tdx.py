"""Intel TDX verification on a real v4 quote with captured Intel PCS collateral, offline."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import struct
import urllib.parse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
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
from sealgate.protocol.evidence.attestation import AttestationDocument

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


def _with_chain(quote: bytes, pem: bytes, qe_report_signature: bytes | None = None) -> bytes:
    """The quote with its PCK certificate chain (and QE report signature) replaced."""
    parsed = TdxQuote.from_bytes(quote)
    inner = (
        parsed.qe_report
        + (qe_report_signature or parsed.qe_report_signature)
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
    swapped = _with_chain(quote, tcb_chain.encode())
    # The PCK CRLs name the PCK CAs, not the root that issued this "PCK": refused there.
    with pytest.raises(CertificateChainError, match="pck crl"):
        _verify(swapped, collateral)
    without_crls = dataclasses.replace(collateral, pck_crls=(), root_ca_crls=())
    with pytest.raises(EvidenceSignatureError, match="qe report signature"):
        _verify(swapped, without_crls, policy=TdxPolicy(require_crls=False))


def test_a_wrong_root_is_refused(tdx, monkeypatch, vectors):
    quote, collateral, _, _ = tdx
    amd_ark = x509.load_pem_x509_certificates((vectors / "amd" / "ask_ark_genoa.pem").read_bytes())[
        1
    ]
    monkeypatch.setattr(tdx_module, "_sgx_root", lambda: amd_ark)
    with pytest.raises(CertificateChainError, match="pck root"):
        _verify(quote, collateral)


def test_expired_collateral_time_is_refused(tdx):
    quote, collateral, _, _ = tdx
    march = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()
    # The PCK CRL's nextUpdate (2026-02-11) passes first: revocation status unknown.
    with pytest.raises(CertificateChainError, match="pck crl validity"):
        _verify(quote, collateral, march)
    without_crls = dataclasses.replace(collateral, pck_crls=(), root_ca_crls=())
    with pytest.raises(TcbError, match="tcb info validity"):
        _verify(quote, without_crls, march, TdxPolicy(require_crls=False))


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
    from sealgate.protocol.public.keyconfig import encode_key_configs
    from sealgate.protocol.sealing.hpke import PrivateKey

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


# --- The PCK chain's structure and revocation, on a chain of our own (Intel's can't be re-signed).


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, issuer_name, key, signer, *, ca, path_length=None, extensions=(), serial=None):
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer, hashes.SHA256())


def _crl(issuer_name, signer, revoked=(), *, next_update=dt.datetime(2026, 2, 1, tzinfo=dt.UTC)):
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_name(issuer_name))
        .last_update(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        .next_update(next_update)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
            .build()
        )
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class OwnPki:
    """Root -> PCK CA -> PCK of our own; the PCK carries the real PCK's SGX extension."""

    def __init__(self, real_pck: x509.Certificate) -> None:
        self.root_key, self.ca_key, self.pck_key = (
            ec.generate_private_key(ec.SECP256R1()) for _ in range(3)
        )
        self.root = _cert(
            "Test Root CA", "Test Root CA", self.root_key, self.root_key, ca=True, path_length=1
        )
        self.sgx = real_pck.extensions.get_extension_for_oid(
            x509.ObjectIdentifier("1.2.840.113741.1.13.1")
        ).value

    def chain(self, *, ca_is_ca=True, leaf_is_ca=False, leaf_issuer="Test PCK CA", root=None):
        ca = _cert(
            "Test PCK CA",
            "Test Root CA",
            self.ca_key,
            self.root_key,
            ca=ca_is_ca,
            path_length=0 if ca_is_ca else None,
        )
        pck = _cert(
            "Test PCK", leaf_issuer, self.pck_key, self.ca_key, ca=leaf_is_ca, extensions=[self.sgx]
        )
        return [pck, ca, root or self.root]

    def quote(self, quote: bytes, chain) -> bytes:
        """The quote with this chain and its QE report re-signed by our PCK key."""
        parsed = TdxQuote.from_bytes(quote)
        r, s = decode_dss_signature(self.pck_key.sign(parsed.qe_report, ec.ECDSA(hashes.SHA256())))
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        return _with_chain(quote, pem, r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@pytest.fixture
def own_pki(tdx, monkeypatch):
    quote, collateral, _, _ = tdx
    real_pck = x509.load_pem_x509_certificates(TdxQuote.from_bytes(quote).pck_chain_pem)[0]
    pki = OwnPki(real_pck)
    monkeypatch.setattr(tdx_module, "_sgx_root", lambda: pki.root)
    good_crls = dataclasses.replace(
        collateral,
        pck_crls=(_crl("Test PCK CA", pki.ca_key),),
        root_ca_crls=(_crl("Test Root CA", pki.root_key),),
    )
    return pki, quote, good_crls


def test_own_chain_passes_every_pck_check(own_pki):
    """Control for the tests below: only Intel's collateral (under Intel's root) stops it."""
    pki, quote, collateral = own_pki
    with pytest.raises(CertificateChainError) as excinfo:
        _verify(pki.quote(quote, pki.chain()), collateral)
    assert excinfo.value.step == "tcb info root"
    passed = {s.name for s in excinfo.value.verification.steps if s.ok}
    assert {
        "pck chain names",
        "pck basic constraints",
        "pck crl signature",
        "pck crl validity",
        "pck not revoked",
        "pck ca not revoked",
        "qe report signature",
        "quote signature",
    } <= passed


@pytest.mark.parametrize(
    ("chain_options", "step"),
    [
        ({"leaf_issuer": "Someone Else"}, "pck chain names"),
        ({"ca_is_ca": False}, "pck basic constraints"),
        ({"leaf_is_ca": True}, "pck basic constraints"),
    ],
    ids=["names-do-not-chain", "ca-false-intermediate", "leaf-is-a-ca"],
)
def test_a_malformed_pck_chain_is_refused(own_pki, chain_options, step):
    pki, quote, collateral = own_pki
    with pytest.raises(CertificateChainError) as excinfo:
        _verify(pki.quote(quote, pki.chain(**chain_options)), collateral)
    assert excinfo.value.step == step


def test_a_root_whose_path_length_is_exceeded_is_refused(own_pki, monkeypatch):
    pki, quote, collateral = own_pki
    strict_root = _cert(
        "Test Root CA", "Test Root CA", pki.root_key, pki.root_key, ca=True, path_length=0
    )
    monkeypatch.setattr(tdx_module, "_sgx_root", lambda: strict_root)
    with pytest.raises(CertificateChainError) as excinfo:
        _verify(pki.quote(quote, pki.chain(root=strict_root)), collateral)
    assert excinfo.value.step == "pck basic constraints"
    assert "path length" in excinfo.value.verification.failed_step.detail


def test_a_revoked_pck_is_refused(own_pki):
    pki, quote, collateral = own_pki
    chain = pki.chain()
    revoking = dataclasses.replace(
        collateral, pck_crls=(_crl("Test PCK CA", pki.ca_key, [chain[0].serial_number]),)
    )
    with pytest.raises(CertificateChainError) as excinfo:
        _verify(pki.quote(quote, chain), revoking)
    assert excinfo.value.step == "pck not revoked"
    assert "REVOKED" in excinfo.value.verification.failed_step.detail


def test_a_revoked_pck_ca_is_refused(own_pki):
    pki, quote, collateral = own_pki
    chain = pki.chain()
    revoking = dataclasses.replace(
        collateral, root_ca_crls=(_crl("Test Root CA", pki.root_key, [chain[1].serial_number]),)
    )
    with pytest.raises(CertificateChainError) as excinfo:
        _verify(pki.quote(quote, chain), revoking)
    assert excinfo.value.step == "pck ca not revoked"


def test_a_crl_not_signed_by_its_issuer_or_stale_is_refused(own_pki):
    pki, quote, collateral = own_pki
    signed_quote = pki.quote(quote, pki.chain())
    forged = dataclasses.replace(collateral, pck_crls=(_crl("Test PCK CA", pki.pck_key),))
    with pytest.raises(CertificateChainError, match="pck crl signature"):
        _verify(signed_quote, forged)
    stale = dataclasses.replace(
        collateral,
        pck_crls=(
            _crl("Test PCK CA", pki.ca_key, next_update=dt.datetime(2026, 1, 10, tzinfo=dt.UTC)),
        ),
    )
    with pytest.raises(CertificateChainError, match="pck crl validity"):
        _verify(signed_quote, stale)
    unrelated = dataclasses.replace(collateral, pck_crls=(_crl("Another CA", pki.ca_key),))
    with pytest.raises(CertificateChainError, match="pck crl failed"):
        _verify(signed_quote, unrelated)


def test_real_quote_is_checked_against_intels_real_crls(tdx):
    quote, collateral, _, folder = tdx
    assert len(collateral.pck_crls) == 2 and len(collateral.root_ca_crls) == 1
    _, record = _verify(quote, collateral)
    steps = {s.name: s for s in record.steps}
    assert record.ok
    assert {
        "pck crl signature",
        "pck not revoked",
        "pck ca crl signature",
        "pck ca not revoked",
    } <= set(steps)
    # The same CRLs reach the verifier through an attestation document's collateral.
    files = {p.name: p.read_bytes() for p in (folder / "collateral").iterdir()}
    assert Collateral.from_mapping(files, FMSPC) == collateral


def test_collateral_without_crls_is_refused_unless_the_policy_allows_it(tdx):
    quote, collateral, _, _ = tdx
    bare = dataclasses.replace(collateral, pck_crls=(), root_ca_crls=())
    with pytest.raises(CertificateChainError, match="no PCK CRL"):
        _verify(quote, bare)
    _, record = _verify(quote, bare, policy=TdxPolicy(require_crls=False))
    steps = {s.name: s for s in record.steps}
    assert record.ok
    assert steps["pck revocation"].detail.startswith("not checked")
    assert steps["pck ca revocation"].detail.startswith("not checked")
