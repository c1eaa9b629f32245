"""Intel TDX: parse a v4 quote and verify it offline with Intel PCS collateral.

Steps (Intel's DCAP quote verification, as far as a TD quote needs it):

1. the PCK certificate chain in the quote leads to the shipped, pinned Intel SGX Root CA;
2. the QE report is signed by the PCK key, and binds the attestation key:
   ``QE report_data = SHA-256(attestation key || QE auth data) || 32 zero bytes``;
3. the quote (header + TD report) is signed by the attestation key (ECDSA P-256);
4. TCB info and QE identity are signed by Intel's TCB signing key (chain to the same
   root) and valid at the verification time;
5. the QE matches its identity; the platform's TCB level (PCK SVNs + the TD's TEE TCB
   SVN) is found in the FMSPC's TCB levels and its status is accepted by the policy;
6. the TD's attributes do not allow debugging.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
import struct
import urllib.parse
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from sealgate.protocol.evidence.attestation import AttestationDocument

from ..der import DerError, certificate_signature_algorithms, decode_int, oid_map, read_tlv
from ..errors import (
    CertificateChainError,
    EvidenceFormatError,
    EvidenceSignatureError,
    PlatformPolicyError,
    TcbError,
)
from ..policy import Policy, TdxPolicy
from ..verification import Verification
from .base import PlatformEvidence

__all__ = [
    "TdxQuote",
    "TdReport",
    "Collateral",
    "verify_tdx",
    "verify_tdx_document",
    "tdx_evidence",
    "fmspc_of",
    "check_td_policy",
    "SGX_ROOT_FINGERPRINT",
]

SGX_ROOT_FINGERPRINT = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
HEADER_SIZE = 48
TD_REPORT_SIZE = 584
QE_REPORT_SIZE = 384
TEE_TDX = 0x81
_SGX_EXTENSIONS = "1.2.840.113741.1.13.1"
_TD_DEBUG = 1  # TDATTRIBUTES bit 0


@dataclass(frozen=True, slots=True)
class TdReport:
    """The TD report body (TDX v4 quote) with its measurement registers."""

    tee_tcb_svn: bytes
    mrseam: bytes
    mrsignerseam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mrtd: bytes
    mrconfigid: bytes
    mrowner: bytes
    mrownerconfig: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes

    @classmethod
    def from_bytes(cls, b: bytes) -> TdReport:
        return cls(
            b[0:16],
            b[16:64],
            b[64:112],
            b[112:120],
            b[120:128],
            b[128:136],
            b[136:184],
            b[184:232],
            b[232:280],
            b[280:328],
            (b[328:376], b[376:424], b[424:472], b[472:520]),
            b[520:584],
        )

    @property
    def debug(self) -> bool:
        return bool(int.from_bytes(self.td_attributes, "little") & _TD_DEBUG)

    def registers(self) -> dict[str, str]:
        regs = {"mrtd": self.mrtd.hex()}
        regs.update({f"rtmr{i}": r.hex() for i, r in enumerate(self.rtmrs)})
        return regs


@dataclass(frozen=True, slots=True)
class TdxQuote:
    """A TDX v4 quote with its ECDSA signature data, QE report and PCK chain."""

    raw: bytes
    version: int
    attestation_key_type: int
    tee_type: int
    qe_vendor_id: bytes
    td_report: TdReport
    signature: bytes
    attestation_key: bytes
    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes

    @property
    def signed_part(self) -> bytes:
        return self.raw[: HEADER_SIZE + TD_REPORT_SIZE]

    @classmethod
    def from_bytes(cls, data: bytes) -> TdxQuote:
        try:
            version, key_type, tee_type = struct.unpack_from("<HHI", data, 0)
            if version != 4:
                raise ValueError(f"unsupported quote version {version} (expected 4)")
            if key_type != 2 or tee_type != TEE_TDX:
                raise ValueError(
                    f"not an ECDSA-P256 TDX quote (key type {key_type}, tee 0x{tee_type:x})"
                )
            offset = HEADER_SIZE + TD_REPORT_SIZE
            (sig_len,) = struct.unpack_from("<I", data, offset)
            offset += 4
            end = offset + sig_len
            # Some quote providers pad the quote to a fixed buffer size with zero bytes.
            if end > len(data) or any(data[end:]):
                raise ValueError("signature data length does not match the quote size")
            signature, key = data[offset : offset + 64], data[offset + 64 : offset + 128]
            offset += 128
            cert_type, cert_size = struct.unpack_from("<HI", data, offset)
            offset += 6
            if cert_type != 6 or offset + cert_size > end:
                raise ValueError("expected QE report certification data (type 6)")
            qe_report = data[offset : offset + QE_REPORT_SIZE]
            qe_sig = data[offset + QE_REPORT_SIZE : offset + QE_REPORT_SIZE + 64]
            offset += QE_REPORT_SIZE + 64
            (auth_len,) = struct.unpack_from("<H", data, offset)
            auth = data[offset + 2 : offset + 2 + auth_len]
            offset += 2 + auth_len
            inner_type, inner_size = struct.unpack_from("<HI", data, offset)
            offset += 6
            if inner_type != 5 or offset + inner_size > end:
                raise ValueError("expected a PCK certificate chain (certification data type 5)")
            chain = data[offset : offset + inner_size]
        except struct.error:
            raise ValueError("the quote is truncated") from None
        return cls(
            bytes(data),
            version,
            key_type,
            tee_type,
            data[12:28],
            TdReport.from_bytes(data[HEADER_SIZE : HEADER_SIZE + TD_REPORT_SIZE]),
            signature,
            key,
            qe_report,
            qe_sig,
            auth,
            chain,
        )


def _crl_role(name: str) -> str | None:
    """``pck`` or ``root`` for a collateral file holding one of Intel's CRLs, else None."""
    if not name.endswith((".crl", ".der")):
        return None
    if name.startswith("pck_crl"):
        return "pck"
    if name.startswith("root"):
        return "root"
    return None


@dataclass(frozen=True, slots=True)
class Collateral:
    """Intel PCS collateral: TCB info and QE identity (raw JSON) with their issuer chains.

    ``pck_crls`` (the PCK Platform and/or Processor CA's CRL) and ``root_ca_crls`` (the SGX
    Root CA's) are optional: when present, the PCK chain is checked against them.
    """

    tcb_info: bytes
    tcb_info_chain: bytes
    qe_identity: bytes
    qe_identity_chain: bytes
    pck_crls: tuple[bytes, ...] = ()
    root_ca_crls: tuple[bytes, ...] = ()

    @classmethod
    def from_directory(cls, directory: Path, fmspc: str | None = None) -> Collateral:
        """Load ``tcb_info_<fmspc>.json`` (+ ``_chain.txt``), ``qe_identity.json`` (+ chain), CRLs.

        CRLs are ``pck_crl*.crl`` / ``pck_crl*.der`` and ``root*.crl`` / ``root*.der`` (DER).
        """
        infos = sorted(directory.glob("tcb_info_*.json"))
        if fmspc is not None:
            infos = [p for p in infos if p.stem.removeprefix("tcb_info_").lower() == fmspc.lower()]
        if not infos:
            raise FileNotFoundError(f"no TCB info for FMSPC {fmspc} in {directory}")
        info = infos[0]
        crls = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if _crl_role(p.name)}
        return cls(
            info.read_bytes(),
            (directory / f"{info.stem}_chain.txt").read_bytes(),
            (directory / "qe_identity.json").read_bytes(),
            (directory / "qe_identity_chain.txt").read_bytes(),
            *cls._crls(crls),
        )

    @classmethod
    def from_mapping(cls, files: dict[str, bytes], fmspc: str) -> Collateral:
        name = f"tcb_info_{fmspc.lower()}"
        return cls(
            files[f"{name}.json"],
            files[f"{name}_chain.txt"],
            files["qe_identity.json"],
            files["qe_identity_chain.txt"],
            *cls._crls(files),
        )

    @staticmethod
    def _crls(files: dict[str, bytes]) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        ordered = sorted(files.items())
        return (
            tuple(data for name, data in ordered if _crl_role(name) == "pck"),
            tuple(data for name, data in ordered if _crl_role(name) == "root"),
        )


@cache
def _sgx_root() -> x509.Certificate:
    pem = (
        resources.files("sealgate.client.verify").joinpath("intel", "sgx_root_ca.pem").read_bytes()
    )
    return x509.load_pem_x509_certificate(pem)


def _p256_raw_sig(raw: bytes) -> bytes:
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"))


def _ecdsa_ok(key: Any, signature_der: bytes, data: bytes) -> bool:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature_der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _load_chain(pem: bytes) -> list[x509.Certificate]:
    """Certificates of a PEM chain, each decoded in full now (``cryptography`` parses lazily)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lazily decoded fields warn on odd but harmless values
        return [_decoded(cert) for cert in x509.load_pem_x509_certificates(pem)]


def _decoded(cert: x509.Certificate) -> x509.Certificate:
    certificate_signature_algorithms(cert.public_bytes(serialization.Encoding.DER))
    _ = (cert.extensions, cert.public_key(), cert.not_valid_before_utc, cert.not_valid_after_utc)
    _ = (cert.issuer, cert.subject, cert.serial_number, cert.signature)
    return cert


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _may_sign_certificates(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.key_cert_sign


def _verify_chain(
    record: Verification, name: str, certs: list[x509.Certificate], when: dt.datetime
) -> None:
    """Leaf first; the last must be the pinned root, each signed and named by the next.

    RFC 5280 §6.1: each issuer name equals the next certificate's subject, every issuer is a
    CA (basicConstraints cA TRUE, keyCertSign) whose pathLenConstraint admits the CAs below
    it, the leaf is not a CA, and each certificate's signatureAlgorithm matches its signed one.
    """
    root = _sgx_root()
    record.check(
        f"{name} root",
        bool(certs) and certs[-1] == root,
        f"the {name} chain ends at the shipped Intel SGX Root CA",
        expected=SGX_ROOT_FINGERPRINT,
        actual=certs[-1].fingerprint(hashes.SHA256()).hex() if certs else "(empty)",
        failure=f"the {name} chain does not end at the shipped Intel SGX Root CA",
        error=CertificateChainError,
    )
    for cert in certs:
        with record.guard(
            f"{name} signature algorithm", "a certificate is malformed", error=CertificateChainError
        ):
            inner, outer = certificate_signature_algorithms(
                cert.public_bytes(serialization.Encoding.DER)
            )
        record.check(
            f"{name} signature algorithm",
            inner == outer,
            f"'{_cn(cert)}' names the signature algorithm it signs",
            expected=inner.hex(),
            actual=outer.hex(),
            failure=f"'{_cn(cert)}': the outer signatureAlgorithm differs from the one in "
            "tbsCertificate (RFC 5280 §4.1.1.2)",
            error=CertificateChainError,
        )
    for cert, issuer in itertools.pairwise(certs):
        chained = cert.issuer == issuer.subject
        record.check(
            f"{name} chain names",
            chained,
            f"'{_cn(cert)}' names '{_cn(issuer)}' as its issuer",
            expected=None if chained else issuer.subject.rfc4514_string(),
            actual=None if chained else cert.issuer.rfc4514_string(),
            failure=f"'{_cn(cert)}' names another issuer than the next certificate's subject",
            error=CertificateChainError,
        )
        ok = _ecdsa_ok(issuer.public_key(), cert.signature, cert.tbs_certificate_bytes)
        record.check(
            f"{name} chain",
            ok,
            f"'{_cn(cert)}' is signed by its issuer",
            failure=f"'{_cn(cert)}' is NOT signed by '{_cn(issuer)}'",
            error=CertificateChainError,
        )
    for depth, cert in enumerate(certs):
        constraints = _basic_constraints(cert)
        is_ca = constraints is not None and constraints.ca
        if depth == 0:
            ok = not is_ca
            want, failure = "cA FALSE", f"the leaf '{_cn(cert)}' is a CA certificate"
        else:
            # CAs below this one in the path, not counting the leaf (RFC 5280 §4.2.1.9).
            below = depth - 1
            limit = constraints.path_length if constraints is not None else None
            ok = is_ca and _may_sign_certificates(cert) and (limit is None or below <= limit)
            want = f"cA TRUE, keyCertSign, pathLen >= {below}"
            failure = f"the issuer '{_cn(cert)}' may not issue this path (not a CA, no "
            failure += "keyCertSign, or its path length is exceeded)"
        record.check(
            f"{name} basic constraints",
            ok,
            f"'{_cn(cert)}' is {'the leaf, not a CA' if depth == 0 else 'a CA for this path'}",
            expected=want,
            actual=str(constraints) if constraints is not None else "(no basicConstraints)",
            failure=failure,
            error=CertificateChainError,
        )
    for cert in certs:
        valid = cert.not_valid_before_utc <= when <= cert.not_valid_after_utc
        period = f"{cert.not_valid_before_utc:%Y-%m-%d}..{cert.not_valid_after_utc:%Y-%m-%d}"
        record.check(
            f"{name} validity",
            valid,
            f"'{_cn(cert)}' is valid at {when:%Y-%m-%d}",
            expected=period,
            actual=f"{when:%Y-%m-%d}",
            failure=f"'{_cn(cert)}' is NOT valid at {when:%Y-%m-%d} (outside {period})",
            error=CertificateChainError,
        )


@lru_cache(maxsize=16)
def _load_crl(raw: bytes) -> x509.CertificateRevocationList:
    if raw.lstrip().startswith(b"-----BEGIN"):
        crl = x509.load_pem_x509_crl(raw)
    else:
        try:
            crl = x509.load_der_x509_crl(raw)
        except ValueError:
            crl = x509.load_der_x509_crl(bytes.fromhex(raw.decode()))  # PCS may serve hex
    _ = (crl.issuer, crl.last_update_utc, crl.next_update_utc, crl.signature, list(crl))
    return crl


@lru_cache(maxsize=16)
def _crl_signed_by(raw: bytes, issuer: x509.Certificate) -> bool:
    """The CRL's signature verifies with the issuer's key (cached: CRLs change monthly)."""
    key = issuer.public_key()
    return isinstance(key, ec.EllipticCurvePublicKey) and _load_crl(raw).is_signature_valid(key)


def _check_crl(
    record: Verification,
    name: str,
    crls: tuple[bytes, ...],
    issuer: x509.Certificate,
    cert: x509.Certificate,
    when: dt.datetime,
) -> None:
    """``cert`` is not revoked by ``issuer``'s CRL, itself signed by ``issuer`` and current."""
    with record.guard(f"{name} crl format", "a CRL is malformed", error=CertificateChainError):
        loaded = {raw: _load_crl(raw) for raw in crls}
    raw = next((r for r, c in loaded.items() if c.issuer == issuer.subject), None)
    if raw is None:
        raise record.fail(
            f"{name} crl",
            f"the collateral carries CRLs, but none issued by '{_cn(issuer)}'",
            expected=issuer.subject.rfc4514_string(),
            actual=", ".join(c.issuer.rfc4514_string() for c in loaded.values()) or "(none)",
            error=CertificateChainError,
        )
    crl = loaded[raw]
    record.check(
        f"{name} crl signature",
        _crl_signed_by(raw, issuer),
        f"'{_cn(issuer)}' signs its CRL",
        failure=f"the CRL naming '{_cn(issuer)}' is NOT signed by its key",
        error=CertificateChainError,
    )
    last, following = crl.last_update_utc, crl.next_update_utc
    period = f"{last:%Y-%m-%d}..{following:%Y-%m-%d}" if following else f"{last:%Y-%m-%d}.."
    record.check(
        f"{name} crl validity",
        following is not None and last <= when <= following,
        f"'{_cn(issuer)}' CRL is current at {when:%Y-%m-%d}",
        expected=period,
        actual=f"{when:%Y-%m-%d}",
        failure=f"'{_cn(issuer)}' CRL is NOT current at {when:%Y-%m-%d} (outside {period})",
        error=CertificateChainError,
    )
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    record.check(
        f"{name} not revoked",
        entry is None,
        f"'{_cn(cert)}' (serial {cert.serial_number:x}) is not on the CRL",
        expected="not listed",
        actual="listed" if entry else "not listed",
        failure=f"'{_cn(cert)}' (serial {cert.serial_number:x}) is REVOKED"
        + (f" since {entry.revocation_date_utc:%Y-%m-%d}" if entry else ""),
        error=CertificateChainError,
    )


def _check_pck_revocation(
    record: Verification,
    chain: list[x509.Certificate],
    collateral: Collateral | None,
    when: dt.datetime,
    require: bool,
) -> None:
    """Intel's CRLs from the collateral: the PCK CA's for the PCK, the root's for the PCK CA.

    Without a CRL revocation cannot be checked: refused unless the policy allows it.
    """
    pck_crls = collateral.pck_crls if collateral else ()
    root_crls = collateral.root_ca_crls if collateral else ()
    if len(chain) < 2:
        return  # the chain checks refused it already
    for step, crls, issuer, cert, what in (
        ("pck", pck_crls, chain[1], chain[0], "PCK CRL (pck_crl*.der)"),
        ("pck ca", root_crls, chain[-1], chain[1] if len(chain) > 2 else None, "root CA CRL"),
    ):
        if cert is None:
            continue
        if crls:
            _check_crl(record, step, crls, issuer, cert, when)
        elif require:
            raise record.fail(
                f"{step} revocation",
                f"the collateral carries no {what}, so revocation cannot be checked: staple "
                "Intel's CRLs with the collateral, or set TdxPolicy(require_crls=False)",
                error=CertificateChainError,
            )
        else:
            record.passed(f"{step} revocation", f"not checked: the collateral carries no {what}")


def _signed_json(raw: bytes, field: str) -> tuple[dict[str, Any], bytes, bytes]:
    """``(parsed body, exact signed bytes, signature)`` of a PCS JSON document."""
    text = raw.decode()
    match = re.match(r'\s*\{\s*"' + field + r'"\s*:\s*', text)
    tail = text.rfind(',"signature"')
    if match is None or tail < 0:
        raise ValueError(f"not a signed PCS document with '{field}'")
    body = text[match.end() : tail]
    document = json.loads(text)
    return document[field], body.encode(), bytes.fromhex(document["signature"])


def _pem_chain(raw: bytes) -> list[x509.Certificate]:
    text = raw.decode()
    if "%" in text:
        text = urllib.parse.unquote(text)
    return _load_chain(text.encode())


def _pck_extensions(cert: x509.Certificate) -> dict[str, tuple[int, bytes]]:
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(_SGX_EXTENSIONS)).value
    if not isinstance(ext, x509.UnrecognizedExtension):
        raise DerError("the SGX extension is not an opaque vendor extension")
    _, sequence, _ = read_tlv(ext.value)
    return oid_map(sequence)


def fmspc_of(quote_bytes: bytes) -> str:
    """The platform's FMSPC (which TCB info applies), read from the quote's PCK certificate.

    Raises ``ValueError`` for anything unreadable (the quote is untrusted input).
    """
    try:
        pck = _load_chain(TdxQuote.from_bytes(quote_bytes).pck_chain_pem.rstrip(b"\x00"))[0]
        return _pck_extensions(pck)["1.2.840.113741.1.13.1.4"][1].hex()
    except Exception as exc:  # parsers of untrusted input raise more than ValueError
        raise ValueError(f"cannot read the FMSPC from the PCK certificate: {exc}") from exc


def _isv_status(levels: list[dict[str, Any]], isvsvn: int) -> str:
    """The status of the first (highest) level an ISV SVN reaches; below all of them: Revoked."""
    return next((lvl["tcbStatus"] for lvl in levels if isvsvn >= lvl["tcb"]["isvsvn"]), "Revoked")


def _check_status(
    record: Verification, policy: TdxPolicy, name: str, status: str, detail: str
) -> None:
    record.check(
        name,
        status in policy.accepted_tcb_statuses,
        detail,
        expected=" | ".join(sorted(policy.accepted_tcb_statuses)),
        actual=status,
        failure=f"{detail}, a status the policy does not accept",
        error=TcbError,
    )


def verify_tdx(
    quote_bytes: bytes,
    collateral: Collateral | None,
    policy: TdxPolicy,
    record: Verification,
    now: float,
) -> TdxQuote:
    """Verify a TDX quote; ``collateral`` may be None only to report which FMSPC it needs.

    Every failure, including an exception from a parser, is a :class:`VerificationError`
    naming the step that failed.
    """
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    with record.guard("quote format", "the TDX quote is malformed", error=EvidenceFormatError):
        quote = TdxQuote.from_bytes(quote_bytes)
        pck_chain = _load_chain(quote.pck_chain_pem.rstrip(b"\x00"))
    record.passed(
        "quote format",
        f"TDX quote v{quote.version}, {len(quote.raw)} bytes, {len(pck_chain)} PCK certificates",
    )
    with record.guard(
        "tdx verification", "unexpected error verifying the evidence", error=EvidenceFormatError
    ):
        _verify_quote(record, quote, pck_chain, collateral, policy, when)
    return quote


def _verify_quote(
    record: Verification,
    quote: TdxQuote,
    pck_chain: list[x509.Certificate],
    collateral: Collateral | None,
    policy: TdxPolicy,
    when: dt.datetime,
) -> None:
    _verify_chain(record, "pck", pck_chain, when)
    _check_pck_revocation(record, pck_chain, collateral, when, policy.require_crls)
    pck = pck_chain[0]
    record.check(
        "qe report signature",
        _ecdsa_ok(pck.public_key(), _p256_raw_sig(quote.qe_report_signature), quote.qe_report),
        "the PCK key signs the quoting enclave's report",
        failure="the PCK key did not sign the quoting enclave's report",
        error=EvidenceSignatureError,
    )
    expected_binding = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(
        32
    )
    record.check(
        "attestation key binding",
        quote.qe_report[320:384] == expected_binding,
        "QE report_data = SHA-256(attestation key || QE auth data)",
        expected=expected_binding.hex(),
        actual=quote.qe_report[320:384].hex(),
        failure="the QE report does not bind the attestation key "
        "(report_data != SHA-256(attestation key || QE auth data))",
        error=EvidenceSignatureError,
    )
    with record.guard(
        "quote signature", "the attestation key is not a P-256 point", error=EvidenceSignatureError
    ):
        attestation_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + quote.attestation_key
        )
    record.check(
        "quote signature",
        _ecdsa_ok(attestation_key, _p256_raw_sig(quote.signature), quote.signed_part),
        "the attestation key signs the quote header and TD report",
        failure="the attestation key did not sign this quote header and TD report",
        error=EvidenceSignatureError,
    )
    with record.guard(
        "pck extensions",
        "the PCK certificate's SGX extensions are unreadable",
        error=EvidenceFormatError,
    ):
        pck_ext = _pck_extensions(pck)
        fmspc = pck_ext["1.2.840.113741.1.13.1.4"][1].hex()
        pck_svns = [decode_int(pck_ext[f"1.2.840.113741.1.13.1.2.{i}"][1]) for i in range(1, 17)]
        pce_svn = decode_int(pck_ext["1.2.840.113741.1.13.1.2.17"][1])
    record.passed("pck extensions", f"FMSPC {fmspc}, PCE SVN {pce_svn}")
    if collateral is None:
        raise record.fail(
            "collateral",
            f"no PCS collateral supplied (TCB info for FMSPC {fmspc}, QE identity)",
            error=TcbError,
        )
    _check_collateral(record, quote, collateral, fmspc, pck_svns, pce_svn, policy, when)
    check_td_policy(record, quote.td_report, policy)


def check_td_policy(record: Verification, report: TdReport, policy: TdxPolicy) -> None:
    """The TD's own attributes: debugging must be off unless the policy allows it."""
    record.check(
        "td debug disabled",
        policy.allow_debug or not report.debug,
        "the TD's attributes forbid debugging"
        if not report.debug
        else "the TD ALLOWS debugging (accepted: allow_debug)",
        expected="DEBUG=0",
        actual=f"TDATTRIBUTES={report.td_attributes.hex()}",
        failure="the TD ALLOWS debugging: the host can read its memory",
        error=PlatformPolicyError,
    )


def _signed_collateral(
    record: Verification, name: str, raw: bytes, chain_raw: bytes, field: str, when: dt.datetime
) -> dict[str, Any]:
    with record.guard(f"{name} format", f"the {name} is malformed", error=EvidenceFormatError):
        body, signed, signature = _signed_json(raw, field)
        chain = _pem_chain(chain_raw)
        issued = dt.datetime.fromisoformat(body["issueDate"].replace("Z", "+00:00"))
        next_update = dt.datetime.fromisoformat(body["nextUpdate"].replace("Z", "+00:00"))
    _verify_chain(record, name, chain, when)
    record.check(
        f"{name} signature",
        _ecdsa_ok(chain[0].public_key(), _p256_raw_sig(signature), signed),
        f"Intel's TCB signing key signs the {name}",
        failure=f"the {name} is not signed by Intel's TCB signing key (altered?)",
        error=EvidenceSignatureError,
    )
    period = f"{issued:%Y-%m-%d}..{next_update:%Y-%m-%d}"
    record.check(
        f"{name} validity",
        issued <= when <= next_update,
        f"{name} is current at {when:%Y-%m-%dT%H:%MZ}",
        expected=period,
        actual=f"{when:%Y-%m-%d}",
        failure=f"{name} is NOT current at {when:%Y-%m-%dT%H:%MZ} (outside {period})",
        error=TcbError,
    )
    return body


def _check_collateral(
    record: Verification,
    quote: TdxQuote,
    collateral: Collateral,
    fmspc: str,
    pck_svns: list[int],
    pce_svn: int,
    policy: TdxPolicy,
    when: dt.datetime,
) -> None:
    tcb_info = _signed_collateral(
        record, "tcb info", collateral.tcb_info, collateral.tcb_info_chain, "tcbInfo", when
    )
    record.check(
        "tcb info fmspc",
        tcb_info.get("fmspc", "").lower() == fmspc,
        "the TCB info is for this platform",
        expected=fmspc,
        actual=str(tcb_info.get("fmspc")),
        failure="the TCB info is for another platform (FMSPC differs)",
        error=TcbError,
    )
    identity = _signed_collateral(
        record,
        "qe identity",
        collateral.qe_identity,
        collateral.qe_identity_chain,
        "enclaveIdentity",
        when,
    )
    qe = quote.qe_report
    miscselect = int.from_bytes(qe[16:20], "little")
    attributes = qe[48:64]
    mrsigner, isvprodid, isvsvn = (
        qe[128:160],
        struct.unpack_from("<H", qe, 256)[0],
        struct.unpack_from("<H", qe, 258)[0],
    )
    mask = bytes.fromhex(identity["attributesMask"])
    qe_ok = (
        mrsigner.hex().upper() == identity["mrsigner"].upper()
        and isvprodid == identity["isvprodid"]
        and miscselect & int(identity["miscselectMask"], 16) == int(identity["miscselect"], 16)
        and bytes(a & m for a, m in zip(attributes, mask, strict=True))
        == bytes.fromhex(identity["attributes"])
    )
    record.check(
        "qe identity",
        qe_ok,
        "the quoting enclave is Intel's TD QE",
        expected=identity["mrsigner"].lower(),
        actual=mrsigner.hex(),
        failure="the quoting enclave does not match Intel's TD QE identity",
        error=EvidenceSignatureError,
    )
    qe_status = _isv_status(identity["tcbLevels"], isvsvn)
    _check_status(record, policy, "qe tcb status", qe_status, f"QE ISV SVN {isvsvn}: {qe_status}")

    tee = quote.td_report.tee_tcb_svn
    start = 0
    if tee[1] > 0:  # TDX module 1.5+: the module's own identity carries its TCB status
        start = 2
        module = next(
            (m for m in tcb_info.get("tdxModuleIdentities", []) if m["id"] == f"TDX_{tee[1]:02X}"),
            None,
        )
        module_status = "Revoked" if module is None else _isv_status(module["tcbLevels"], tee[0])
        _check_status(
            record,
            policy,
            "tdx module tcb",
            module_status,
            f"TDX module {tee[1]}.{tee[0]}: {module_status}",
        )
    level = None
    for candidate in tcb_info["tcbLevels"]:
        tcb = candidate["tcb"]
        sgx = [c["svn"] for c in tcb["sgxtcbcomponents"]]
        tdx = [c["svn"] for c in tcb.get("tdxtcbcomponents", [])]
        if (
            all(p >= s for p, s in zip(pck_svns, sgx, strict=False))
            and pce_svn >= tcb["pcesvn"]
            and all(tee[i] >= tdx[i] for i in range(start, min(16, len(tdx))))
        ):
            level = candidate
            break
    if level is None:
        raise record.fail(
            "tcb level",
            "the platform's TCB matches no level of the TCB info",
            actual=f"pck svns {pck_svns}, pce {pce_svn}, tee {tee.hex()}",
            error=TcbError,
        )
    status = level["tcbStatus"]
    advisories = ", ".join(level.get("advisoryIDs", []))
    _check_status(
        record,
        policy,
        "tcb status",
        status,
        f"TCB level of {level.get('tcbDate', '?')}: {status}"
        + (f" ({advisories})" if advisories else ""),
    )


def verify_tdx_document(
    document: AttestationDocument, policy: Policy, record: Verification, now: float
) -> PlatformEvidence:
    """Platform verifier for ``tdx`` documents (evidence = quote, collateral = PCS files)."""
    collateral: Collateral | None = None
    fmspc = ""
    try:
        fmspc = fmspc_of(document.evidence)
        collateral = Collateral.from_mapping(dict(document.collateral), fmspc)
    except (ValueError, KeyError):
        collateral = None  # verify_tdx records the precise failure
    quote = verify_tdx(document.evidence, collateral, policy.tdx, record, now)
    return tdx_evidence(quote, fmspc)


def tdx_evidence(quote: TdxQuote, fmspc: str = "") -> PlatformEvidence:
    """What a verified quote attests: report_data, MRTD and RTMRs, and details for people."""
    details = {"tee_tcb_svn": quote.td_report.tee_tcb_svn.hex()}
    if fmspc:
        details["fmspc"] = fmspc
    return PlatformEvidence(
        report_data=quote.td_report.report_data,
        registers=quote.td_report.registers(),
        details=details,
    )
