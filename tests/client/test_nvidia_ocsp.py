"""Stapled OCSP for GPU chains (RFC 6960), over real responses built and signed here.

No NVIDIA OCSP response is stored (see the vectors README), so the response logic is shown
on a chain made for the test, and the full verifier on the real chain with a response whose
signer NVIDIA never certified.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sealgate.client.errors import CertificateChainError
from sealgate.client.policy import GpuPolicy
from sealgate.client.verification import Verification
from sealgate.client.verify.nvidia import GpuEvidence, verify_gpu
from sealgate.client.verify.nvidia import gpu as gpu_module

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def _cert(name, key, issuer_name, issuer_key, *, ca, eku=None):
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


@pytest.fixture(scope="module")
def chain():
    """root -> ica -> device -> leaf, like NVIDIA's (whose leaf the GPU makes itself)."""
    root_key, ica_key, device_key, leaf_key = (
        ec.generate_private_key(ec.SECP384R1()) for _ in range(4)
    )
    root = _cert("root", root_key, "root", root_key, ca=True)
    ica = _cert("ica", ica_key, "root", root_key, ca=True)
    device = _cert("device", device_key, "ica", ica_key, ca=True)
    leaf = _cert("leaf", leaf_key, "device", device_key, ca=False)
    return {"certs": [leaf, device, ica, root], "keys": {"root": root_key, "ica": ica_key}}


def _forged(issuer_cert):
    """A response signed by a key the issuer never certified (with its own responder cert)."""
    key = ec.generate_private_key(ec.SECP384R1())
    return key, _cert("responder", key, "forger", key, ca=False,
                      eku=[ExtendedKeyUsageOID.OCSP_SIGNING])  # fmt: skip


def _response(cert, issuer, signer_key, *, status=ocsp.OCSPCertStatus.GOOD, extra=(), when=NOW,
              responder=None):  # fmt: skip
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert,
        issuer=issuer,
        algorithm=hashes.SHA384(),
        cert_status=status,
        this_update=when - dt.timedelta(hours=1),
        next_update=when + dt.timedelta(days=1),
        revocation_time=when - dt.timedelta(days=1)
        if status == ocsp.OCSPCertStatus.REVOKED
        else None,
        revocation_reason=None,
    )
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder or issuer)
    if extra:
        builder = builder.certificates(list(extra))
    return builder.sign(signer_key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)


def test_good_revoked_stale_and_forged(chain):
    _leaf, _device, ica, root = chain["certs"]
    keys = chain["keys"]
    status = gpu_module._ocsp_status
    assert status(_response(ica, root, keys["root"]), chain["certs"], NOW)[1] == "good"
    revoked = _response(ica, root, keys["root"], status=ocsp.OCSPCertStatus.REVOKED)
    assert status(revoked, chain["certs"], NOW)[1] == "revoked"
    stale = _response(ica, root, keys["root"], when=NOW - dt.timedelta(days=10))
    assert status(stale, chain["certs"], NOW)[1] == "response outside its validity"
    key, responder = _forged(root)
    forged = _response(ica, root, key, extra=[responder], responder=responder)
    assert status(forged, chain["certs"], NOW)[1] == "bad responder signature"


def test_delegated_responder_needs_the_ocsp_signing_eku(chain):
    _leaf, _device, ica, root = chain["certs"]
    keys = chain["keys"]
    responder_key = ec.generate_private_key(ec.SECP384R1())
    delegated = _cert("responder", responder_key, "root", keys["root"], ca=False,
                      eku=[ExtendedKeyUsageOID.OCSP_SIGNING])  # fmt: skip
    good = _response(ica, root, responder_key, extra=[delegated], responder=delegated)
    assert gpu_module._ocsp_status(good, chain["certs"], NOW)[1] == "good"
    no_eku = _cert("responder", responder_key, "root", keys["root"], ca=False)
    refused = _response(ica, root, responder_key, extra=[no_eku], responder=no_eku)
    assert gpu_module._ocsp_status(refused, chain["certs"], NOW)[1] == "bad responder signature"


def test_require_ocsp_needs_every_nvidia_certificate_covered(chain):
    _leaf, device, ica, root = chain["certs"]
    keys = chain["keys"]
    policy = GpuPolicy(require_ocsp=True)
    both = (_response(ica, root, keys["root"]), _response(device, ica, keys["ica"]))
    record = Verification("ocsp")
    gpu_module._check_ocsp(record, "gpu", GpuEvidence(b"", b"", both), chain["certs"], policy, NOW)
    assert record.ok and [s.name for s in record.steps] == ["gpu ocsp", "gpu ocsp coverage"]
    record = Verification("ocsp")
    with pytest.raises(CertificateChainError) as info:
        gpu_module._check_ocsp(record, "gpu", GpuEvidence(b"", b"", both[:1]), chain["certs"],
                               policy, NOW)  # fmt: skip
    assert info.value.step == "gpu ocsp coverage" and "CN=device" in str(info.value)


def test_real_chain_with_a_response_nvidia_did_not_sign_is_refused(vectors: Path):
    gpu = vectors / "nvidia-gpu"
    report = bytes.fromhex((gpu / "evidence_2023/attestationReport.txt").read_text().strip())
    pem = (gpu / "evidence_2023/gpuAkCertChain.txt").read_bytes()
    certs = x509.load_pem_x509_certificates(pem)
    key, responder = _forged(certs[2])
    stapled = _response(certs[1], certs[2], key, extra=[responder], responder=responder)
    record = Verification("gpu", "nvidia-gpu")
    rims = [
        (gpu / "rims/Driver_RIM_test_no_gpu.swidtag").read_bytes(),
        (gpu / "rims/1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes(),
    ]
    with pytest.raises(CertificateChainError) as info:
        verify_gpu(GpuEvidence(report, pem, (stapled,)), rims, GpuPolicy(), record,
                   NOW.timestamp(), expected_nonce=None)  # fmt: skip
    assert info.value.step == "gpu ocsp"
    assert "bad responder signature" in str(info.value)
