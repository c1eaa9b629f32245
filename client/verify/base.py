"""The platform-verifier interface: evidence in, signed report_data and registers out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sealgate.protocol.evidence.attestation import AttestationDocument

from ..policy import Policy
from ..verification import Verification

__all__ = ["PlatformEvidence", "PlatformVerifier", "VERIFIERS", "register"]


@dataclass(frozen=True, slots=True)
class PlatformEvidence:
    """What a platform's root of trust signed."""

    report_data: bytes
    registers: dict[str, str]
    #: Unix time the evidence itself signs, if the platform has a clock (software only).
    issued_at: int | None = None
    details: dict[str, str] = field(default_factory=dict)
    #: Models the evidence itself signs (software: the measured engine configuration's list).
    models: tuple[str, ...] | None = None


#: ``verify(document, policy, record, now) -> PlatformEvidence``; records its own steps.
PlatformVerifier = Callable[[AttestationDocument, Policy, Verification, float], PlatformEvidence]

VERIFIERS: dict[str, PlatformVerifier] = {}


def register(platform: str, verifier: PlatformVerifier) -> None:
    """Plug in the verifier for ``platform``."""
    VERIFIERS[platform] = verifier
