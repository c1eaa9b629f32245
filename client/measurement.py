"""The measurement values a client expects: pinned, or taken from a verified release.

Its own module because both the policy (which holds them) and the release verifier
(which produces them) need it, and the policy builds itself from releases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ExpectedMeasurement"]


@dataclass(frozen=True, slots=True)
class ExpectedMeasurement:
    """Register values one platform must report (lower-case hex); every named one must match.

    ``software`` and ``sev-snp`` name ``measurement``; ``tdx`` names any of ``mrtd``,
    ``rtmr0`` .. ``rtmr3``. ``source`` says where the values came from (pinned, a release).
    ``models`` are the models an enclave with these values is trusted to serve (the
    release's list); None when the source names none.
    """

    platform: str
    registers: Mapping[str, str]
    source: str = "pinned"
    models: frozenset[str] | None = None

    def matches(self, platform: str, actual: Mapping[str, str]) -> bool:
        if platform != self.platform:
            return False
        return all(
            actual.get(name, "").lower() == value.lower() for name, value in self.registers.items()
        )

    def __str__(self) -> str:
        regs = ", ".join(f"{k}={v[:16]}…" for k, v in sorted(self.registers.items()))
        served = "" if self.models is None else f" for {', '.join(sorted(self.models))}"
        return f"{self.platform}({regs}) from {self.source}{served}"
