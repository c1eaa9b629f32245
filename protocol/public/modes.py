"""EHBP v0.3, the body-only compatibility mode (Tinfoil's Encrypted HTTP Body Protocol).

The request body is sealed with HPKE base mode and the response body with AES-256-GCM
keys derived from an HPKE export, in frames of ``uint32 length || ciphertext``. Only
bodies are protected: method, path, headers and status cross the gateway in the clear,
there is no end-of-message marker (a stream cut at a frame boundary looks complete) and
no replay protection. The native mode (:mod:`~sealgate.protocol.sealing.ohttp` carrying
:mod:`~sealgate.protocol.sealing.bhttp`) has none of these limits; EHBP exists so that
Tinfoil's clients keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mode", "EHBP", "mode_of_headers"]


@dataclass(frozen=True, slots=True)
class Mode:
    """Labels and header names of the body encapsulation."""

    name: str
    request_info: bytes
    response_export_label: bytes
    encapsulated_key_header: str
    response_nonce_header: str

    def __str__(self) -> str:
        return self.name


EHBP = Mode(
    name="ehbp",
    request_info=b"ehbp request",
    response_export_label=b"ehbp response",
    encapsulated_key_header="Ehbp-Encapsulated-Key",
    response_nonce_header="Ehbp-Response-Nonce",
)


def mode_of_headers(header_names: set[str]) -> Mode | None:
    """EHBP if its encapsulated-key header is among ``header_names`` (lower-case), else None."""
    if EHBP.encapsulated_key_header.lower() in header_names:
        return EHBP
    return None
