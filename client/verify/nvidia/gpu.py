"""Verify one NVIDIA GPU's attestation offline, step by step, into a :class:`Verification`.

1. The device certificate chain (leaf first) leads to NVIDIA's device identity root,
   shipped with this package and pinned by SHA-256.
2. The leaf signed ``request || response-without-signature`` (ECDSA P-384 / SHA-384, raw
   r||s); the request nonce is the expected one; the leaf's FWID is the report's.
3. The opaque data names the driver and VBIOS versions, project, SKU and chip SKU.
4. The RIMs for those versions are signed (XML-DSig) under NVIDIA's RIM root, valid at
   the verification time; every active golden measurement (RIM index k) is matched by
   SPDM block k+1; no index is active in both RIMs.
5. Policy: minimum versions, architectures, stapled OCSP when demanded.

Certificate paths are checked link by link with ``cryptography`` rather than with its RFC
5280 path builder: two NVIDIA RIM intermediates encode 2023 dates as GeneralizedTime
(RFC 5280 §4.1.2.5 requires UTCTime before 2050), which the strict builder rejects. Each
link's issuer name, signature, CA flag and validity are checked here instead, so the
leniency is exactly that one encoding rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import ocsp

from ...der import OCTET_STRING, DerError, read_tlv
from ...errors import (
    CertificateChainError,
    EvidenceFormatError,
    EvidenceSignatureError,
    MeasurementMismatch,
    PlatformPolicyError,
    ReferenceValueError,
    StaleEvidence,
)
from ...policy import GpuPolicy
from ...verification import Verification
from .rim import Rim, RimSignatureUnavailable, rim_certificates, verify_rim
from .spdm import GpuReport

__all__ = [
    "DEVICE_ROOT_FINGERPRINT",
    "RIM_ROOT_FINGERPRINT",
    "GpuEvidence",
    "VerifiedGpu",
    "verify_gpu",
    "version_tuple",
]

#: SHA-256 of NVIDIA's "NVIDIA Device Identity CA" and "NVIDIA CoRIM signing Root CA" (DER).
DEVICE_ROOT_FINGERPRINT = "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
RIM_ROOT_FINGERPRINT = "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1"
_ARCHITECTURES = {"GH100": "HOPPER", "GB100": "BLACKWELL", "GB102": "BLACKWELL"}
_DICE_TCB_INFO = ("2.23.133.5.4.1", "2.23.133.5.4.1.1")  # TCG DICE TcbInfo (Hopper, Blackwell)
_EXTRA_HINT = "install the GPU extra: pip install 'sealgate[gpu]'"


@dataclass(frozen=True, slots=True)
class GpuEvidence:
    """One GPU's evidence as the enclave staples it: report, chain, optional OCSP responses."""

    report: bytes
    chain: bytes  # PEM, leaf first
    ocsp: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifiedGpu:
    """What a verified GPU attests."""

    architecture: str
    driver_version: str
    vbios_version: str
    nonce: bytes
    leaf_fingerprint: str
    rims: tuple[str, ...]
    matched: int
    details: dict[str, str] = field(default_factory=dict)


def version_tuple(version: str, *, base: int = 10) -> tuple[int, ...]:
    """``"550.90.07"`` -> ``(550, 90, 7)``; VBIOS versions use ``base=16``."""
    return tuple(int(part, base) for part in version.strip().split("."))


@cache
def _root(name: str, fingerprint: str) -> x509.Certificate:
    pem = resources.files("sealgate.client.verify.nvidia").joinpath("roots", name).read_bytes()
    root = x509.load_pem_x509_certificate(pem)
    if root.fingerprint(hashes.SHA256()).hex() != fingerprint:
        raise RuntimeError(f"the shipped NVIDIA root {name} does not have its pinned fingerprint")
    return root


def device_root() -> x509.Certificate:
    return _root("device_identity_root.pem", DEVICE_ROOT_FINGERPRINT)


def rim_root() -> x509.Certificate:
    return _root("rim_root.pem", RIM_ROOT_FINGERPRINT)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints cA, and keyCertSign when a keyUsage is present (RFC 5280 §4.2.1.3)."""
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign)
    except x509.ExtensionNotFound:
        return True


@dataclass(frozen=True, slots=True)
class _Path:
    """A chain checked up to a pinned root: the leaf and the window every link is valid in."""

    leaf: x509.Certificate
    not_before: dt.datetime
    not_after: dt.datetime
    names: tuple[str, ...]


def _check_path(certs: Sequence[x509.Certificate], root: x509.Certificate) -> _Path:
    """Every link signed by the next, issuers are CAs, and the top is (signed by) ``root``.

    Raises ``ValueError`` naming the broken link. Validity is returned as a window, checked
    by the caller at its verification time (so this result can be cached).
    """
    chain = list(certs)
    if not chain:
        raise ValueError("the certificate chain is empty")
    root_der = root.public_bytes(serialization.Encoding.DER)
    if chain[-1].public_bytes(serialization.Encoding.DER) == root_der:
        chain.pop()
    if not chain:
        raise ValueError("the chain holds only the root")
    for child, parent in zip(chain, [*chain[1:], root], strict=True):
        name = child.subject.rfc4514_string()
        if not _signed_by(child, parent):
            raise ValueError(f"{name!r} is not signed by {parent.subject.rfc4514_string()!r}")
        if not _is_ca(parent):
            raise ValueError(f"{parent.subject.rfc4514_string()!r} is not a CA")
    everything = [*chain, root]
    return _Path(
        leaf=chain[0],
        not_before=max(c.not_valid_before_utc for c in everything),
        not_after=min(c.not_valid_after_utc for c in everything),
        names=tuple(c.subject.rfc4514_string() for c in chain),
    )


@lru_cache(maxsize=64)
def _device_path(chain_pem: bytes) -> tuple[_Path, tuple[x509.Certificate, ...]]:
    certs = tuple(x509.load_pem_x509_certificates(chain_pem))
    return _check_path(certs, device_root()), certs


@lru_cache(maxsize=64)
def _rim_path(data: bytes) -> _Path:
    """The RIM's signing chain (from its KeyInfo), checked up to the pinned RIM root."""
    return _check_path(rim_certificates(data), rim_root())


@lru_cache(maxsize=64)
def _verified_rim(data: bytes) -> tuple[Rim, _Path]:
    """A RIM whose chain leads to the RIM root and whose signature verifies (time aside:
    the caller checks the chain's validity window at its own verification time)."""
    path = _rim_path(data)
    return verify_rim(data, path.leaf, path.leaf.not_valid_before_utc), path


def _fwids(cert: x509.Certificate) -> set[bytes]:
    """48-byte digests in the leaf's TCG DICE TcbInfo extension (its FWID list)."""
    found: set[bytes] = set()

    def walk(data: bytes) -> None:
        offset = 0
        while offset < len(data):
            tag, value, offset = read_tlv(data, offset)
            if tag & 0x20:
                walk(value)
            elif tag == OCTET_STRING and len(value) == 48:
                found.add(value)

    for ext in cert.extensions:
        if ext.oid.dotted_string in _DICE_TCB_INFO and isinstance(
            ext.value, x509.UnrecognizedExtension
        ):
            try:
                walk(ext.value.value)
            except DerError:
                continue
    return found


def _chip(names: Sequence[str]) -> str:
    """The GPU chip the device chain names (``GH100``, ``GB100``...), or ``UNKNOWN``."""
    for name in names:
        for chip in _ARCHITECTURES:
            if chip in name:
                return chip
    return "UNKNOWN"


def _peek(data: bytes, attribute: str) -> str:
    """A RIM Meta attribute before its signature is checked (only to choose a RIM)."""
    marker = f' {attribute}="'.encode()
    start = data.find(marker)
    if start < 0:
        return ""
    end = data.find(b'"', start + len(marker))
    return data[start + len(marker) : end].decode("ascii", "replace")


def _peek_version(data: bytes) -> str:
    return _peek(data, "colloquialVersion")


def verify_gpu(
    evidence: GpuEvidence,
    rims: Sequence[bytes],
    policy: GpuPolicy,
    record: Verification,
    now: float,
    *,
    expected_nonce: bytes | None,
    label: str = "gpu",
) -> VerifiedGpu:
    """Verify one GPU; every step is recorded, every failure is a typed refusal.

    ``expected_nonce`` is the nonce the request must carry (None: not checked, for an
    auditor who has no binding to check it against; the step says so).
    """
    when = dt.datetime.fromtimestamp(now, dt.UTC)
    stamp = f"{when:%Y-%m-%dT%H:%M:%SZ}"
    with record.guard(
        f"{label} evidence format", "the SPDM evidence is malformed", error=EvidenceFormatError
    ):
        report = GpuReport.from_bytes(evidence.report)
    record.passed(
        f"{label} evidence format",
        f"SPDM 1.1 GET_MEASUREMENTS request and signed response, {len(report.blocks)} blocks",
    )

    # 1. Device certificate chain.
    with record.guard(
        f"{label} certificate chain",
        "the GPU certificate chain does not lead to NVIDIA's device identity root",
        error=CertificateChainError,
    ):
        path, certs = _device_path(evidence.chain)
    record.passed(
        f"{label} certificate chain",
        f"{len(certs)} certificates, each signed by the next, up to the pinned NVIDIA Device "
        f"Identity CA (sha256 {DEVICE_ROOT_FINGERPRINT[:16]}…)",
    )
    record.check(
        f"{label} chain validity",
        path.not_before <= when <= path.not_after,
        f"every certificate is valid at {stamp}",
        expected=f"{path.not_before:%Y-%m-%d}..{path.not_after:%Y-%m-%d}",
        actual=stamp,
        failure=f"a certificate of the GPU chain is not valid at {stamp}",
        error=CertificateChainError,
    )
    chip = _chip(path.names)
    architecture = _ARCHITECTURES.get(chip, "UNKNOWN")
    record.check(
        f"{label} architecture",
        architecture in policy.architectures,
        f"{architecture} GPU",
        expected=", ".join(sorted(policy.architectures)),
        actual=architecture,
        failure=f"the GPU is {architecture}, which the policy does not accept",
        error=PlatformPolicyError,
    )

    # 2. Signature, nonce, FWID.
    key = path.leaf.public_key()
    r = int.from_bytes(report.signature[:48], "big")
    s = int.from_bytes(report.signature[48:], "big")
    try:
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
            raise InvalidSignature
        key.verify(encode_dss_signature(r, s), report.signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise record.fail(
            f"{label} report signature",
            "the chain's leaf did not sign this request and response (ECDSA P-384/SHA-384)",
            error=EvidenceSignatureError,
        ) from None
    record.passed(
        f"{label} report signature",
        "the leaf signed request || response (ECDSA P-384/SHA-384)",
    )
    if expected_nonce is None:
        record.passed(
            f"{label} nonce",
            "not compared: no binding was given (an auditor's check of a captured report)",
            actual=report.request_nonce.hex(),
        )
    else:
        record.check(
            f"{label} nonce",
            report.request_nonce == expected_nonce,
            "the GPU signed the expected nonce",
            expected=expected_nonce.hex(),
            actual=report.request_nonce.hex(),
            failure="the GPU report was made for another nonce (another boot, VM or request)",
            error=StaleEvidence,
        )
    fwid = report.fwid
    if fwid is None:
        record.passed(
            f"{label} fwid",
            "the report carries no FWID field (drivers before 550): not compared",
        )
    else:
        with record.guard(f"{label} fwid", "the leaf's DICE extension is malformed"):
            leaf_fwids = _fwids(path.leaf)
        record.check(
            f"{label} fwid",
            fwid in leaf_fwids,
            "the leaf certificate's DICE FWID equals the report's",
            expected=fwid.hex(),
            actual=", ".join(sorted(f.hex() for f in leaf_fwids)) or "(none in the leaf)",
            failure="the report's FWID is not the one the leaf certificate was issued for",
            error=CertificateChainError,
        )

    # 3. Opaque data.
    with record.guard(
        f"{label} opaque data", "the opaque data is malformed", error=EvidenceFormatError
    ):
        driver = report.driver_version
        vbios = report.vbios_version
        project = report.text_field("PROJECT") or "?"
        sku = report.text_field("PROJECT_SKU") or "?"
        chip_sku = report.text_field("CHIP_SKU") or "?"
    if driver is None or vbios is None:
        raise record.fail(
            f"{label} opaque data",
            "the report does not name its driver and VBIOS versions",
            error=EvidenceFormatError,
        )
    # The ids NVIDIA's RIM service files these RIMs under (what an auditor fetches).
    rim_ids = (
        f"NV_GPU_DRIVER_{chip}_{driver}",
        f"NV_GPU_VBIOS_{project}_{sku}_{chip_sku}_{vbios.replace('.', '')}",
    )
    record.passed(
        f"{label} opaque data",
        f"driver {driver}, VBIOS {vbios}, project {project}, SKU {sku}, chip SKU {chip_sku} "
        f"(RIMs {rim_ids[0]}, {rim_ids[1]})",
    )
    _check_minimum(record, f"{label} driver version", driver, policy.min_driver_version, 10)
    _check_minimum(record, f"{label} vbios version", vbios, policy.min_vbios_version, 16)

    # 4. Reference integrity manifests.
    chosen: list[tuple[str, Rim]] = []
    for kind, version, required in (
        ("driver", driver, policy.require_driver_rim),
        ("vbios", vbios, True),
    ):
        rim = _select_rim(record, label, kind, version, chip, rims, when, required)
        if rim is not None:
            chosen.append((kind, rim))
    matched = _match(record, label, report, chosen)

    # 5. Revocation.
    _check_ocsp(record, label, evidence, certs, policy, when)
    return VerifiedGpu(
        architecture=architecture,
        driver_version=driver,
        vbios_version=vbios,
        nonce=report.request_nonce,
        leaf_fingerprint=path.leaf.fingerprint(hashes.SHA256()).hex(),
        rims=tuple(f"{kind} {rim.version}" for kind, rim in chosen),
        matched=matched,
        details={
            "project": project,
            "sku": sku,
            "chip_sku": chip_sku,
            "driver_rim_id": rim_ids[0],
            "vbios_rim_id": rim_ids[1],
        },
    )


def _check_minimum(
    record: Verification, name: str, actual: str, minimum: str | None, base: int
) -> None:
    if minimum is None:
        record.passed(name, f"{actual} (no minimum configured)")
        return
    try:
        ok = version_tuple(actual, base=base) >= version_tuple(minimum, base=base)
    except ValueError:
        ok = False
    record.check(
        name,
        ok,
        f"{actual} is at least {minimum}",
        expected=f">= {minimum}",
        actual=actual,
        failure=f"{actual} is older than the policy's minimum {minimum}",
        error=PlatformPolicyError,
    )


def _select_rim(
    record: Verification,
    label: str,
    kind: str,
    version: str,
    chip: str,
    rims: Sequence[bytes],
    when: dt.datetime,
    required: bool,
) -> Rim | None:
    """The RIM for ``chip`` at ``version``: chain to the pinned RIM root, validity, signature."""
    name = f"{label} {kind} rim"
    candidates = [
        data
        for data in rims
        if _peek_version(data).lower() == version.lower() and _peek(data, "product") == chip
    ]
    if not candidates:
        if not required:
            record.passed(name, f"no RIM for {kind} {version}; not required by the policy")
            return None
        raise record.fail(
            name,
            f"no reference integrity manifest for {chip} {kind} {version} was supplied",
            expected=f"a {chip} RIM with colloquialVersion {version}",
            actual=", ".join(f"{_peek(d, 'product')} {_peek_version(d)}" for d in rims)
            or "(no RIMs)",
            error=ReferenceValueError,
        )
    data = candidates[0]
    try:
        path = _rim_path(data)
    except RimSignatureUnavailable:
        raise record.fail(
            f"{name} chain",
            f"XML parsing of RIMs is not installed: {_EXTRA_HINT}",
            error=ReferenceValueError,
        ) from None
    except Exception as exc:  # noqa: BLE001 - every failure of an untrusted RIM is a refusal
        raise record.fail(
            f"{name} chain",
            f"the {kind} RIM {version}'s signing chain does not lead to NVIDIA's RIM root "
            f"({type(exc).__name__}: {str(exc)[:160] or 'no detail'})",
            error=ReferenceValueError,
        ) from None
    record.passed(
        f"{name} chain",
        f"{path.names[0]}, chained to the pinned NVIDIA CoRIM signing Root CA",
    )
    stamp = f"{when:%Y-%m-%dT%H:%M:%SZ}"
    record.check(
        f"{name} validity",
        path.not_before <= when <= path.not_after,
        f"the RIM's signing chain is valid at {stamp}",
        expected=f"{path.not_before:%Y-%m-%d}..{path.not_after:%Y-%m-%d}",
        actual=stamp,
        failure=f"the RIM's signing chain is not valid at {stamp} (expired or not yet valid)",
        error=ReferenceValueError,
    )
    try:
        rim, _ = _verified_rim(data)
    except RimSignatureUnavailable:
        raise record.fail(
            f"{name} signature",
            f"XML-DSig verification is not installed: {_EXTRA_HINT}",
            error=ReferenceValueError,
        ) from None
    except Exception as exc:  # noqa: BLE001 - every failure of an untrusted RIM is a refusal
        raise record.fail(
            f"{name} signature",
            f"the {kind} RIM {version} is not validly signed by its leaf "
            f"({type(exc).__name__}: {str(exc)[:160] or 'no detail'})",
            error=ReferenceValueError,
        ) from None
    record.passed(f"{name} signature", "XML-DSig (ECDSA P-384/SHA-384) by the RIM's leaf verifies")
    record.check(
        name,
        rim.version.lower() == version.lower() and rim.product == chip,
        f"{kind} RIM {rim.version} ({rim.product}, tag {rim.tag_id[:16]}…)",
        expected=f"{chip} {version}",
        actual=f"{rim.product} {rim.version}",
        failure="the signed RIM names another chip or version than the one it was chosen for",
        error=ReferenceValueError,
    )
    return rim


def _match(
    record: Verification, label: str, report: GpuReport, chosen: Sequence[tuple[str, Rim]]
) -> int:
    """Every active golden measurement matched by one alternative; no index in two RIMs."""
    active: dict[int, str] = {}
    for kind, rim in chosen:
        for golden in rim.measurements:
            if not golden.active:
                continue
            if golden.index in active:
                raise record.fail(
                    f"{label} measurements",
                    f"RIM index {golden.index} is active in both the {active[golden.index]} "
                    f"and the {kind} RIM",
                    error=ReferenceValueError,
                )
            active[golden.index] = kind
    mismatches: list[str] = []
    for kind, rim in chosen:
        for golden in rim.measurements:
            if not golden.active:
                continue
            block = report.block(golden.index + 1)
            if block is None or block.value not in golden.values:
                got = "missing" if block is None else block.value.hex()[:16] + "…"
                mismatches.append(f"{kind} index {golden.index} (block {golden.index + 1}: {got})")
    record.check(
        f"{label} measurements",
        not mismatches and bool(active),
        f"all {len(active)} active golden measurements match the report",
        expected=f"{len(active)} matching",
        actual=f"{len(active) - len(mismatches)} matching",
        failure="measurements differ from NVIDIA's reference values: " + "; ".join(mismatches[:6])
        if mismatches
        else "no active golden measurement to compare",
        error=MeasurementMismatch,
    )
    return len(active)


def _check_ocsp(
    record: Verification,
    label: str,
    evidence: GpuEvidence,
    certs: Sequence[x509.Certificate],
    policy: GpuPolicy,
    when: dt.datetime,
) -> None:
    """Stapled OCSP responses: each must be good; with ``require_ocsp``, one per NVIDIA cert.

    The leaf is made by the GPU at boot and has no OCSP entry; every certificate above it,
    up to (not including) the root, is NVIDIA-issued and must be covered when demanded.
    """
    name = f"{label} ocsp"
    if not evidence.ocsp:
        record.check(
            name,
            not policy.require_ocsp,
            "no OCSP response stapled; not required by the policy",
            failure="the policy demands OCSP status for the GPU certificates and none is stapled",
            error=CertificateChainError,
        )
        return
    with record.guard(name, "a stapled OCSP response is unusable", error=CertificateChainError):
        statuses = dict(_ocsp_status(data, certs, when) for data in evidence.ocsp)
    bad = {serial: status for serial, status in statuses.items() if status != "good"}
    record.check(
        name,
        not bad,
        f"{len(statuses)} stapled OCSP response(s), all good",
        expected="good",
        actual=", ".join(f"{serial:x}: {status}" for serial, status in statuses.items()),
        failure="a GPU certificate is not in good standing: "
        + ", ".join(f"serial {serial:x}: {status}" for serial, status in bad.items()),
        error=CertificateChainError,
    )
    if policy.require_ocsp:
        missing = [c for c in certs[1:-1] if c.serial_number not in statuses]
        record.check(
            f"{name} coverage",
            not missing,
            f"every NVIDIA-issued certificate of the chain ({len(certs) - 2}) has a good status",
            failure="no stapled OCSP response for "
            + ", ".join(c.subject.rfc4514_string() for c in missing),
            error=CertificateChainError,
        )


def _ocsp_status(
    data: bytes, certs: Sequence[x509.Certificate], when: dt.datetime
) -> tuple[int, str]:
    """``(serial, status)`` of one stapled response (RFC 6960), checked against ``certs``.

    Signed by the issuer, or by a responder the issuer certified for OCSP signing
    (§4.2.2.2); for a certificate of this chain (serial and issuer key hash); current.
    """
    response = ocsp.load_der_ocsp_response(data)
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return -1, f"responder status {response.response_status.name}"
    serial = response.serial_number
    index = next((i for i, c in enumerate(certs[:-1]) if c.serial_number == serial), None)
    if index is None:
        return serial, "response for a certificate not in the chain"
    issuer = certs[index + 1]
    issuer_key = issuer.public_key()
    if not isinstance(issuer_key, ec.EllipticCurvePublicKey):
        return serial, "unsupported issuer key"
    # issuerKeyHash is over the subjectPublicKey BIT STRING contents: the EC point (§4.1.1).
    key_hash = hashes.Hash(response.hash_algorithm)
    key_hash.update(
        issuer_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    if key_hash.finalize() != response.issuer_key_hash:
        return serial, "response names another issuer"
    signer = issuer
    for responder in response.certificates:
        if _signed_by(responder, issuer) and _ocsp_signing(responder):
            signer = responder
            break
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or response.signature_hash_algorithm is None:
        return serial, "unsupported responder key"
    try:
        key.verify(
            response.signature,
            response.tbs_response_bytes,
            ec.ECDSA(response.signature_hash_algorithm),
        )
    except InvalidSignature:
        return serial, "bad responder signature"
    next_update = response.next_update_utc
    if response.this_update_utc > when or (next_update is not None and next_update < when):
        return serial, "response outside its validity"
    return serial, response.certificate_status.name.lower()


def _ocsp_signing(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING in usage
