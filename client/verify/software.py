"""Verifier for the ``software`` attester: an Ed25519 signature by an explicitly trusted root."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.evidence.software_evidence import (
    PLATFORM,
    SIGNING_CONTEXT,
    SoftwareClaims,
    decode_evidence,
)
from sealgate.protocol.public.errors import MalformedAttestationDocument

from ..errors import CertificateChainError, EvidenceSignatureError
from ..policy import Policy
from ..verification import Verification
from .base import PlatformEvidence

__all__ = ["verify_software"]


def verify_software(
    document: AttestationDocument, policy: Policy, record: Verification, now: float
) -> PlatformEvidence:
    """Check the root is trusted and its signature over the claims."""
    root = document.collateral.get("software_root", b"")
    record.check(
        "software root trusted",
        root in policy.software_roots,
        "the evidence names a software root this client was told to trust"
        if root in policy.software_roots
        else "the software root is not in the policy's trusted roots (software evidence is "
        "never trusted implicitly)",
        expected=", ".join(r.hex() for r in policy.software_roots) or "(none trusted)",
        actual=root.hex() or "(none)",
        error=CertificateChainError,
    )
    try:
        claims_bytes, signature = decode_evidence(document.evidence)
        Ed25519PublicKey.from_public_bytes(root).verify(signature, SIGNING_CONTEXT + claims_bytes)
        claims = SoftwareClaims.from_bytes(claims_bytes)
    except (InvalidSignature, MalformedAttestationDocument, ValueError) as exc:
        raise record.fail(
            "evidence signature",
            f"Ed25519 signature does not verify ({type(exc).__name__})",
            error=EvidenceSignatureError,
        ) from None
    record.passed("evidence signature", "Ed25519 signature by the trusted root verifies")
    record.check(
        "evidence platform",
        claims.platform == PLATFORM,
        "claims say platform 'software'",
        expected=PLATFORM,
        actual=claims.platform,
    )
    return PlatformEvidence(
        report_data=claims.report_data,
        registers={"measurement": claims.measurement.hex()},
        issued_at=claims.issued_at,
        details={"sealgate_version": claims.sealgate_version},
        models=claims.models,
    )
