"""Evidence format of the ``software`` attester: a stand-in for hardware, never mistaken for it.

An Ed25519 key plays the role of the hardware root. The evidence is JSON::

    {"claims": base64(canonical JSON claims), "signature": base64(Ed25519(CONTEXT || claims))}

with claims ``{"platform": "software", "measurement": hex(48), "report_data": hex(64),
"issued_at": unix seconds, "sealgate_version": str}`` and, when the engine configuration
names the models it serves, ``"models": [str, ...]`` (the list from that measured
configuration, sorted). The platform is always
``software``: a client refuses it unless it was told to trust this root's public key.
Signing and verifying live in the enclave and the client; this module is the format.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ..public.errors import MalformedAttestationDocument

__all__ = ["SoftwareClaims", "SIGNING_CONTEXT", "PLATFORM", "encode_evidence", "decode_evidence"]

PLATFORM = "software"
SIGNING_CONTEXT = b"sealgate software evidence v1\x00"


@dataclass(frozen=True, slots=True)
class SoftwareClaims:
    """What the software root signs."""

    measurement: bytes
    report_data: bytes
    issued_at: int
    sealgate_version: str
    platform: str = PLATFORM
    #: The models of the measured engine configuration (None: the configuration names none).
    models: tuple[str, ...] | None = None

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): the exact bytes that are signed."""
        body: dict[str, Any] = {
            "platform": self.platform,
            "measurement": self.measurement.hex(),
            "report_data": self.report_data.hex(),
            "issued_at": self.issued_at,
            "sealgate_version": self.sealgate_version,
        }
        if self.models is not None:
            body["models"] = sorted(self.models)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SoftwareClaims:
        """Parse signed claims; raises :class:`MalformedAttestationDocument`."""
        try:
            body = json.loads(data)
            claims = cls(
                measurement=bytes.fromhex(body["measurement"]),
                report_data=bytes.fromhex(body["report_data"]),
                issued_at=int(body["issued_at"]),
                sealgate_version=str(body["sealgate_version"]),
                platform=str(body["platform"]),
                models=_models(body.get("models")),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise MalformedAttestationDocument("software evidence claims are malformed") from None
        return claims


def _models(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise ValueError("models must be a list of non-empty strings")
    return tuple(value)


def encode_evidence(claims_bytes: bytes, signature: bytes) -> bytes:
    """Wrap signed claims and their signature into evidence bytes."""
    return json.dumps(
        {
            "claims": base64.b64encode(claims_bytes).decode(),
            "signature": base64.b64encode(signature).decode(),
        },
        separators=(",", ":"),
    ).encode()


def decode_evidence(evidence: bytes) -> tuple[bytes, bytes]:
    """Split evidence into ``(claims bytes, signature)``."""
    try:
        body = json.loads(evidence)
        claims = base64.b64decode(body["claims"], validate=True)
        signature = base64.b64decode(body["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise MalformedAttestationDocument("software evidence is not valid JSON evidence") from None
    return claims, signature
