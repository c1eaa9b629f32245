"""Attester backends: produce platform evidence that signs a given report_data.

One small interface (:class:`Attester`): ``platform``, ``attest(report_data) -> Evidence``
and ``describe()``. ``software`` is the default for laptops and tests; ``sev-snp`` and
``tdx`` ask the kernel through configfs-tsm.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .base import Attester, AttesterError, Evidence
from .software import SoftwareAttester, measure_software

__all__ = [
    "Attester",
    "AttesterError",
    "Evidence",
    "SoftwareAttester",
    "measure_software",
    "create_attester",
]


def create_attester(
    kind: str,
    *,
    root_key: Path | Ed25519PrivateKey | None = None,
    engine: Mapping[str, object] | None = None,
    tsm_root: Path | None = None,
    vcek: Path | None = None,
    tdx_collateral: Path | None = None,
    privlevel: int | None = None,
) -> Attester:
    """Build the attester named ``kind`` (``software``, ``sev-snp`` or ``tdx``)."""
    if kind == "software":
        return SoftwareAttester.from_options(root_key, engine)
    if kind in ("sev-snp", "tdx"):
        from .tsm import TsmAttester

        return TsmAttester.from_options(kind, tsm_root, vcek, tdx_collateral, privlevel)
    raise AttesterError(f"unknown attester {kind!r}; choose software, sev-snp or tdx")
