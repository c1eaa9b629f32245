"""GPU evidence in the attestation document, and how it is bound to the CPU report.

Two bindings, both checked by the client:

1. **Nonce.** The enclave asks each GPU for SPDM evidence over
   ``gpu_nonce = SHA-256(lp32("sealgate gpu nonce v1") || lp32(report_data_v1))``, where
   ``report_data_v1`` is the CPU binding of the document's keys, nonce and TLS key hash
   (:func:`~sealgate.protocol.evidence.binding.report_data` without GPU evidence). A GPU report from
   another boot, VM or client nonce carries another nonce.
2. **Evidence.** The CPU report_data then also covers :meth:`GpuAttestation.digest` (the
   nonce, its source and every GPU's report and certificate chain), so the measured enclave
   code vouches for which GPUs it collected: the host cannot swap in evidence from another
   GPU, even one that signed the same public nonce.

``lp32(x)`` is ``uint32-be(len(x)) || x`` (reports and chains outgrow 16-bit lengths). The
digest is ``SHA-256(lp32("sealgate gpu evidence v1") || lp32(nonce) || lp32(nonce_source)
|| uint32-be(count) || lp32(report_i) || lp32(chain_i) ...)``.

RIMs and OCSP responses are stapled collateral (signed by NVIDIA, checked on their own) and
are not in the digest. ``nonce_source`` is ``derived`` (rule 1) or ``pinned``: a nonce the
enclave was configured with, for captured evidence in tests and demos. Clients refuse
``pinned`` unless their policy allows it (development only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..public.errors import MalformedAttestationDocument

__all__ = ["GpuAttestation", "GpuDevice", "GPU_NONCE_LABEL", "GPU_DIGEST_LABEL", "gpu_nonce"]

GPU_NONCE_LABEL = b"sealgate gpu nonce v1"
GPU_DIGEST_LABEL = b"sealgate gpu evidence v1"
NONCE_SOURCES = ("derived", "pinned")
MAX_GPUS = 16
MAX_RIMS = 32


def _lp(field: bytes) -> bytes:
    """lp32: a 32-bit big-endian length, then the bytes."""
    return struct.pack(">I", len(field)) + field


def gpu_nonce(report_data_v1: bytes) -> bytes:
    """The 32-byte SPDM nonce every GPU must sign for a document with this CPU binding."""
    return hashlib.sha256(_lp(GPU_NONCE_LABEL) + _lp(report_data_v1)).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedAttestationDocument(f"'{name}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedAttestationDocument(f"'{name}' is not valid base64") from None


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU: SPDM ``request || response``, its PEM chain (leaf first), stapled OCSP."""

    report: bytes
    chain: bytes
    ocsp: tuple[bytes, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": _b64(self.report),
            "chain": _b64(self.chain),
            "ocsp": [_b64(o) for o in self.ocsp],
        }

    @classmethod
    def from_dict(cls, body: object, name: str) -> GpuDevice:
        if not isinstance(body, dict):
            raise MalformedAttestationDocument(f"'{name}' must be an object")
        ocsp = body.get("ocsp", [])
        if not isinstance(ocsp, list):
            raise MalformedAttestationDocument(f"'{name}.ocsp' must be a list")
        return cls(
            report=_unb64(body.get("report"), f"{name}.report"),
            chain=_unb64(body.get("chain"), f"{name}.chain"),
            ocsp=tuple(_unb64(o, f"{name}.ocsp") for o in ocsp),
        )


@dataclass(frozen=True, slots=True)
class GpuAttestation:
    """Every GPU's evidence, the nonce they signed, and the RIMs to appraise them with."""

    nonce: bytes
    devices: tuple[GpuDevice, ...]
    rims: tuple[bytes, ...] = ()
    nonce_source: str = "derived"

    def __post_init__(self) -> None:
        if len(self.nonce) != 32:
            raise MalformedAttestationDocument("the GPU nonce must be 32 bytes")
        if self.nonce_source not in NONCE_SOURCES:
            raise MalformedAttestationDocument(
                f"'gpu.nonce_source' must be one of {', '.join(NONCE_SOURCES)}"
            )
        if not 1 <= len(self.devices) <= MAX_GPUS or len(self.rims) > MAX_RIMS:
            raise MalformedAttestationDocument(
                f"'gpu' must hold 1..{MAX_GPUS} devices and at most {MAX_RIMS} RIMs"
            )

    def digest(self) -> bytes:
        """What the CPU report_data covers: nonce, its source, each report and chain."""
        hasher = hashlib.sha256(_lp(GPU_DIGEST_LABEL))
        hasher.update(_lp(self.nonce) + _lp(self.nonce_source.encode()))
        hasher.update(struct.pack(">I", len(self.devices)))
        for device in self.devices:
            hasher.update(_lp(device.report) + _lp(device.chain))
        return hasher.digest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "nonce": self.nonce.hex(),
            "nonce_source": self.nonce_source,
            "devices": [d.to_dict() for d in self.devices],
            "rims": [_b64(r) for r in self.rims],
        }

    @classmethod
    def from_dict(cls, body: object) -> GpuAttestation:
        if not isinstance(body, dict):
            raise MalformedAttestationDocument("'gpu' must be an object")
        devices = body.get("devices")
        rims = body.get("rims", [])
        if not isinstance(devices, list) or not isinstance(rims, list):
            raise MalformedAttestationDocument("'gpu.devices' and 'gpu.rims' must be lists")
        nonce = body.get("nonce")
        source = body.get("nonce_source", "derived")
        if not isinstance(nonce, str) or not isinstance(source, str):
            raise MalformedAttestationDocument("'gpu.nonce' and 'gpu.nonce_source' are strings")
        try:
            nonce_bytes = bytes.fromhex(nonce)
        except ValueError:
            raise MalformedAttestationDocument("'gpu.nonce' is not valid hex") from None
        return cls(
            nonce=nonce_bytes,
            devices=tuple(
                GpuDevice.from_dict(d, f"gpu.devices[{i}]") for i, d in enumerate(devices)
            ),
            rims=tuple(_unb64(r, "gpu.rims") for r in rims),
            nonce_source=source,
        )

    @classmethod
    def of(
        cls,
        nonce: bytes,
        devices: Sequence[GpuDevice],
        rims: Sequence[bytes] = (),
        *,
        nonce_source: str = "derived",
    ) -> GpuAttestation:
        return cls(nonce, tuple(devices), tuple(dict.fromkeys(rims)), nonce_source)
