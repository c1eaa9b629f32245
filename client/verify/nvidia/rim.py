"""NVIDIA reference integrity manifests (RIMs): SWID tags (ISO/IEC 19770-2) with XML-DSig.

A RIM lists golden measurements: ``Resource`` elements with an ``index`` (RIM index k is
SPDM measurement block k+1), ``active``, ``alternatives`` and attributes ``Hash0`` ..
``Hash{n-1}`` in the SHA-384 namespace. Its signing certificate chain (leaf first) is in
the signature's ``KeyInfo``. XML canonicalisation and the signature itself are left to
``signxml`` (lxml + cryptography); the chain is checked by the caller against the pinned
RIM root, then ``signxml`` verifies the signature with that leaf only, and the golden
values are read from what the signature covers (never from the document around it).
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509

__all__ = ["GoldenMeasurement", "Rim", "RimSignatureUnavailable", "rim_certificates", "verify_rim"]

_SWID = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
_SHA384 = "http://www.w3.org/2001/04/xmlenc#sha384"
_DSIG = "http://www.w3.org/2000/09/xmldsig#"
MAX_RIM_BYTES = 1024 * 1024
MAX_ALTERNATIVES = 16


class RimSignatureUnavailable(RuntimeError):
    """``signxml`` (the ``gpu`` extra) is not installed."""


@dataclass(frozen=True, slots=True)
class GoldenMeasurement:
    """One RIM ``Resource``: its index, whether it is active, and the accepted values."""

    index: int
    active: bool
    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Rim:
    """A signature-verified RIM: identity, version and golden measurements."""

    tag_id: str
    product: str
    version: str
    measurements: tuple[GoldenMeasurement, ...]

    def measurement(self, index: int) -> GoldenMeasurement | None:
        return next((m for m in self.measurements if m.index == index), None)


def _etree() -> Any:
    """lxml's etree, imported lazily (the ``gpu`` extra) and untyped."""
    return importlib.import_module("lxml.etree")


def _parser() -> Any:
    etree = _etree()

    # No DTDs, no entities, no network: a RIM is untrusted input until its signature holds.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def rim_certificates(data: bytes) -> list[x509.Certificate]:
    """The certificates in the RIM signature's ``KeyInfo`` (leaf first), unverified."""
    try:
        etree = _etree()
    except ImportError as exc:
        raise RimSignatureUnavailable(f"{exc}: install the GPU extra, sealgate[gpu]") from None
    if len(data) > MAX_RIM_BYTES:
        raise ValueError(f"a RIM is at most {MAX_RIM_BYTES} bytes")
    root = etree.fromstring(data, parser=_parser())
    found = root.findall(f"{{{_DSIG}}}Signature/{{{_DSIG}}}KeyInfo//{{{_DSIG}}}X509Certificate")
    if not found:
        raise ValueError("the RIM's signature carries no X509Certificate")
    return [
        x509.load_der_x509_certificate(base64.b64decode("".join((e.text or "").split())))
        for e in found
    ]


def verify_rim(data: bytes, signer: x509.Certificate, at: dt.datetime) -> Rim:
    """Verify the XML-DSig signature with ``signer`` (valid ``at``) and decode what it signs.

    Raises ``signxml.exceptions.InvalidSignature`` (or another exception) when it does not
    hold; :class:`RimSignatureUnavailable` when ``signxml`` is missing.
    """
    try:
        from signxml.algorithms import DigestAlgorithm, SignatureMethod
        from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier
    except ImportError as exc:
        raise RimSignatureUnavailable(f"{exc}: install the GPU extra, sealgate[gpu]") from None
    if len(data) > MAX_RIM_BYTES:
        raise ValueError(f"a RIM is at most {MAX_RIM_BYTES} bytes")
    config = SignatureConfiguration(
        require_x509=True,
        signature_methods=frozenset({SignatureMethod.ECDSA_SHA384}),
        digest_algorithms=frozenset({DigestAlgorithm.SHA384}),
        verification_time=at,
    )
    result = XMLVerifier().verify(data, x509_cert=signer, expect_config=config, parser=_parser())
    if not isinstance(result, VerifyResult):
        raise ValueError("the RIM carries more than one signature")
    signed = result.signed_xml
    if signed is None or signed.tag != f"{{{_SWID}}}SoftwareIdentity":
        raise ValueError("the signature does not cover a SWID SoftwareIdentity")
    return _decode(signed)


def _decode(root: Any) -> Rim:
    meta = root.find(f"{{{_SWID}}}Meta")
    payload = root.find(f"{{{_SWID}}}Payload")
    if meta is None or payload is None:
        raise ValueError("the RIM has no Meta or Payload")
    measurements: list[GoldenMeasurement] = []
    seen: set[int] = set()
    for resource in payload.findall(f"{{{_SWID}}}Resource"):
        if resource.get("type") != "Measurement":
            continue
        index = int(resource.get("index", ""))
        if index in seen or not 0 <= index < 255:
            raise ValueError(f"RIM index {index} is repeated or out of range")
        seen.add(index)
        active = resource.get("active", "").lower()
        if active not in ("true", "false"):
            raise ValueError(f"RIM index {index}: 'active' is {active!r}")
        count = int(resource.get("alternatives", ""))
        if not 1 <= count <= MAX_ALTERNATIVES:
            raise ValueError(f"RIM index {index}: {count} alternatives")
        values = []
        for k in range(count):
            value = resource.get(f"{{{_SHA384}}}Hash{k}")
            if value is None:
                raise ValueError(f"RIM index {index} lacks Hash{k}")
            values.append(bytes.fromhex(value))
        measurements.append(GoldenMeasurement(index, active == "true", tuple(values)))
    return Rim(
        tag_id=root.get("tagId", ""),
        product=meta.get("product", "") or root.get("name", ""),
        version=meta.get("colloquialVersion", ""),
        measurements=tuple(measurements),
    )
