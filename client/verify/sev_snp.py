"""AMD SEV-SNP: parse the attestation report and verify it offline against AMD's roots.

Chain: ARK (self-signed) -> ASK (or ASVK for VLEK) -> VCEK (or VLEK), each RSA-PSS
SHA-384 (MGF1-SHA-384, salt 48). The ARKs for Milan, Genoa and Turin ship with this
package and are pinned by SHA-256 fingerprint. The report is signed with ECDSA P-384
over bytes 0x000-0x29F; r and s are stored little-endian (SEV-SNP ABI, "ATTESTATION_REPORT"
and "Signature Format"). The VCEK's TCB and hardware-id extensions must match the report.
"""

from __future__ import annotations

import datetime as dt
import os
import struct
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sealgate.protocol.evidence.attestation import AttestationDocument

from ..der import (
    IA5_STRING,
    INTEGER,
    OCTET_STRING,
    DerError,
    certificate_signature_algorithms,
    decode_int,
    read_tlv,
)
from ..errors import (
    CertificateChainError,
    EvidenceFormatError,
    EvidenceSignatureError,
    PlatformPolicyError,
    TcbError,
)
from ..policy import Policy, SnpPolicy
from ..verification import Verification
from .base import PlatformEvidence

__all__ = [
    "SnpReport",
    "TcbVersion",
    "verify_snp",
    "verify_snp_document",
    "snp_evidence",
    "ARK_FINGERPRINTS",
    "load_vcek",
]

REPORT_SIZE = 1184
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = frozenset({2, 3, 5})

#: SHA-256 of the DER of AMD's root keys (ARK), per product; the shipped PEMs must match.
ARK_FINGERPRINTS = {
    "Milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "Genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "Turin": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}
_OID = "1.3.6.1.4.1.3704.1."
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)

# Guest policy bits (SEV-SNP ABI, "Guest Policy").
_POLICY_MIGRATE_MA = 1 << 18
_POLICY_DEBUG = 1 << 19


@dataclass(frozen=True, slots=True)
class TcbVersion:
    """A TCB_VERSION decoded for its product (Turin adds FMC and reorders the bytes)."""

    raw: int
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: int, product: str) -> TcbVersion:
        b = raw.to_bytes(8, "little")
        if product == "Turin":
            return cls(raw, bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7], fmc=b[0])
        return cls(raw, bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])

    def components(self) -> dict[str, int]:
        parts = {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.fmc is not None:
            parts["fmc"] = self.fmc
        return parts

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.components().items())


@dataclass(frozen=True, slots=True)
class SnpReport:
    """The 1184-byte ATTESTATION_REPORT, every field decoded once."""

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    chip_id: bytes
    committed_tcb: int
    current_firmware: tuple[int, int, int]  # major, minor, build
    committed_firmware: tuple[int, int, int]
    launch_tcb: int
    signature_r: int
    signature_s: int

    @classmethod
    def from_bytes(cls, data: bytes) -> SnpReport:
        if len(data) != REPORT_SIZE:
            raise ValueError(f"an SEV-SNP report is {REPORT_SIZE} bytes, got {len(data)}")
        (version,) = struct.unpack_from("<I", data, 0)
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported SEV-SNP report version {version}")
        # SEV-SNP ABI, "Signature Format" (ECDSA P-384 with SHA-384): R at 0x00 and S at 0x48,
        # each 72 bytes little-endian holding a 48-byte value zero-extended; 0x90-0x1FF reserved.
        signature = data[SIGNED_SIZE:]
        if any(signature[48:72]) or any(signature[0x48 + 48 : 0x90]):
            raise ValueError("the signature's R or S is longer than 48 bytes (not P-384)")
        if any(signature[0x90:]):
            raise ValueError("the reserved bytes after the signature (0x330-0x49F) are not zero")

        def u32(offset: int) -> int:
            return int(struct.unpack_from("<I", data, offset)[0])

        def u64(offset: int) -> int:
            return int(struct.unpack_from("<Q", data, offset)[0])

        return cls(
            raw=bytes(data),
            version=version,
            guest_svn=u32(0x04),
            policy=u64(0x08),
            family_id=data[0x10:0x20],
            image_id=data[0x20:0x30],
            vmpl=u32(0x30),
            signature_algo=u32(0x34),
            current_tcb=u64(0x38),
            platform_info=u64(0x40),
            signer_info=u32(0x48),
            report_data=data[0x50:0x90],
            measurement=data[0x90:0xC0],
            host_data=data[0xC0:0xE0],
            id_key_digest=data[0xE0:0x110],
            author_key_digest=data[0x110:0x140],
            report_id=data[0x140:0x160],
            report_id_ma=data[0x160:0x180],
            reported_tcb=u64(0x180),
            chip_id=data[0x1A0:0x1E0],
            committed_tcb=u64(0x1E0),
            current_firmware=(data[0x1EA], data[0x1E9], data[0x1E8]),
            committed_firmware=(data[0x1EE], data[0x1ED], data[0x1EC]),
            launch_tcb=u64(0x1F0),
            signature_r=int.from_bytes(data[0x2A0:0x2E8], "little"),
            signature_s=int.from_bytes(data[0x2E8:0x330], "little"),
        )

    @property
    def signed_by_vlek(self) -> bool:
        return (self.signer_info >> 2) & 0b111 == 1

    @property
    def debug_allowed(self) -> bool:
        return bool(self.policy & _POLICY_DEBUG)

    @property
    def migration_agent_allowed(self) -> bool:
        return bool(self.policy & _POLICY_MIGRATE_MA)


@cache
def _shipped_chain(product: str, vlek: bool) -> tuple[x509.Certificate, x509.Certificate]:
    name = f"{product.lower()}{'_vlek' if vlek else ''}.pem"
    pem = resources.files("sealgate.client.verify").joinpath("amd", name).read_bytes()
    intermediate, ark = _load_certs(pem)
    return intermediate, ark


@cache
def _shipped_chain_signatures(product: str, vlek: bool) -> tuple[bool, bool]:
    """``(ARK signs itself, ARK signs the ASK/ASVK)`` for the shipped chain, checked once."""
    intermediate, ark = _shipped_chain(product, vlek)
    return _pss_signed_by(ark, ark), _pss_signed_by(intermediate, ark)


def _load_certs(pem: bytes) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some AMD certificates have non-positive serials
        return x509.load_pem_x509_certificates(pem)


def load_vcek(data: bytes) -> x509.Certificate:
    """Load a VCEK/VLEK from DER or PEM."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)


def _der_value(raw: bytes) -> bytes | int | str:
    """Decode the small DER values AMD puts in VCEK extensions (INTEGER, IA5String, OCTET STRING)."""
    try:
        tag, body, end = read_tlv(raw)
    except DerError:
        return raw  # hwID is stored as raw bytes
    if end != len(raw) or tag not in (INTEGER, OCTET_STRING, IA5_STRING):
        return raw
    if tag == INTEGER:
        return decode_int(body, signed=True)
    if tag == IA5_STRING:
        if not body.isascii():
            raise ValueError("an IA5String extension holds non-ASCII bytes")
        return body.decode("ascii")
    return body


def _extensions(cert: x509.Certificate) -> dict[str, bytes | int | str]:
    found: dict[str, bytes | int | str] = {}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if oid.startswith(_OID) and isinstance(ext.value, x509.UnrecognizedExtension):
            found[oid[len(_OID) :]] = _der_value(ext.value.value)
    return found


@dataclass(frozen=True, slots=True)
class _Vcek:
    """A VCEK/VLEK with every field the verifier reads decoded once (lazy parsers raise early)."""

    cert: x509.Certificate
    extensions: dict[str, bytes | int | str]
    product: str
    public_key: object
    not_before: dt.datetime
    not_after: dt.datetime
    inner_algorithm: bytes
    outer_algorithm: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> _Vcek:
        cert = load_vcek(data)
        inner, outer = certificate_signature_algorithms(
            cert.public_bytes(serialization.Encoding.DER)
        )
        extensions = _extensions(cert)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # AMD's VCEK serials are non-positive
            _ = (cert.version, cert.serial_number, cert.signature, cert.tbs_certificate_bytes)
        return cls(
            cert=cert,
            extensions=extensions,
            product=str(extensions.get("2", "")).split("-")[0],
            public_key=cert.public_key(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            inner_algorithm=inner,
            outer_algorithm=outer,
        )


@lru_cache(maxsize=32)
def _parse_vcek(data: bytes) -> _Vcek:
    """Parsed once per distinct VCEK: a fleet's reports share a handful of them."""
    return _Vcek.from_bytes(data)


def _pss_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        return False
    return True


def _valid_at(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def verify_snp(
    report_bytes: bytes,
    vcek_bytes: bytes,
    policy: SnpPolicy,
    record: Verification,
    now: float,
    *,
    crl: bytes | None = None,
) -> SnpReport:
    """Verify the chain, the report signature and the guest policy; record every step.

    Every failure, including an exception from a parser, is a :class:`VerificationError`
    naming the step that failed.
    """
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    with record.guard(
        "report format", "the SEV-SNP report is malformed", error=EvidenceFormatError
    ):
        report = SnpReport.from_bytes(report_bytes)
    record.passed("report format", f"SEV-SNP report v{report.version}, {REPORT_SIZE} bytes")
    leaf = "VLEK" if report.signed_by_vlek else "VCEK"
    with record.guard(
        "vcek format", f"the {leaf} is not a well-formed certificate", error=CertificateChainError
    ):
        vcek = _parse_vcek(vcek_bytes)
    record.passed("vcek format", f"{leaf} certificate for {vcek.product or 'an unknown product'}")
    with record.guard(
        "sev-snp verification", "unexpected error verifying the evidence", error=EvidenceFormatError
    ):
        _verify_chain(record, report, vcek, when, crl)
        _verify_report(record, report, vcek)
        _check_policy(record, report, policy, vcek.product)
    return report


def _verify_chain(
    record: Verification, report: SnpReport, vcek: _Vcek, when: dt.datetime, crl: bytes | None
) -> None:
    """ARK -> ASK/ASVK -> VCEK/VLEK: pinned, signed, valid, not revoked."""
    leaf = "VLEK" if report.signed_by_vlek else "VCEK"
    record.check(
        "vcek signature algorithm",
        vcek.inner_algorithm == vcek.outer_algorithm,
        f"the {leaf}'s signatureAlgorithm equals the one it signs (RFC 5280 §4.1.1.2)",
        expected=vcek.inner_algorithm.hex(),
        actual=vcek.outer_algorithm.hex(),
        failure=f"the {leaf}'s outer signatureAlgorithm differs from the signed one inside "
        "tbsCertificate (RFC 5280 §4.1.1.2)",
        error=CertificateChainError,
    )
    product = vcek.product
    record.check(
        "product",
        product in ARK_FINGERPRINTS,
        f"the {leaf} is for {product}",
        expected=", ".join(ARK_FINGERPRINTS),
        actual=product or "(none)",
        failure=f"the {leaf} names {product or 'no product'}, which has no shipped AMD root",
        error=CertificateChainError,
    )
    intermediate, ark = _shipped_chain(product, report.signed_by_vlek)
    ark_fp = ark.fingerprint(hashes.SHA256()).hex()
    record.check(
        "amd root pinned",
        ark_fp == ARK_FINGERPRINTS[product],
        f"the shipped ARK-{product} has the pinned fingerprint",
        expected=ARK_FINGERPRINTS[product],
        actual=ark_fp,
        failure=f"the shipped ARK-{product} does NOT have the pinned fingerprint",
        error=CertificateChainError,
    )
    ark_ok, intermediate_ok = _shipped_chain_signatures(product, report.signed_by_vlek)
    record.check(
        "ark self-signed",
        ark_ok,
        "ARK signs itself (RSA-PSS SHA-384)",
        failure="the ARK's self-signature does not verify (RSA-PSS SHA-384)",
        error=CertificateChainError,
    )
    which = "ASVK" if report.signed_by_vlek else "ASK"
    record.check(
        f"{which.lower()} signed by ark",
        intermediate_ok,
        f"ARK signs the {which}",
        failure=f"the ARK's signature on the {which} does not verify",
        error=CertificateChainError,
    )
    record.check(
        f"{leaf.lower()} signed by {which.lower()}",
        _pss_signed_by(vcek.cert, intermediate),
        f"the {which} signs the {leaf}",
        failure=f"the {leaf} is not signed by AMD's {which}-{product} (RSA-PSS SHA-384)",
        error=CertificateChainError,
    )
    for cert, name in ((ark, "ARK"), (intermediate, which), (vcek.cert, leaf)):
        period = f"{cert.not_valid_before_utc:%Y-%m-%d}..{cert.not_valid_after_utc:%Y-%m-%d}"
        record.check(
            f"{name.lower()} validity",
            _valid_at(cert, when),
            f"{name} is valid at {when:%Y-%m-%dT%H:%M:%SZ}",
            expected=period,
            actual=f"{when:%Y-%m-%d}",
            failure=f"{name} is NOT valid at {when:%Y-%m-%dT%H:%M:%SZ} (outside {period})",
            error=CertificateChainError,
        )
    if crl is not None:
        _check_crl(record, crl, intermediate, ark, vcek.cert)


def _verify_report(record: Verification, report: SnpReport, vcek: _Vcek) -> None:
    """The VCEK matches the report (TCB, chip) and signed it."""
    leaf = "VLEK" if report.signed_by_vlek else "VCEK"
    extensions = vcek.extensions
    reported = TcbVersion.decode(report.reported_tcb, vcek.product)
    vcek_tcb = {
        "bootloader": extensions.get("3.1"),
        "tee": extensions.get("3.2"),
        "snp": extensions.get("3.3"),
        "microcode": extensions.get("3.8"),
    }
    if vcek.product == "Turin":
        vcek_tcb["fmc"] = extensions.get("3.9")
    record.check(
        "vcek tcb",
        all(vcek_tcb[k] == v for k, v in reported.components().items()),
        f"the {leaf} was issued for the report's reported TCB",
        expected=str(reported),
        actual=" ".join(f"{k}={v!r}" for k, v in vcek_tcb.items()),
        failure=f"the {leaf}'s TCB extensions do not match the report's reported TCB",
        error=TcbError,
    )
    if not report.signed_by_vlek:
        hwid = extensions.get("4", b"")
        hwid_bytes = hwid if isinstance(hwid, bytes) else b""
        chip = report.chip_id[: len(hwid_bytes)] if hwid_bytes else b"?"
        record.check(
            "chip id",
            bool(hwid_bytes) and chip == hwid_bytes,
            "the VCEK's hwID equals the report's chip_id",
            expected=hwid_bytes.hex(),
            actual=chip.hex(),
            failure="the VCEK's hwID does not equal the report's chip_id (another chip's VCEK)",
            error=CertificateChainError,
        )
    record.check(
        "signature algorithm",
        report.signature_algo == 1,
        "ECDSA P-384 with SHA-384",
        expected="1",
        actual=str(report.signature_algo),
        failure=f"unknown report signature algorithm {report.signature_algo} "
        "(only 1, ECDSA P-384 with SHA-384, exists)",
        error=EvidenceFormatError,
    )
    key = vcek.public_key
    try:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        key.verify(
            encode_dss_signature(report.signature_r, report.signature_s),
            report.raw[:SIGNED_SIZE],
            ec.ECDSA(hashes.SHA384()),
        )
    except InvalidSignature:
        raise record.fail(
            "report signature",
            f"the {leaf} did not sign this report (bytes 0x000-0x29F)",
            error=EvidenceSignatureError,
        ) from None
    record.passed("report signature", f"ECDSA P-384 signature by the {leaf} verifies")


def _check_crl(
    record: Verification,
    crl_bytes: bytes,
    intermediate: x509.Certificate,
    ark: x509.Certificate,
    vcek: x509.Certificate,
) -> None:
    with record.guard("crl format", "AMD's CRL is malformed", error=CertificateChainError):
        if crl_bytes.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(crl_bytes)
        else:
            crl = x509.load_der_x509_crl(crl_bytes)
        signed = crl.is_signature_valid(ark.public_key())  # type: ignore[arg-type]
        revoked = {
            name: crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            for cert, name in ((intermediate, "intermediate"), (vcek, "leaf"))
        }
    record.check(
        "crl signature",
        signed,
        "the CRL is signed by the ARK",
        failure="the CRL's signature does not verify with the ARK",
        error=CertificateChainError,
    )
    for name, entry in revoked.items():
        record.check(
            f"{name} not revoked",
            entry is None,
            f"the {name} certificate is not on the CRL",
            failure=f"the {name} certificate is REVOKED on AMD's CRL",
            error=CertificateChainError,
        )


def _check_policy(record: Verification, report: SnpReport, policy: SnpPolicy, product: str) -> None:
    record.check(
        "debug disabled",
        policy.allow_debug or not report.debug_allowed,
        "the guest policy forbids debugging"
        if not report.debug_allowed
        else "the guest policy ALLOWS debugging (accepted: allow_debug)",
        expected="debug=0",
        actual=f"debug={int(report.debug_allowed)} (policy 0x{report.policy:x})",
        failure="the guest policy ALLOWS debugging: the host can read the guest's memory",
        error=PlatformPolicyError,
    )
    record.check(
        "migration agent disabled",
        policy.allow_migration_agent or not report.migration_agent_allowed,
        "no migration agent may be bound",
        expected="migrate_ma=0",
        actual=f"migrate_ma={int(report.migration_agent_allowed)}",
        failure="the guest policy allows a migration agent to be bound",
        error=PlatformPolicyError,
    )
    record.check(
        "vmpl",
        report.vmpl <= policy.max_vmpl,
        f"report requested at VMPL {report.vmpl}",
        expected=f"<= {policy.max_vmpl}",
        actual=str(report.vmpl),
        failure=f"report requested at VMPL {report.vmpl}, less privileged than allowed",
        error=PlatformPolicyError,
    )
    reported = TcbVersion.decode(report.reported_tcb, product)
    low = {k: v for k, v in policy.min_tcb.items() if reported.components().get(k, 0) < v}
    record.check(
        "minimum tcb",
        not low,
        f"reported TCB {reported}",
        expected=" ".join(f"{k}>={v}" for k, v in policy.min_tcb.items()) or "(no minimum)",
        actual=str(reported),
        failure="reported TCB is below the minimum for "
        + ", ".join(f"{k} ({reported.components().get(k, 0)} < {v})" for k, v in low.items()),
        error=TcbError,
    )
    if policy.min_firmware is not None:
        major, minor, _ = report.current_firmware
        record.check(
            "minimum firmware",
            (major, minor) >= policy.min_firmware,
            f"firmware {major}.{minor}",
            expected=">= {}.{}".format(*policy.min_firmware),
            actual=f"{major}.{minor}",
            failure=f"firmware {major}.{minor} is older than the minimum",
            error=TcbError,
        )
    if policy.require_reported_tcb_current:
        record.check(
            "reported tcb is current",
            report.reported_tcb == report.current_tcb,
            "the VCEK's TCB is the platform's current TCB (no rollback window)",
            expected=str(TcbVersion.decode(report.current_tcb, product)),
            actual=str(reported),
            failure="the reported TCB is not the platform's current TCB (rollback window open)",
            error=TcbError,
        )
    committed = TcbVersion.decode(report.committed_tcb, product)
    record.check(
        "committed tcb",
        all(
            committed.components()[k] <= v
            for k, v in TcbVersion.decode(report.current_tcb, product).components().items()
        ),
        "committed TCB does not exceed current TCB",
        expected="committed <= current",
        actual=f"committed {committed}",
        failure="the committed TCB exceeds the current TCB",
        error=TcbError,
    )


KDS_URL = "https://kdsintf.amd.com"


def product_of(report: SnpReport) -> str | None:
    """The product named by the report's CPUID fields (report v3+), if recognisable."""
    family, model = report.raw[0x188], report.raw[0x189]
    if family == 0x19:
        return "Milan" if model < 0x10 else "Genoa"
    if family == 0x1A:
        return "Turin"
    return None


def fetch_vcek(report: SnpReport, policy: SnpPolicy) -> bytes:
    """Fetch (or load from the cache) the VCEK for this report's chip and reported TCB."""

    product = product_of(report)
    if product is None:
        raise ValueError("the report does not say which product it comes from (report v2?)")
    tcb = TcbVersion.decode(report.reported_tcb, product)
    hwid = report.chip_id if product != "Turin" else report.chip_id[:8]
    query = f"blSPL={tcb.bootloader}&teeSPL={tcb.tee}&snpSPL={tcb.snp}&ucodeSPL={tcb.microcode}"
    if tcb.fmc is not None:
        query += f"&fmcSPL={tcb.fmc}"
    cache = Path(policy.kds_cache or os.path.expanduser("~/.cache/sealgate/vcek"))
    cached = cache / f"{product}-{hwid.hex()}-{tcb.raw:016x}.der"
    if cached.exists():
        return cached.read_bytes()
    url = f"{(policy.kds_url or KDS_URL).rstrip('/')}/vcek/v1/{product}/{hwid.hex()}?{query}"
    response = httpx.get(url, timeout=policy.kds_timeout)
    response.raise_for_status()
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(response.content)
    return response.content


def verify_snp_document(
    document: AttestationDocument, policy: Policy, record: Verification, now: float
) -> PlatformEvidence:
    """Platform verifier for ``sev-snp`` documents (evidence = report, collateral ``vcek``)."""
    vcek = document.collateral.get("vcek") or document.collateral.get("vlek")
    if vcek is None and policy.snp.kds_url is not None:
        try:
            vcek = fetch_vcek(SnpReport.from_bytes(document.evidence), policy.snp)
        except Exception as exc:  # noqa: BLE001 - any fetch failure is reported as this step
            raise record.fail(
                "vcek",
                f"no VCEK attached and fetching it from AMD KDS failed: {exc}",
                error=CertificateChainError,
            ) from None
        record.passed("vcek", "fetched from AMD's key distribution service (or its cache)")
    if vcek is None:
        raise record.fail(
            "vcek",
            "the document carries no VCEK; attach it on the enclave (--vcek) "
            "or allow fetching it (SnpPolicy(kds_url=...))",
            error=CertificateChainError,
        )
    report = verify_snp(
        document.evidence, vcek, policy.snp, record, now, crl=document.collateral.get("crl")
    )
    return snp_evidence(report)


def snp_evidence(report: SnpReport) -> PlatformEvidence:
    """What a verified report attests: report_data, the measurement, and details for people."""
    return PlatformEvidence(
        report_data=report.report_data,
        registers={"measurement": report.measurement.hex()},
        details={
            "policy": f"0x{report.policy:x}",
            "vmpl": str(report.vmpl),
            "reported_tcb": f"0x{report.reported_tcb:016x}",
            "chip_id": report.chip_id.hex(),
        },
    )
