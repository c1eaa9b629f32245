"""Every single-bit flip of real evidence is a typed refusal: never a crash, never a pass.

SEV-SNP: all 9,472 bits of the Genoa report and all 10,776 bits of its VCEK (DER), one flip
at a time: 20,248 inputs. (Issue 12's 2,532 inputs were one flip per byte of the same two
files, 1,184 + 1,347, plus the unmodified pair; this sweep is its superset.)

TDX: all bits of the PCK leaf and PCK CA certificates in the quote's chain (DER, re-encoded
as PEM). The root is compared in full with the pinned Intel SGX Root CA, so any change to it
is refused by that one equality check.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sealgate.client import SnpPolicy, TdxPolicy, Verification
from sealgate.client.errors import VerificationError
from sealgate.client.verify.sev_snp import verify_snp
from sealgate.client.verify.tdx import Collateral, TdxQuote, verify_tdx


def _flips(data: bytes):
    """``(bit index, data with that bit flipped)`` for every bit."""
    for index in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[index // 8] ^= 1 << (index % 8)
        yield index, bytes(flipped)


def _refusal(verify, *args) -> str:
    """The failed step's name; any other outcome (a pass, a non-sealgate exception) fails."""
    try:
        verify(*args)
    except VerificationError as exc:
        steps = exc.verification.steps
        assert type(exc) is not VerificationError, "refusals are typed (a specific subclass)"
        assert steps and not steps[-1].ok and exc.step == steps[-1].name
        return exc.step
    raise AssertionError("a flipped bit verified")


def test_every_bit_flip_of_the_genoa_report_and_vcek_is_a_typed_refusal(genoa):
    report, vcek, when = genoa
    policy = SnpPolicy()
    steps: collections.Counter[str] = collections.Counter()
    for _, flipped in _flips(report):
        steps[_refusal(verify_snp, flipped, vcek, policy, Verification("r"), when)] += 1
    for _, flipped in _flips(vcek):
        steps[_refusal(verify_snp, report, flipped, policy, Verification("v"), when)] += 1
    assert sum(steps.values()) == (len(report) + len(vcek)) * 8 == 20_248
    # Each region is caught where it should be: a flip in the signed report by its signature,
    # one in the VCEK by the ASK's signature or while parsing, reserved bytes as a format error.
    assert {"report signature", "report format", "vcek format", "vcek signed by ask"} <= set(steps)


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def test_every_bit_flip_of_the_tdx_pck_chain_is_a_typed_refusal(vectors):
    folder = vectors / "tdx-quote-v4"
    quote = (folder / "quote.bin").read_bytes()
    collateral = Collateral.from_directory(folder / "collateral", "90c06f000000")
    when = dt.datetime(2026, 1, 20, tzinfo=dt.UTC).timestamp()
    parsed = TdxQuote.from_bytes(quote)
    certs = x509.load_pem_x509_certificates(parsed.pck_chain_pem.rstrip(b"\x00"))
    ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
    qe = (
        parsed.qe_report
        + parsed.qe_report_signature
        + struct.pack("<H", len(parsed.qe_auth_data))
        + parsed.qe_auth_data
    )

    def with_chain(chain: list[bytes]) -> bytes:
        pem = b"".join(_pem(der) for der in chain)
        certification = qe + struct.pack("<HI", 5, len(pem)) + pem
        signature = (
            parsed.signature
            + parsed.attestation_key
            + struct.pack("<HI", 6, len(certification))
            + certification
        )
        return quote[:632] + struct.pack("<I", len(signature)) + signature

    policy = TdxPolicy()
    record = Verification("unmodified")
    verify_tdx(with_chain(ders), collateral, policy, record, when)
    assert record.ok  # the re-encoding itself changes nothing

    steps: collections.Counter[str] = collections.Counter()
    for position in (0, 1):  # the PCK, the PCK Platform CA
        for _, flipped in _flips(ders[position]):
            chain = [flipped if i == position else der for i, der in enumerate(ders)]
            tampered = with_chain(chain)
            steps[
                _refusal(verify_tdx, tampered, collateral, policy, Verification("pck"), when)
            ] += 1
    assert sum(steps.values()) == (len(ders[0]) + len(ders[1])) * 8
    assert {"quote format", "pck chain", "pck chain names"} <= set(steps)


@pytest.mark.parametrize("bit", [96, 4223, 4361])
def test_flips_that_used_to_crash_name_their_step(genoa, bit):
    """InvalidVersion, a non-ASCII IA5String, DuplicateExtension: refused while parsing the VCEK."""
    report, vcek, when = genoa
    flipped = bytearray(vcek)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert (
        _refusal(verify_snp, report, bytes(flipped), SnpPolicy(), Verification("v"), when)
        == "vcek format"
    )
