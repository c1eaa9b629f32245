"""A minimal DER reader for the vendor extensions ``cryptography`` leaves undecoded.

Only what AMD's VCEK, Intel's PCK, NVIDIA's DICE and Sigstore's Fulcio extensions use:
tag-length-value with definite lengths, SEQUENCE nesting, OBJECT IDENTIFIER, INTEGER,
OCTET STRING, ENUMERATED, strings. Parsing only; no cryptography here. It is the one DER
reader of the client (the attestation verifiers and the release verifier share it).
"""

from __future__ import annotations

__all__ = [
    "BIT_STRING",
    "INTEGER",
    "OBJECT_IDENTIFIER",
    "OCTET_STRING",
    "UTF8_STRING",
    "IA5_STRING",
    "SEQUENCE",
    "DerError",
    "read_tlv",
    "children",
    "decode_oid",
    "decode_int",
    "oid_map",
    "certificate_signature_algorithms",
]


# Universal tags (X.680 §8.4), as they appear in the first byte of an element.
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
UTF8_STRING = 0x0C
IA5_STRING = 0x16
SEQUENCE = 0x30


class DerError(ValueError):
    """The bytes are not the DER this reader expects."""


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """``(tag, value, next offset)`` of the element at ``offset``."""
    if offset + 2 > len(data):
        raise DerError("truncated DER element")
    tag = data[offset]
    length = data[offset + 1]
    pos = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise DerError("DER element runs past its container")
    return tag, data[pos : pos + length], pos + length


def children(data: bytes) -> list[tuple[int, bytes]]:
    """The elements inside a constructed value."""
    out = []
    offset = 0
    while offset < len(data):
        tag, value, offset = read_tlv(data, offset)
        out.append((tag, value))
    return out


def decode_oid(value: bytes) -> str:
    """Dotted string of an OBJECT IDENTIFIER's content bytes."""
    if not value:
        raise DerError("empty OID")
    first = value[0]
    arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    current = 0
    for byte in value[1:]:
        current = (current << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(current)
            current = 0
    return ".".join(str(a) for a in arcs)


def decode_int(value: bytes, *, signed: bool = False) -> int:
    """An INTEGER's content bytes (X.690 §8.3: two's complement when ``signed``)."""
    return int.from_bytes(value, "big", signed=signed)


def oid_map(sequence: bytes) -> dict[str, tuple[int, bytes]]:
    """Flatten ``SEQUENCE OF SEQUENCE { OID, value }`` (recursing into SEQUENCE values)."""
    found: dict[str, tuple[int, bytes]] = {}
    for tag, item in children(sequence):
        if tag != SEQUENCE:
            continue
        parts = children(item)
        if len(parts) < 2 or parts[0][0] != OBJECT_IDENTIFIER:
            continue
        oid = decode_oid(parts[0][1])
        found[oid] = parts[1]
        if parts[1][0] == SEQUENCE:
            found.update(oid_map(parts[1][1]))
    return found


def certificate_signature_algorithms(der: bytes) -> tuple[bytes, bytes]:
    """``(tbsCertificate.signature, signatureAlgorithm)`` of a DER certificate, each as DER.

    RFC 5280 §4.1.1.2: the outer ``signatureAlgorithm`` MUST equal the ``signature`` field
    inside tbsCertificate, which the signature covers; ``cryptography`` reads only the outer one.
    Raises :class:`DerError` unless the certificate is exactly tbsCertificate, signatureAlgorithm
    and an octet-aligned signatureValue.
    """
    tag, certificate, end = read_tlv(der)
    if tag != SEQUENCE or end != len(der):
        raise DerError("not a single DER certificate SEQUENCE")
    tag, tbs, offset = read_tlv(certificate)
    if tag != SEQUENCE:
        raise DerError("tbsCertificate is not a SEQUENCE")
    tag, _, after = read_tlv(certificate, offset)
    if tag != SEQUENCE:
        raise DerError("signatureAlgorithm is not a SEQUENCE")
    outer = certificate[offset:after]
    tag, signature, end = read_tlv(certificate, after)
    # The signature is octets (X.690 §8.6.2.2: the first content octet counts unused bits).
    if tag != BIT_STRING or not signature or signature[0] != 0 or end != len(certificate):
        raise DerError("signatureValue is not an octet-aligned BIT STRING ending the certificate")
    position = 0
    tag, _, following = read_tlv(tbs, position)
    if tag == 0xA0:  # [0] EXPLICIT version
        position = following
        tag, _, following = read_tlv(tbs, position)
    if tag != INTEGER:
        raise DerError("tbsCertificate has no serialNumber INTEGER")
    position = following
    tag, _, following = read_tlv(tbs, position)
    if tag != SEQUENCE:
        raise DerError("tbsCertificate.signature is not a SEQUENCE")
    return tbs[position:following], outer
