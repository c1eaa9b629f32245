"""Attester backends: produce platform evidence that signs a given report_data.

One small interface (:class:`Attester`): ``platform``, ``attest(report_data) -> Evidence``
and ``describe()``. ``software`` is the default for laptops and tests; ``sev-snp`` and
``tdx`` ask the kernel through configfs-tsm.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .base import Attester, AttesterError, Evidence
from .software import SoftwareAttester, measure_software

__all__ = [
    "AttesterKind",
    "Attester",
    "AttesterError",
    "Evidence",
    "SoftwareAttester",
    "measure_software",
    "create_attester",
]


class AttesterKind(StrEnum):
    """The evidence backends."""

    SOFTWARE = "software"  # development only: no hardware isolation
    SEV_SNP = "sev-snp"
    TDX = "tdx"


def create_attester(
    kind: AttesterKind | str,
    *,
    root_key: Path | Ed25519PrivateKey | None = None,
    engine: Mapping[str, object] | None = None,
    tsm_root: Path | None = None,
    vcek: Path | None = None,
    tdx_collateral: Path | None = None,
    privlevel: int | None = None,
) -> Attester:
    """Build the attester named ``kind`` (``software``, ``sev-snp`` or ``tdx``)."""
    try:
        kind = AttesterKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in AttesterKind)
        raise AttesterError(f"unknown attester {kind!r}; choose one of {choices}") from None
    if kind is AttesterKind.SOFTWARE:
        return SoftwareAttester.from_options(root_key, engine)
    from .tsm import TsmAttester

    return TsmAttester.from_options(kind.value, tsm_root, vcek, tdx_collateral, privlevel)
