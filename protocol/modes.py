"""The two body-encapsulation modes: EHBP v0.3 and sealgate v1.

Both seal request bodies with HPKE base mode and responses with AES-256-GCM keys
derived from an HPKE export, in frames of ``uint32 length || ciphertext``. They
differ in labels and headers, and sealgate mode adds what a load-balanced fleet
needs: a routing key id header and an end-of-message marker in both directions
(the last frame is sealed with AAD ``"final"``), so that truncation is detected.
Distinct labels mean a message sealed in one mode never opens in the other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Mode", "EHBP", "SEALGATE", "mode_of_headers", "FINAL_AAD"]

FINAL_AAD = b"final"


@dataclass(frozen=True, slots=True)
class Mode:
    """Labels and header names of one encapsulation mode."""

    name: str
    request_info: bytes
    response_export_label: bytes
    encapsulated_key_header: str
    response_nonce_header: str
    key_id_header: str | None
    end_marker: bool

    def __str__(self) -> str:
        return self.name


EHBP = Mode(
    name="ehbp",
    request_info=b"ehbp request",
    response_export_label=b"ehbp response",
    encapsulated_key_header="Ehbp-Encapsulated-Key",
    response_nonce_header="Ehbp-Response-Nonce",
    key_id_header=None,
    end_marker=False,
)

SEALGATE = Mode(
    name="sealgate",
    request_info=b"sealgate request v1",
    response_export_label=b"sealgate response v1",
    encapsulated_key_header="Sealgate-Encapsulated-Key",
    response_nonce_header="Sealgate-Response-Nonce",
    key_id_header="Sealgate-Key-Id",
    end_marker=True,
)

MODES = (SEALGATE, EHBP)


def mode_of_headers(header_names: set[str]) -> Mode | None:
    """The mode whose encapsulated-key header is among ``header_names`` (lower-case)."""
    for mode in MODES:
        if mode.encapsulated_key_header.lower() in header_names:
            return mode
    return None
