"""The attestation document (JSON, ``sealgate-attestation/v1`` or ``/v2``) an enclave serves.

It carries the published keys, the nonce and TLS key hash that went into report_data,
the platform's evidence and the collateral to verify it offline. Nothing in it is
trusted by itself: a client recomputes :func:`~sealgate.protocol.evidence.binding.report_data`
from these fields and checks it against what the evidence signs.

When the client supplies no nonce, the enclave binds a timestamp instead
(``sealgate-time:<unix seconds>``), so that a cached document's age is signed too.
That clock is the guest's, which the host can influence: a fresh client nonce is
the stronger freshness proof.

Fresh nonces are batched (:mod:`~sealgate.protocol.evidence.nonce_batch`): when several
clients' nonces share one report, ``nonce`` is the batch's bound nonce and the
document is ``sealgate-attestation/v2``, which is v1 plus a ``nonce_proof`` object
(the client's nonce, leaf index, batch size and audit path). Documents without a
proof (time nonces, a batch of one) stay v1, byte for byte.

A document may also carry ``gpu`` (:class:`~sealgate.protocol.evidence.gpu.GpuAttestation`): the
evidence of the enclave's NVIDIA GPUs, their chains and RIMs. Its digest is then the last
field of report_data, so a client that ignores it fails the binding check (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..public.errors import InvalidNonceProof, MalformedAttestationDocument
from ..public.keyconfig import KeyConfig, decode_key_configs
from .binding import report_data
from .gpu import GpuAttestation
from .nonce_batch import NonceProof

__all__ = [
    "AttestationDocument",
    "DOCUMENT_FORMAT",
    "BATCH_DOCUMENT_FORMAT",
    "time_nonce",
    "parse_time_nonce",
]

#: Documents whose nonce is bound directly (a client nonce or a time nonce).
DOCUMENT_FORMAT = "sealgate-attestation/v1"
#: Documents whose nonce is a batch root, with the client's inclusion proof.
BATCH_DOCUMENT_FORMAT = "sealgate-attestation/v2"
MEDIA_TYPE = "application/json"
_TIME_PREFIX = b"sealgate-time:"
MAX_DOCUMENT_BYTES = 256 * 1024


def time_nonce(unix_seconds: int) -> bytes:
    """The nonce an enclave binds when the client gave none."""
    return _TIME_PREFIX + str(int(unix_seconds)).encode()


def parse_time_nonce(nonce: bytes) -> int | None:
    """The timestamp of a time nonce, or None for a client nonce."""
    if not nonce.startswith(_TIME_PREFIX):
        return None
    digits = nonce[len(_TIME_PREFIX) :]
    if not digits.isdigit() or len(digits) > 12:
        return None
    return int(digits)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedAttestationDocument(f"'{name}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedAttestationDocument(f"'{name}' is not valid base64") from None


def _unhex(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedAttestationDocument(f"'{name}' must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedAttestationDocument(f"'{name}' is not valid hex") from None


@dataclass(frozen=True, slots=True)
class AttestationDocument:
    """A platform's evidence plus everything that was bound into its report_data."""

    platform: str
    key_configs: bytes
    evidence: bytes
    nonce: bytes = b""
    tls_key_hash: bytes | None = None
    collateral: Mapping[str, bytes] = field(default_factory=dict)
    info: Mapping[str, str] = field(default_factory=dict)
    #: Set when ``nonce`` is a batch root: the proof that the client's nonce is in the batch.
    nonce_proof: NonceProof | None = None
    #: The GPUs' evidence, bound into report_data (None: the enclave claims no GPU).
    gpu: GpuAttestation | None = None

    @property
    def version(self) -> str:
        """The format version this document is serialized as."""
        return DOCUMENT_FORMAT if self.nonce_proof is None else BATCH_DOCUMENT_FORMAT

    @property
    def keys(self) -> tuple[KeyConfig, ...]:
        """The decoded key configurations."""
        return decode_key_configs(self.key_configs)

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """Fingerprints of the bound keys."""
        return tuple(k.fingerprint for k in self.keys)

    def expected_report_data(self) -> bytes:
        """What report_data must be if the evidence really binds these fields (and GPUs)."""
        digest = None if self.gpu is None else self.gpu.digest()
        return report_data(self.key_configs, self.nonce, self.tls_key_hash, digest)

    def cpu_binding(self) -> bytes:
        """The binding of keys, nonce and TLS key hash alone: what the GPU nonce derives from."""
        return report_data(self.key_configs, self.nonce, self.tls_key_hash)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        body: dict[str, Any] = {
            "format": self.version,
            "platform": self.platform,
            "key_configs": _b64(self.key_configs),
            "nonce": self.nonce.hex(),
            "tls_key_hash": None if self.tls_key_hash is None else self.tls_key_hash.hex(),
            "evidence": _b64(self.evidence),
            "collateral": {name: _b64(value) for name, value in sorted(self.collateral.items())},
            "info": dict(self.info),
        }
        if self.nonce_proof is not None:
            body["nonce_proof"] = self.nonce_proof.to_dict()
        if self.gpu is not None:
            body["gpu"] = self.gpu.to_dict()
        return body

    def to_json(self) -> bytes:
        """Serialize to UTF-8 JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, body: object) -> AttestationDocument:
        """Validate and decode a parsed JSON object."""
        if not isinstance(body, dict):
            raise MalformedAttestationDocument("attestation document must be a JSON object")
        version = body.get("format")
        if version not in (DOCUMENT_FORMAT, BATCH_DOCUMENT_FORMAT):
            raise MalformedAttestationDocument(
                f"unsupported document format {version!r}; expected {DOCUMENT_FORMAT} or "
                f"{BATCH_DOCUMENT_FORMAT} (upgrade the sealgate client if newer)"
            )
        batched = version == BATCH_DOCUMENT_FORMAT
        if batched != ("nonce_proof" in body):
            raise MalformedAttestationDocument(
                f"a {BATCH_DOCUMENT_FORMAT} document, and only one, carries 'nonce_proof'"
            )
        platform = body.get("platform")
        if not isinstance(platform, str) or not platform:
            raise MalformedAttestationDocument("'platform' must be a non-empty string")
        tls = body.get("tls_key_hash")
        collateral = body.get("collateral", {})
        info = body.get("info", {})
        if not isinstance(collateral, dict) or not isinstance(info, dict):
            raise MalformedAttestationDocument("'collateral' and 'info' must be objects")
        if not all(isinstance(v, str) for v in info.values()):
            raise MalformedAttestationDocument("'info' values must be strings")
        document = cls(
            platform=platform,
            key_configs=_unb64(body.get("key_configs"), "key_configs"),
            evidence=_unb64(body.get("evidence"), "evidence"),
            nonce=_unhex(body.get("nonce", ""), "nonce"),
            tls_key_hash=None if tls is None else _unhex(tls, "tls_key_hash"),
            collateral={str(k): _unb64(v, f"collateral.{k}") for k, v in collateral.items()},
            info={str(k): v for k, v in info.items()},
            nonce_proof=NonceProof.from_dict(body["nonce_proof"]) if batched else None,
            gpu=GpuAttestation.from_dict(body["gpu"]) if body.get("gpu") is not None else None,
        )
        if (
            document.nonce_proof is not None
            and document.nonce_proof.bound_nonce() != document.nonce
        ):
            raise InvalidNonceProof("'nonce_proof' does not lead to the document's bound 'nonce'")
        if document.tls_key_hash is not None and len(document.tls_key_hash) != 32:
            raise MalformedAttestationDocument("'tls_key_hash' must be 32 bytes")
        document.keys  # noqa: B018 - validate the key list once, at the edge
        return document

    @classmethod
    def from_json(cls, data: bytes | str) -> AttestationDocument:
        """Parse UTF-8 JSON."""
        if len(data) > MAX_DOCUMENT_BYTES:
            raise MalformedAttestationDocument("attestation document is too large")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise MalformedAttestationDocument("attestation document is not JSON") from None
        return cls.from_dict(body)
