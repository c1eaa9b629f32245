"""NVIDIA GPU verification over real vectors (../shared/vectors/nvidia-gpu, see its README)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sealgate.client.errors import (
    CertificateChainError,
    EvidenceFormatError,
    EvidenceSignatureError,
    MeasurementMismatch,
    PlatformPolicyError,
    ReferenceValueError,
    StaleEvidence,
    VerificationError,
)
from sealgate.client.policy import GpuPolicy
from sealgate.client.verification import Verification
from sealgate.client.verify.nvidia import GpuEvidence, GpuReport, verify_gpu
from sealgate.client.verify.nvidia.spdm import REQUEST_SIZE, SIGNATURE_SIZE

#: Inside the 2023 RIM signing certificates' validity (they expired in mid 2025).
AT_2024 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp()
#: Inside the validity of the attestation-sdk's 2025 RIMs.
AT_2026 = dt.datetime(2026, 1, 15, tzinfo=dt.UTC).timestamp()
NONCE_2023 = "4cff7f53"


@pytest.fixture
def gpu(vectors: Path) -> Path:
    return vectors / "nvidia-gpu"


def _report(path: Path) -> bytes:
    return bytes.fromhex("".join(path.read_text().split()))


def _verify(
    gpu: Path,
    report: str,
    chain: str,
    rims: list[str],
    policy: GpuPolicy | None = None,
    *,
    at: float = AT_2024,
    nonce: bytes | None = None,
) -> Verification:
    record = Verification("gpu test", "nvidia-gpu")
    evidence = GpuEvidence(_report(gpu / report), (gpu / chain).read_bytes())
    verify_gpu(
        evidence,
        [(gpu / r).read_bytes() for r in rims],
        policy or GpuPolicy(),
        record,
        at,
        expected_nonce=nonce,
    )
    return record


E2023 = ("evidence_2023/attestationReport.txt", "evidence_2023/gpuAkCertChain.txt")
RIMS_2023 = [
    "rims/Driver_RIM_test_no_gpu.swidtag",
    "rims/1010_0200_882_96005E0001_test_no_gpu.swidtag",
]
SDK_535 = (
    "attestation-sdk/sample_attestation_data_gpu_hopperAttestationReport.txt",
    "attestation-sdk/sample_attestation_data_gpu_hopperCertChain.txt",
)


def test_hopper_2023_end_to_end_all_33_measurements(gpu: Path) -> None:
    nonce = _report(gpu / E2023[0])[4:36]
    assert nonce.hex().startswith(NONCE_2023)
    record = _verify(gpu, *E2023, RIMS_2023, nonce=nonce)
    assert record.ok
    steps = {s.name: s for s in record.steps}
    assert "all 33 active golden measurements match" in steps["gpu measurements"].detail
    assert "545.00" in steps["gpu driver rim"].detail
    assert "96.00.5E.00.01" in steps["gpu vbios rim"].detail
    # The VBIOS RIM's file name in nvtrust is this id (1010_0200_882_96005E0001_*.swidtag).
    assert "NV_GPU_VBIOS_1010_0200_882_96005E0001" in steps["gpu opaque data"].detail
    assert "NV_GPU_DRIVER_GH100_545.00" in steps["gpu opaque data"].detail


def test_vbios_only_positive_535(gpu: Path) -> None:
    record = _verify(
        gpu,
        *SDK_535,
        ["rims/1010_0200_882_96005E0001_PROD.swidtag"],
        GpuPolicy(require_driver_rim=False),
    )
    assert record.ok
    steps = {s.name: s for s in record.steps}
    assert "all 12 active" in steps["gpu measurements"].detail
    assert "not required" in steps["gpu driver rim"].detail


def test_vbios_only_refused_when_driver_rim_required(gpu: Path) -> None:
    with pytest.raises(ReferenceValueError) as info:
        _verify(gpu, *SDK_535, ["rims/1010_0200_882_96005E0001_PROD.swidtag"])
    assert info.value.step == "gpu driver rim"


def test_parser_matches_nvidias_parse(gpu: Path) -> None:
    sdk = gpu / "attestation-sdk"
    report = GpuReport.from_hex((sdk / "hopperAttestationReport.txt").read_text())
    expected = json.loads((sdk / "spdm_parsed_output.json").read_text())
    request = json.loads((sdk / "spdm_req_parsed_output.json").read_text())
    assert report.request_nonce.hex() == request["Nonce"][2:]
    assert report.responder_nonce.hex() == expected["Nonce"][2:]
    assert report.signature.hex() == expected["Signature"][2:]
    blocks = expected["MeasurementRecord"]["MeasurementBlocks"]
    assert len(report.blocks) == expected["NumberOfBlocks"] == len(blocks)
    for block in report.blocks:
        assert blocks[str(block.index)]["DMTFSpecMeasurementValue"][2:] == block.value.hex()
    for name, value in expected["OpaqueData"]["OpaqueDataField"].items():
        field = report.field(name.removeprefix("OPAQUE_FIELD_ID_"))
        assert field is not None, name
        if isinstance(value, str):
            assert field.hex() == value[2:], name
        else:  # MSRSCNT: a list of 32-bit little-endian counters
            counters = [int.from_bytes(field[i : i + 4], "little") for i in range(0, len(field), 4)]
            assert counters == value
    assert report.driver_version == "580.159.03"
    assert report.vbios_version == "96.00.74.00.20"


def test_current_nvtrust_sample_has_no_rim(gpu: Path) -> None:
    with pytest.raises(ReferenceValueError) as info:
        _verify(
            gpu,
            "evidence/hopperAttestationReport.txt",
            "evidence/hopperCertChain.txt",
            [*RIMS_2023, "rims/1010_0200_882_96005E0001_PROD.swidtag"],
        )
    assert info.value.step == "gpu driver rim"
    assert "550.90.07" in str(info.value)
    passed = [s.name for s in info.value.verification.steps if s.ok]
    assert "gpu report signature" in passed and "gpu fwid" in passed


def test_hopper_sample_directory_verifies_up_to_rims(vectors: Path) -> None:
    sample = vectors / "nvidia-hopper-sample"
    record = Verification("gpu test", "nvidia-gpu")
    with pytest.raises(ReferenceValueError):
        verify_gpu(
            GpuEvidence(
                _report(sample / "hopperAttestationReport.txt"),
                (sample / "hopperCertChain.txt").read_bytes(),
            ),
            [],
            GpuPolicy(),
            record,
            AT_2024,
            expected_nonce=bytes.fromhex(
                "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
            ),
        )
    assert {"gpu nonce", "gpu report signature", "gpu fwid"} <= {
        s.name for s in record.steps if s.ok
    }


def test_blackwell_parses_and_signature_verifies(gpu: Path) -> None:
    """What else it needs: GB100 RIMs for driver 575.32 and VBIOS 97.00.88.00.0F (not stored)."""
    with pytest.raises(ReferenceValueError) as info:
        _verify(
            gpu,
            "attestation-sdk/sample_attestation_data_gpu_blackwellAttestationReport.txt",
            "attestation-sdk/sample_attestation_data_gpu_blackwellCertChain.txt",
            RIMS_2023,
        )
    steps = {s.name: s for s in info.value.verification.steps}
    assert steps["gpu report signature"].ok and steps["gpu fwid"].ok
    assert steps["gpu architecture"].detail == "BLACKWELL GPU"
    assert info.value.step == "gpu driver rim" and "575.32" in str(info.value)


#: Inside the 570.124.03 RIM leaf's single day of validity.
AT_2025_01_01 = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("rim", "at", "step", "fragment"),
    [
        ("incorrect_signature_driver_rim.xml", AT_2026, "signature", "InvalidSignature"),
        ("incorrect_cert_chain_driver_rim.xml", AT_2026, "chain", "not signed by"),
        (
            "sample_rims_NV_GPU_DRIVER_GH100_535.86.09_measurement_mismatch.xml",
            AT_2026,
            "signature",
            "InvalidDigest",  # the tampered golden value breaks the reference digest
        ),
        ("sample_rims_NV_GPU_DRIVER_GH100_570.124.03_expired.xml", AT_2026, "validity", "expired"),
        (
            "sample_rims_NV_GPU_DRIVER_GH100_570.124.03_expired.xml",
            AT_2025_01_01,
            "signature",
            "InvalidDigest",
        ),
    ],
)
def test_negative_rims_refused(gpu: Path, rim: str, at: float, step: str, fragment: str) -> None:
    data = (gpu / "attestation-sdk" / rim).read_bytes()
    version = data.split(b'colloquialVersion="', 1)[1].split(b'"', 1)[0].decode()
    product = data.split(b' product="', 1)[1].split(b'"', 1)[0].decode()
    from sealgate.client.verify.nvidia import gpu as gpu_module

    record = Verification("rim", "nvidia-gpu")
    when = dt.datetime.fromtimestamp(at, dt.UTC)
    kind = "vbios" if version.count(".") == 4 else "driver"
    with pytest.raises(ReferenceValueError) as info:
        gpu_module._select_rim(record, "gpu", kind, version, product, [data], when, True)
    assert info.value.step == f"gpu {kind} rim {step}"
    assert fragment in str(info.value)


def test_validly_signed_driver_rim_550_144(gpu: Path) -> None:
    from sealgate.client.verify.nvidia import gpu as gpu_module

    data = (gpu / "attestation-sdk" / "NV_GPU_DRIVER_GH100_550.144.03.xml").read_bytes()
    record = Verification("rim", "nvidia-gpu")
    when = dt.datetime.fromtimestamp(AT_2026, dt.UTC)
    rim = gpu_module._select_rim(record, "gpu", "driver", "550.144.03", "GH100", [data], when, True)
    assert rim is not None and record.ok


def test_expired_rim_leaf_refused_at_validity(gpu: Path) -> None:
    """The 2023 RIMs verify in 2024; in 2026 their L4 signer (valid to mid 2025) has expired."""
    with pytest.raises(ReferenceValueError) as info:
        _verify(gpu, *E2023, RIMS_2023, at=AT_2026)
    assert info.value.step == "gpu driver rim validity"


def test_vbios_measurement_mismatch_refused(gpu: Path) -> None:
    with pytest.raises(MeasurementMismatch) as info:
        _verify(
            gpu,
            *SDK_535,
            [
                "attestation-sdk/sample_rims_NV_GPU_VBIOS_1010_0200_882_96005E0001_measurement_mismatch.xml"
            ],
            GpuPolicy(require_driver_rim=False),
            at=AT_2026 - 86400 * 60,
        )
    assert info.value.step == "gpu measurements"
    assert "index 9" in str(info.value)


def test_swapped_chain_refused(gpu: Path) -> None:
    with pytest.raises(EvidenceSignatureError) as info:
        _verify(gpu, E2023[0], SDK_535[1], RIMS_2023)
    assert info.value.step == "gpu report signature"


def test_wrong_nonce_refused(gpu: Path) -> None:
    with pytest.raises(StaleEvidence) as info:
        _verify(gpu, *E2023, RIMS_2023, nonce=bytes(32))
    assert info.value.step == "gpu nonce"


def test_policy_minimums_and_architecture(gpu: Path) -> None:
    with pytest.raises(PlatformPolicyError) as info:
        _verify(gpu, *E2023, RIMS_2023, GpuPolicy(min_driver_version="550.90.07"))
    assert info.value.step == "gpu driver version"
    with pytest.raises(PlatformPolicyError) as info:
        _verify(gpu, *E2023, RIMS_2023, GpuPolicy(min_vbios_version="96.00.9F.00.01"))
    assert info.value.step == "gpu vbios version"
    with pytest.raises(PlatformPolicyError) as info:
        _verify(gpu, *E2023, RIMS_2023, GpuPolicy(architectures=frozenset({"BLACKWELL"})))
    assert info.value.step == "gpu architecture"


def test_ocsp_demanded_but_not_stapled(gpu: Path) -> None:
    with pytest.raises(CertificateChainError) as info:
        _verify(gpu, *E2023, RIMS_2023, GpuPolicy(require_ocsp=True))
    assert info.value.step == "gpu ocsp"


def test_chain_from_another_root_refused(gpu: Path) -> None:
    rim = (gpu / RIMS_2023[0]).read_text()
    rim_chain = "".join(
        "-----BEGIN CERTIFICATE-----\n"
        + block.split("</ds:X509Certificate>")[0]
        + "-----END CERTIFICATE-----\n"
        for block in rim.split("<ds:X509Certificate>")[1:]
    )
    record = Verification("gpu test", "nvidia-gpu")
    with pytest.raises(CertificateChainError) as info:
        verify_gpu(
            GpuEvidence(_report(gpu / E2023[0]), rim_chain.encode()),
            [],
            GpuPolicy(),
            record,
            AT_2024,
            expected_nonce=None,
        )
    assert info.value.step == "gpu certificate chain"


def test_every_bit_flip_of_the_signed_region_refused(gpu: Path) -> None:
    """All 8 x |request || response - signature| single-bit flips: none verifies."""
    raw = _report(gpu / E2023[0])
    chain = (gpu / E2023[1]).read_bytes()
    signed = len(raw) - SIGNATURE_SIZE
    refused: dict[str, int] = {}
    for bit in range(signed * 8):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        record = Verification("flip", "nvidia-gpu")
        with pytest.raises(VerificationError) as info:
            verify_gpu(
                GpuEvidence(bytes(flipped), chain),
                [],
                GpuPolicy(),
                record,
                AT_2024,
                expected_nonce=None,
            )
        assert type(info.value) is not VerificationError  # typed: a specific subclass
        refused[info.value.step] = refused.get(info.value.step, 0) + 1
    assert sum(refused.values()) == signed * 8
    # Each flip is refused by the parser or, at the latest, by the signature check.
    assert set(refused) <= {"gpu evidence format", "gpu report signature"}
    assert refused["gpu report signature"] > signed * 8 // 2
    assert signed * 8 > REQUEST_SIZE * 8


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_parser_refuses_garbage_as_typed_error(data: bytes) -> None:
    record = Verification("fuzz", "nvidia-gpu")
    with pytest.raises(EvidenceFormatError):
        verify_gpu(GpuEvidence(data, b""), [], GpuPolicy(), record, AT_2024, expected_nonce=None)


def test_without_the_gpu_extra_the_rim_step_names_it(gpu: Path) -> None:
    """signxml absent: imports still work, and the refusal says which extra to install."""
    import subprocess
    import sys

    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "signxml" or name.startswith("signxml."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import datetime as dt
from sealgate.client.errors import ReferenceValueError
from sealgate.client.policy import GpuPolicy
from sealgate.client.verification import Verification
from sealgate.client.verify.nvidia import GpuEvidence, verify_gpu
root = {str(gpu)!r}
report = bytes.fromhex(open(root + "/{E2023[0]}").read().strip())
chain = open(root + "/{E2023[1]}", "rb").read()
rims = [open(root + "/" + r, "rb").read() for r in {RIMS_2023!r}]
try:
    verify_gpu(GpuEvidence(report, chain), rims, GpuPolicy(), Verification("x"), {AT_2024},
               expected_nonce=None)
except ReferenceValueError as exc:
    print(exc.step, "|", exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gpu driver rim signature |")
    assert "sealgate[gpu]" in done.stdout


def test_an_index_active_in_both_rims_is_refused(gpu: Path) -> None:
    from sealgate.client.verify.nvidia import gpu as gpu_module

    rim, _ = gpu_module._verified_rim((gpu / RIMS_2023[1]).read_bytes())
    report = GpuReport.from_bytes(_report(gpu / E2023[0]))
    record = Verification("rims", "nvidia-gpu")
    with pytest.raises(ReferenceValueError) as info:
        gpu_module._match(record, "gpu", report, [("driver", rim), ("vbios", rim)])
    assert info.value.step == "gpu measurements"
    assert "active in both" in str(info.value)


def test_attestation_sdk_json_evidence_590(gpu: Path) -> None:
    """NVIDIA's JSON evidence form: base64 report and chain; signature, nonce and FWID hold."""
    import base64

    (item,) = json.loads((gpu / "attestation-sdk/evidence_hopper_590_12.json").read_text())
    report = base64.b64decode(item["evidence"])
    record = Verification("gpu test", "nvidia-gpu")
    with pytest.raises(ReferenceValueError) as info:
        verify_gpu(
            GpuEvidence(report, base64.b64decode(item["certificate"])),
            [],
            GpuPolicy(),
            record,
            AT_2026,
            expected_nonce=bytes.fromhex(item["nonce"]),
        )
    assert info.value.step == "gpu driver rim" and "590.12" in str(info.value)
    assert {"gpu report signature", "gpu nonce", "gpu fwid", "gpu architecture"} <= {
        s.name for s in record.steps if s.ok
    }


def test_shipped_roots_are_nvidias_and_pinned(vectors: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from sealgate.client.verify.nvidia import DEVICE_ROOT_FINGERPRINT, RIM_ROOT_FINGERPRINT
    from sealgate.client.verify.nvidia.gpu import device_root, rim_root

    for folder in ("nvidia-gpu", "nvidia-hopper-sample"):
        device = x509.load_pem_x509_certificate(
            (vectors / folder / "verifier_device_root.pem").read_bytes()
        )
        rim = x509.load_pem_x509_certificate(
            (vectors / folder / "verifier_RIM_root.pem").read_bytes()
        )
        assert device == device_root() and rim == rim_root()
    assert device_root().fingerprint(hashes.SHA256()).hex() == DEVICE_ROOT_FINGERPRINT
    assert rim_root().fingerprint(hashes.SHA256()).hex() == RIM_ROOT_FINGERPRINT


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([b"", b"<a>", b"<?xml version='1.0'?>"]))
def test_hostile_rims_are_typed_refusals(junk: bytes, prefix: bytes) -> None:
    from sealgate.client.verify.nvidia import gpu as gpu_module

    data = prefix + b' product="GH100" colloquialVersion="545.00" ' + junk
    record = Verification("rim", "nvidia-gpu")
    when = dt.datetime.fromtimestamp(AT_2024, dt.UTC)
    with pytest.raises(ReferenceValueError) as info:
        gpu_module._select_rim(record, "gpu", "driver", "545.00", "GH100", [data], when, True)
    assert info.value.step == "gpu driver rim chain"
