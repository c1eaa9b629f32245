"""NVIDIA GPU attestation, verified on the client: SPDM evidence, device chain, RIMs.

See :mod:`.gpu` for the steps. XML-DSig of the RIMs needs the ``gpu`` extra
(``pip install 'sealgate[gpu]'``: ``signxml``); without it a RIM step refuses and says so.
"""

from __future__ import annotations

from .gpu import (
    DEVICE_ROOT_FINGERPRINT,
    RIM_ROOT_FINGERPRINT,
    GpuEvidence,
    VerifiedGpu,
    verify_gpu,
    version_tuple,
)
from .rim import GoldenMeasurement, Rim
from .spdm import GpuReport, MeasurementBlock

__all__ = [
    "DEVICE_ROOT_FINGERPRINT",
    "RIM_ROOT_FINGERPRINT",
    "GoldenMeasurement",
    "GpuEvidence",
    "GpuReport",
    "MeasurementBlock",
    "Rim",
    "VerifiedGpu",
    "verify_gpu",
    "version_tuple",
]
