"""Client-side verification of attestation documents.

:func:`verify_document` runs the common steps and dispatches the evidence to the
platform verifier registered for the document's platform (``software`` here;
``sev-snp`` and ``tdx`` plug into the same registry).
"""

from __future__ import annotations

from .base import VERIFIERS, PlatformEvidence, PlatformVerifier, register
from .document import VerifiedDocument, verify_document
from .sev_snp import verify_snp_document
from .software import verify_software
from .tdx import verify_tdx_document

register("software", verify_software)
register("sev-snp", verify_snp_document)
register("tdx", verify_tdx_document)

__all__ = [
    "VERIFIERS",
    "PlatformEvidence",
    "PlatformVerifier",
    "VerifiedDocument",
    "register",
    "verify_document",
    "verify_software",
]
