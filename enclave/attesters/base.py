"""The attester interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sealgate.protocol.evidence.gpu import GpuAttestation

__all__ = ["Attester", "AttesterError", "Evidence"]


class AttesterError(Exception):
    """Evidence could not be produced (no device, kernel refused, misconfiguration)."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """Platform evidence and the collateral a client needs to verify it offline."""

    evidence: bytes
    collateral: dict[str, bytes] = field(default_factory=dict)
    #: The GPUs' evidence this report's report_data covers (None: no GPU).
    gpu: GpuAttestation | None = None


class Attester(Protocol):
    """Produces evidence whose signed report_data is the given 64 bytes."""

    platform: str

    def attest(self, report_data: bytes) -> Evidence:
        """Blocking: may do file I/O or cryptography; call it from a worker thread."""
        ...

    def describe(self) -> dict[str, str]:
        """Public facts to print at start-up (never secrets)."""
        ...
