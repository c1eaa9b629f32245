"""``/.well-known/sealgate-fleet``: the key directory clients verify for themselves.

Per enclave: an id, its key fingerprints, the latest attestation document it
published (verbatim) and a load hint. The gateway is not trusted: a client
verifies every document and uses only keys bound in verified evidence; the load
hint can only change which verified enclave it picks. ``primary`` names the enclave
that answers ``/.well-known/hpke-keys`` for clients without a key id (EHBP).
"""

from __future__ import annotations

import json
import time
from typing import Any

from .fleet import Fleet

__all__ = ["fleet_document", "FLEET_FORMAT"]

FLEET_FORMAT = "sealgate-fleet/v1"


def claimed_models(attestation: Any) -> list[str]:
    """The models an attestation document's (unverified) ``info`` claims."""
    info = attestation.get("info") if isinstance(attestation, dict) else None
    models = info.get("models") if isinstance(info, dict) else None
    return sorted(m for m in models.split(",") if m) if isinstance(models, str) else []


def fleet_document(fleet: Fleet) -> bytes:
    """Serialize the current fleet."""
    enclaves: list[dict[str, Any]] = []
    for member in sorted(fleet.members.values(), key=lambda m: m.id):
        if member.attestation is None:
            continue
        attestation = json.loads(member.attestation)
        enclaves.append(
            {
                "id": member.id,
                "keys": list(member.keys),
                "healthy": member.healthy,
                "load": round(member.load, 4),
                "in_flight": member.in_flight,
                "attestation": attestation,
                # What the document publicly claims, for operators; clients verify it
                # themselves and the gateway never routes by it.
                "models": claimed_models(attestation),
            }
        )
    body = {
        "format": FLEET_FORMAT,
        "primary": fleet.primary_id,
        "version": fleet.version,
        "generated_at": int(time.time()),
        "enclaves": enclaves,
    }
    return json.dumps(body, separators=(",", ":")).encode()
