"""GPU evidence sources: the enclave's NVIDIA GPUs, asked for SPDM evidence over a nonce.

``collect(derived_nonce)`` returns a :class:`~sealgate.protocol.evidence.gpu.GpuAttestation`. The
NVML source asks each GPU in confidential-computing mode for a report over the derived
nonce (see :mod:`sealgate.protocol.evidence.gpu`); the file source serves captured evidence for
tests and offline audits and declares its nonce ``pinned`` (clients refuse that unless
their policy allows it), because a captured report cannot sign a new nonce.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from sealgate.protocol.evidence.gpu import GpuAttestation, GpuDevice

from .base import AttesterError

__all__ = ["FileGpuSource", "GpuSource", "NvmlGpuSource", "read_report"]


class GpuSource(Protocol):
    """Produces every GPU's evidence over a nonce (blocking; called from a worker thread)."""

    def collect(self, nonce: bytes) -> GpuAttestation: ...

    def describe(self) -> dict[str, str]: ...


def read_report(path: Path) -> bytes:
    """A captured report: raw bytes, or the hex NVIDIA's tools write."""
    raw = path.read_bytes()
    try:
        return bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return raw


class FileGpuSource:
    """Captured evidence (reports and chains per GPU, plus RIMs) served with a pinned nonce.

    ``nonce`` is the nonce the enclave is configured to bind (default: the one the first
    captured report carries). It is what the client checks every report against, so a
    captured report from another boot (another nonce) is refused.
    """

    def __init__(
        self,
        devices: Sequence[GpuDevice],
        rims: Sequence[bytes] = (),
        nonce: bytes | None = None,
    ) -> None:
        if not devices:
            raise AttesterError("file GPU evidence needs at least one report and chain")
        self.devices = tuple(devices)
        self.rims = tuple(rims)
        self.nonce = nonce if nonce is not None else self.devices[0].report[4:36]
        if len(self.nonce) != 32:
            raise AttesterError("the pinned GPU nonce must be 32 bytes")

    @classmethod
    def from_files(
        cls,
        reports: Sequence[Path],
        chains: Sequence[Path],
        rims: Sequence[Path] = (),
        nonce: bytes | None = None,
    ) -> FileGpuSource:
        if len(reports) != len(chains):
            raise AttesterError("give one certificate chain per GPU report")
        try:
            devices = [
                GpuDevice(read_report(r), c.read_bytes())
                for r, c in zip(reports, chains, strict=True)
            ]
            return cls(devices, [p.read_bytes() for p in rims], nonce)
        except OSError as exc:
            raise AttesterError(f"cannot read GPU evidence: {exc}") from exc

    def collect(self, nonce: bytes) -> GpuAttestation:
        return GpuAttestation.of(self.nonce, self.devices, self.rims, nonce_source="pinned")

    def describe(self) -> dict[str, str]:
        return {
            "gpu": f"{len(self.devices)} captured GPU report(s), pinned nonce {self.nonce.hex()}"
        }


class NvmlGpuSource:
    """Every GPU NVML sees, through NVIDIA's Python bindings (``nvidia-ml-py``).

    Needs GPUs in confidential-computing mode and the driver's attestation support; without
    ``pynvml`` or GPUs it raises :class:`AttesterError` when built, never at import.
    """

    def __init__(self, rims: Sequence[bytes] = ()) -> None:
        try:
            pynvml = importlib.import_module("pynvml")  # nvidia-ml-py; untyped, optional
        except ImportError as exc:
            raise AttesterError(
                "NVML GPU evidence needs NVIDIA's bindings: pip install nvidia-ml-py"
            ) from exc
        self._nvml: Any = pynvml
        self.rims = tuple(rims)
        try:
            pynvml.nvmlInit()
            self._count = int(pynvml.nvmlDeviceGetCount())
        except Exception as exc:
            raise AttesterError(f"NVML is unavailable: {exc}") from exc
        if self._count == 0:
            raise AttesterError("NVML sees no GPU")

    def collect(self, nonce: bytes) -> GpuAttestation:
        nvml = self._nvml
        devices = []
        try:
            for index in range(self._count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                report = nvml.nvmlDeviceGetConfComputeGpuAttestationReport(handle, nonce)
                certs = nvml.nvmlDeviceGetConfComputeGpuCertificate(handle)
                devices.append(
                    GpuDevice(
                        bytes(report.attestationReport[: report.attestationReportSize]),
                        bytes(certs.attestationCertChain[: certs.attestationCertChainSize]),
                    )
                )
        except Exception as exc:
            raise AttesterError(f"NVML refused GPU attestation: {exc}") from exc
        return GpuAttestation.of(nonce, devices, self.rims)

    def describe(self) -> dict[str, str]:
        return {"gpu": f"{self._count} GPU(s) through NVML"}
