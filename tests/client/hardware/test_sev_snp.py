"""AMD SEV-SNP verification on real reports, offline, with the verification time as a parameter."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sealgate.client import ExpectedMeasurement, Policy, SnpPolicy, Verification, verify_document
from sealgate.client.errors import (
    CertificateChainError,
    EvidenceFormatError,
    EvidenceSignatureError,
    PlatformPolicyError,
    TcbError,
    VerificationError,
)
from sealgate.client.verify.sev_snp import (
    ARK_FINGERPRINTS,
    SnpReport,
    _shipped_chain,
    verify_snp,
)
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.public.keyconfig import encode_key_configs
from sealgate.protocol.sealing.hpke import PrivateKey

MILAN_2025 = dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()


def _verify(report, vcek, when, policy=None):
    policy = policy or SnpPolicy()
    record = Verification("test")
    return verify_snp(report, vcek, policy, record, when), record


def _hpke_key_from_san(cert: x509.Certificate) -> bytes:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    parts = sorted(
        n.split(".")[0]
        for n in names.get_values_for_type(x509.DNSName)
        if n.endswith(".hpke.tinfoil.sh")
    )
    data = "".join(p[2:] for p in parts).upper()
    return base64.b32decode(data + "=" * (-len(data) % 8))


def test_real_genoa_report_verifies_against_the_shipped_roots(genoa, tinfoil_bundle):
    report_bytes, vcek, when = genoa
    report, record = _verify(report_bytes, vcek, when)
    assert record.ok and len(record.steps) >= 15
    # The measurement is the one the release's Sigstore predicate names.
    envelope = tinfoil_bundle["sigstoreBundle"]["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert report.measurement.hex() == statement["predicate"]["snp_measurement"]
    # report_data = SHA-256(the enclave certificate's SPKI) || the HPKE key.
    cert = x509.load_pem_x509_certificate(tinfoil_bundle["enclaveCert"].encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert report.report_data == hashlib.sha256(spki).digest() + _hpke_key_from_san(cert)
    assert report.version == 3 and not report.debug_allowed and report.vmpl == 0


@pytest.mark.parametrize(
    ("folder", "report", "cert"),
    [
        ("sev-snp-milan-virtee", "report.bin", "vcek.der"),
        ("sev-snp-milan-azure", "report.bin", "vcek_kds.der"),
        ("sev-snp-milan-aws-vlek", "report.bin", "vlek.pem"),
    ],
)
def test_other_real_milan_reports_verify(vectors, folder, report, cert):
    parsed, record = _verify(
        (vectors / folder / report).read_bytes(), (vectors / folder / cert).read_bytes(), MILAN_2025
    )
    assert record.ok
    assert parsed.signed_by_vlek == cert.startswith("vlek")


def test_the_azure_vcek_as_azure_serves_it_verifies_too(vectors):
    folder = vectors / "sev-snp-milan-azure"
    _, record = _verify(
        (folder / "report.bin").read_bytes(),
        (folder / "vcek_azure_thim.pem").read_bytes(),
        MILAN_2025,
    )
    assert record.ok


def test_debug_policy_is_refused_by_default(vectors):
    folder = vectors / "sev-snp-milan-go-sev-guest"
    report, vcek = (folder / "report.bin").read_bytes(), (folder / "vcek.der").read_bytes()
    with pytest.raises(PlatformPolicyError, match="debug") as excinfo:
        _verify(report, vcek, MILAN_2025)
    assert excinfo.value.verification.failed_step.name == "debug disabled"
    _, record = _verify(report, vcek, MILAN_2025, SnpPolicy(allow_debug=True))
    assert record.ok  # the signatures themselves are fine


def test_vlek_that_did_not_sign_the_report(vectors):
    folder = vectors / "sev-snp-vlek-mismatch"
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
    with pytest.raises(EvidenceSignatureError):
        _verify((folder / "report.bin").read_bytes(), (folder / "vlek.pem").read_bytes(), when)


def test_turin_vcek_chains_to_the_shipped_turin_root(vectors):
    vcek = x509.load_der_x509_certificate(
        (vectors / "sev-snp-turin-vcek" / "vcek.der").read_bytes()
    )
    ask, ark = _shipped_chain("Turin", False)
    ask.public_key().verify(
        vcek.signature,
        vcek.tbs_certificate_bytes,
        padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
        hashes.SHA384(),
    )
    assert ark.fingerprint(hashes.SHA256()).hex() == ARK_FINGERPRINTS["Turin"]


# Every single-bit flip of the report and the VCEK: tests/client/hardware/test_bitflips.py.


def _with_outer_algorithm(vcek: bytes, algorithm: bytes) -> bytes:
    """The certificate with its outer signatureAlgorithm replaced (outer length fixed up)."""
    from sealgate.client.der import read_tlv

    _, body, _ = read_tlv(vcek)
    _, _, tbs_end = read_tlv(body)
    _, _, algorithm_end = read_tlv(body, tbs_end)
    content = body[:tbs_end] + algorithm + body[algorithm_end:]
    return b"\x30\x82" + len(content).to_bytes(2, "big") + content


def test_outer_signature_algorithm_must_equal_the_signed_one(genoa):
    """RFC 5280 §4.1.1.2; the signature covers only the inner one, so a forger can edit the outer."""
    report, vcek, when = genoa
    ecdsa_with_sha384 = bytes.fromhex("300a06082a8648ce3d040303")
    relabelled = _with_outer_algorithm(vcek, ecdsa_with_sha384)
    assert x509.load_der_x509_certificate(relabelled).tbs_certificate_bytes == (
        x509.load_der_x509_certificate(vcek).tbs_certificate_bytes
    )
    with pytest.raises(CertificateChainError) as excinfo:
        _verify(report, relabelled, when)
    assert excinfo.value.step == "vcek signature algorithm"
    _, record = _verify(report, _with_outer_algorithm(vcek, _outer_algorithm(vcek)), when)
    assert record.ok  # the helper itself changes nothing else


def _outer_algorithm(vcek: bytes) -> bytes:
    from sealgate.client.der import certificate_signature_algorithms

    return certificate_signature_algorithms(vcek)[1]


@pytest.mark.parametrize(
    "offset",
    [0x330, 0x3FF, 0x49F, 0x2A0 + 48, 0x2E8 + 71],
    ids=["reserved-first", "reserved-middle", "reserved-last", "r-above-48-bytes", "s-top-byte"],
)
def test_nonzero_bytes_outside_r_and_s_are_refused(genoa, offset):
    """SEV-SNP ABI "Signature Format": 48-byte R and S zero-extended to 72 bytes, then reserved."""
    report, vcek, when = genoa
    tampered = bytearray(report)
    tampered[offset] ^= 0x01
    with pytest.raises(EvidenceFormatError) as excinfo:
        _verify(bytes(tampered), vcek, when)
    assert excinfo.value.step == "report format"


def test_swapped_vcek_is_refused(genoa, vectors):
    report, _, when = genoa
    other = (vectors / "sev-snp-milan-virtee" / "vcek.der").read_bytes()
    with pytest.raises((CertificateChainError, TcbError, EvidenceSignatureError)):
        _verify(report, other, when)


def test_expired_collateral_time_is_refused(genoa):
    report, vcek, _ = genoa
    with pytest.raises(CertificateChainError, match="vcek validity"):
        _verify(report, vcek, dt.datetime(2040, 1, 1, tzinfo=dt.UTC).timestamp())


def test_tcb_below_the_minimum_is_refused(genoa):
    report, vcek, when = genoa
    with pytest.raises(TcbError, match="minimum tcb"):
        _verify(report, vcek, when, SnpPolicy(min_tcb={"snp": 24}))
    _verify(report, vcek, when, SnpPolicy(min_tcb={"snp": 23, "microcode": 84}))


def test_wrong_sizes_and_versions_are_format_errors(genoa):
    report, vcek, when = genoa
    for bad in (report[:-1], report + b"\x00", b""):
        with pytest.raises(EvidenceFormatError):
            _verify(bad, vcek, when)
    with pytest.raises(ValueError, match="version"):
        SnpReport.from_bytes(b"\x09" + report[1:])


def _self_made_chain(product: str = "Genoa"):
    """A chain that looks like AMD's but is rooted in our own key: a wrong root."""

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    ask_key = rsa.generate_private_key(65537, 2048)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.UTC)

    def build(subject, issuer, key, signer, extensions=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        for oid, value in extensions:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), False
            )
        return builder.sign(signer, hashes.SHA384(), rsa_padding=pss)

    ext = [
        ("1.3.6.1.4.1.3704.1.2", b"\x16\x05" + product.encode()),
        ("1.3.6.1.4.1.3704.1.3.1", b"\x02\x01\x00"),
        ("1.3.6.1.4.1.3704.1.3.2", b"\x02\x01\x00"),
        ("1.3.6.1.4.1.3704.1.3.3", b"\x02\x01\x00"),
        ("1.3.6.1.4.1.3704.1.3.8", b"\x02\x01\x00"),
        ("1.3.6.1.4.1.3704.1.4", bytes(64)),
    ]
    vcek = build("SEV-VCEK", "SEV-" + product, vcek_key, ask_key, ext)
    return vcek, vcek_key


def _synthetic_report(
    vcek_key, report_data: bytes, measurement: bytes, policy: int = 0x30000
) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    body = bytearray(1184)
    body[0:4] = (3).to_bytes(4, "little")
    body[8:16] = policy.to_bytes(8, "little")
    body[0x34:0x38] = (1).to_bytes(4, "little")
    body[0x50:0x90] = report_data
    body[0x90:0xC0] = measurement
    r, s = decode_dss_signature(vcek_key.sign(bytes(body[:0x2A0]), ec.ECDSA(hashes.SHA384())))
    body[0x2A0:0x2E8] = r.to_bytes(72, "little")
    body[0x2E8:0x330] = s.to_bytes(72, "little")
    return bytes(body)


def test_a_chain_to_a_wrong_root_is_refused():
    vcek, vcek_key = _self_made_chain()
    report = _synthetic_report(vcek_key, bytes(64), bytes(48))
    with pytest.raises(CertificateChainError, match="signed by ask"):
        _verify(report, vcek.public_bytes(serialization.Encoding.DER), time.time())


def test_sev_snp_document_through_the_client_verifier_interface(genoa):
    report, vcek, when = genoa
    keys = encode_key_configs([PrivateKey.generate().key_config()])
    document = AttestationDocument(
        platform="sev-snp", key_configs=keys, evidence=report, collateral={"vcek": vcek}
    )
    measurement = SnpReport.from_bytes(report).measurement.hex()
    policy = Policy().with_measurements(
        ExpectedMeasurement("sev-snp", {"measurement": measurement})
    )
    # The hardware chain verifies, but this report binds Tinfoil's keys, not ours.
    with pytest.raises(VerificationError) as excinfo:
        verify_document(document, policy, now=when)
    assert excinfo.value.step == "report_data binding"
    assert excinfo.value.verification.measurement == {"measurement": measurement}


def test_missing_vcek_is_fetched_from_kds_once_then_cached(genoa, tmp_path):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from ...servers import ServerThread

    report, vcek, when = genoa
    requests = []

    async def kds(request: Request) -> Response:
        requests.append(str(request.url))
        return Response(vcek, media_type="application/pkix-cert")

    server = ServerThread(Starlette(routes=[Route("/vcek/v1/{product}/{hwid}", kds)])).start()
    try:
        parsed = SnpReport.from_bytes(report)
        document = AttestationDocument(
            platform="sev-snp",
            key_configs=encode_key_configs([PrivateKey.generate().key_config()]),
            evidence=report,
        )
        snp = SnpPolicy(kds_url=server.url, kds_cache=str(tmp_path))
        policy = Policy(snp=snp).with_measurements(
            ExpectedMeasurement("sev-snp", {"measurement": parsed.measurement.hex()})
        )
        for _ in range(2):
            with pytest.raises(VerificationError) as excinfo:
                verify_document(document, policy, now=when)
            assert (
                excinfo.value.step == "report_data binding"
            )  # the chain verified with the fetched VCEK
        assert len(requests) == 1 and "/vcek/v1/Genoa/" + parsed.chip_id.hex() in requests[0]
        assert "snpSPL=23" in requests[0] and "ucodeSPL=84" in requests[0]
        no_fetch = Policy().with_measurements(
            ExpectedMeasurement("sev-snp", {"measurement": parsed.measurement.hex()})
        )
        with pytest.raises(CertificateChainError, match="no VCEK"):
            verify_document(document, no_fetch, now=when)
    finally:
        server.stop()
