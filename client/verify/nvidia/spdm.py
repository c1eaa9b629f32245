"""NVIDIA GPU evidence: an SPDM 1.1 GET_MEASUREMENTS request and its signed response.

The GPU driver returns ``request || response``. Layouts (DMTF DSP0274 1.1, §10.11):

* request (37 bytes): version 0x11, code 0xE0, param1 (bit 0: signature requested),
  param2 (0xFF: all measurements), 32-byte nonce, slot id.
* response: version, code 0x60, param1, param2, NumberOfBlocks (1), MeasurementRecordLength
  (3, little-endian), the measurement record, 32-byte responder nonce, OpaqueLength (2),
  opaque data, signature (96 bytes raw r||s for ECDSA P-384).

Each measurement block is index (1), MeasurementSpecification (1), size (2), then a DMTF
measurement: value type (1), value size (2), value. NVIDIA's opaque data is a list of
type (2) / length (2) / value fields naming the driver and VBIOS versions, the SKU and the
firmware id. Everything is validated once, here; the verifier reads the decoded fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "GpuReport",
    "MeasurementBlock",
    "OPAQUE_FIELDS",
    "REQUEST_SIZE",
    "SIGNATURE_SIZE",
]

REQUEST_SIZE = 37
NONCE_SIZE = 32
SIGNATURE_SIZE = 96  # ECDSA P-384 r||s
_SPDM_11 = 0x11
_GET_MEASUREMENTS = 0xE0
_MEASUREMENTS = 0x60

#: NVIDIA's opaque-data field ids (the names NVIDIA's own parsers print).
OPAQUE_FIELDS = {
    1: "CERT_ISSUER_NAME",
    2: "CERT_AUTHORITY_KEY_IDENTIFIER",
    3: "DRIVER_VERSION",
    4: "GPU_INFO",
    5: "SKU",
    6: "VBIOS_VERSION",
    7: "MANUFACTURER_ID",
    8: "TAMPER_DETECTION",
    9: "SMC",
    10: "VPR",
    11: "NVDEC0_STATUS",
    12: "MSRSCNT",
    13: "CPRINFO",
    14: "BOARD_ID",
    15: "CHIP_SKU",
    16: "CHIP_SKU_MOD",
    17: "PROJECT",
    18: "PROJECT_SKU",
    19: "PROJECT_SKU_MOD",
    20: "FWID",
    21: "PROTECTED_PCIE_STATUS",
    22: "SWITCH_PDI",
    23: "FLOORSWEPT_PORTS",
    24: "POSITION_ID",
    25: "LOCK_SWITCH_STATUS",
    32: "GPU_LINK_CONN",
    33: "SYS_ENABLE_STATUS",
    34: "OPAQUE_DATA_VERSION",
    35: "CHIP_INFO",
    36: "FEATURE_FLAG",
}


@dataclass(frozen=True, slots=True)
class MeasurementBlock:
    """One measurement block: its SPDM index (1-based) and the measured value."""

    index: int
    specification: int
    value_type: int
    value: bytes


def _text(raw: bytes) -> str:
    """A NUL-terminated ASCII field (versions, project names)."""
    text = raw.split(b"\0", 1)[0]
    if not text.isascii():
        raise ValueError("a text field of the opaque data is not ASCII")
    return text.decode("ascii")


@dataclass(frozen=True, slots=True)
class GpuReport:
    """A parsed ``request || response`` pair; ``signed`` is what the signature covers."""

    raw: bytes
    request: bytes
    request_nonce: bytes
    slot_id: int
    measurement_operation: int
    spdm_version: int
    blocks: tuple[MeasurementBlock, ...]
    responder_nonce: bytes
    opaque: dict[int, bytes]
    signature: bytes

    @property
    def signed(self) -> bytes:
        """Request || response without the signature (DSP0274 §10.11: L1 = the transcript)."""
        return self.raw[: -len(self.signature)]

    @classmethod
    def from_bytes(cls, data: bytes) -> GpuReport:
        if len(data) < REQUEST_SIZE + 8 + NONCE_SIZE + 2 + SIGNATURE_SIZE:
            raise ValueError(f"GPU evidence is too short ({len(data)} bytes)")
        request = data[:REQUEST_SIZE]
        version, code, attributes, operation = request[:4]
        if (version, code) != (_SPDM_11, _GET_MEASUREMENTS):
            raise ValueError(
                f"not an SPDM 1.1 GET_MEASUREMENTS request (version 0x{version:02x}, "
                f"code 0x{code:02x})"
            )
        if not attributes & 1:
            raise ValueError("the request did not ask for a signed response")
        if operation != 0xFF:
            raise ValueError(f"the request asked for measurement {operation}, not all (0xFF)")
        response = data[REQUEST_SIZE:]
        r_version, r_code = response[0], response[1]
        if (r_version, r_code) != (_SPDM_11, _MEASUREMENTS):
            raise ValueError(
                f"not an SPDM 1.1 MEASUREMENTS response (version 0x{r_version:02x}, "
                f"code 0x{r_code:02x})"
            )
        count = response[4]
        record_length = int.from_bytes(response[5:8], "little")
        offset = 8
        end = offset + record_length
        if end + NONCE_SIZE + 2 > len(response):
            raise ValueError("the measurement record runs past the end of the response")
        blocks = _blocks(response[offset:end], count)
        responder_nonce = response[end : end + NONCE_SIZE]
        (opaque_length,) = struct.unpack_from("<H", response, end + NONCE_SIZE)
        opaque_start = end + NONCE_SIZE + 2
        opaque_end = opaque_start + opaque_length
        if opaque_end + SIGNATURE_SIZE != len(response):
            raise ValueError(
                f"the response is {len(response)} bytes; its fields and a {SIGNATURE_SIZE}-byte "
                f"signature add up to {opaque_end + SIGNATURE_SIZE}"
            )
        return cls(
            raw=bytes(data),
            request=bytes(request),
            request_nonce=bytes(request[4 : 4 + NONCE_SIZE]),
            slot_id=request[4 + NONCE_SIZE],
            measurement_operation=operation,
            spdm_version=r_version,
            blocks=blocks,
            responder_nonce=bytes(responder_nonce),
            opaque=_opaque(response[opaque_start:opaque_end]),
            signature=bytes(response[opaque_end:]),
        )

    @classmethod
    def from_hex(cls, text: str | bytes) -> GpuReport:
        """NVIDIA's sample files: the same bytes as one hex string."""
        if isinstance(text, bytes):
            text = text.decode("ascii")
        return cls.from_bytes(bytes.fromhex("".join(text.split())))

    def field(self, name: str) -> bytes | None:
        """The opaque-data field ``name`` (e.g. ``DRIVER_VERSION``), if present."""
        for number, label in OPAQUE_FIELDS.items():
            if label == name:
                return self.opaque.get(number)
        return None

    @property
    def driver_version(self) -> str | None:
        raw = self.field("DRIVER_VERSION")
        return None if raw is None else _text(raw)

    @property
    def vbios_version(self) -> str | None:
        """``96.00.5E.00.01``: the first four bytes as a little-endian word, then byte 4."""
        raw = self.field("VBIOS_VERSION")
        if raw is None:
            return None
        if len(raw) < 5:
            raise ValueError("the VBIOS_VERSION field is shorter than 5 bytes")
        word = f"{int.from_bytes(raw[:4], 'little'):08X}"
        return ".".join([word[0:2], word[2:4], word[4:6], word[6:8], f"{raw[4]:02X}"])

    @property
    def fwid(self) -> bytes | None:
        return self.field("FWID")

    def text_field(self, name: str) -> str | None:
        raw = self.field(name)
        return None if raw is None else _text(raw)

    def block(self, index: int) -> MeasurementBlock | None:
        return next((b for b in self.blocks if b.index == index), None)


def _blocks(record: bytes, count: int) -> tuple[MeasurementBlock, ...]:
    blocks: list[MeasurementBlock] = []
    offset = 0
    seen: set[int] = set()
    while offset < len(record):
        if offset + 7 > len(record):
            raise ValueError("a measurement block header runs past the record")
        index, spec, size = struct.unpack_from("<BBH", record, offset)
        value_type, value_size = struct.unpack_from("<BH", record, offset + 4)
        if value_size + 3 != size:
            raise ValueError(f"measurement block {index}: sizes disagree ({size} vs {value_size})")
        value = record[offset + 7 : offset + 4 + size]
        if len(value) != value_size:
            raise ValueError(f"measurement block {index} runs past the record")
        if index in seen:
            raise ValueError(f"measurement block {index} appears twice")
        seen.add(index)
        blocks.append(MeasurementBlock(index, spec, value_type, bytes(value)))
        offset += 4 + size
    if len(blocks) != count:
        raise ValueError(f"NumberOfBlocks says {count}, the record holds {len(blocks)}")
    return tuple(blocks)


def _opaque(data: bytes) -> dict[int, bytes]:
    fields: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise ValueError("an opaque-data field header runs past the opaque data")
        kind, size = struct.unpack_from("<HH", data, offset)
        value = data[offset + 4 : offset + 4 + size]
        if len(value) != size:
            raise ValueError(f"opaque-data field {kind} runs past the opaque data")
        if kind in fields:
            raise ValueError(f"opaque-data field {kind} appears twice")
        fields[kind] = bytes(value)
        offset += 4 + size
    return fields
