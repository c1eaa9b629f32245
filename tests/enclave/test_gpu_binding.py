"""A software-attested enclave with file-based GPU evidence: the binding is checked end to end.

Captured NVIDIA evidence carries NVIDIA's nonce, not one derived from our document, so the
demo enclave is configured to bind the nonce the captured report carries (``pinned``),
which a client accepts only with ``GpuPolicy(allow_pinned_nonce=True)``. The derived-nonce
path is shown with a source that declares the derived nonce but serves a captured report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import httpx
import pytest
from sealgate.client import Policy, verify_document
from sealgate.client.errors import BindingError, PlatformPolicyError, StaleEvidence
from sealgate.client.policy import GpuPolicy
from sealgate.enclave import create_app
from sealgate.enclave.attesters import SoftwareAttester
from sealgate.enclave.attesters.gpu import FileGpuSource, read_report
from sealgate.enclave.engines import demo_engine
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.evidence.gpu import GpuAttestation, GpuDevice

from ..servers import ServerThread

AT_2024 = dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp()


@pytest.fixture
def gpu_files(vectors: Path) -> dict[str, Path]:
    gpu = vectors / "nvidia-gpu"
    return {
        "report": gpu / "evidence_2023/attestationReport.txt",
        "chain": gpu / "evidence_2023/gpuAkCertChain.txt",
        "other_report": gpu / "evidence/hopperAttestationReport.txt",
        "other_chain": gpu / "evidence/hopperCertChain.txt",
        "driver_rim": gpu / "rims/Driver_RIM_test_no_gpu.swidtag",
        "vbios_rim": gpu / "rims/1010_0200_882_96005E0001_test_no_gpu.swidtag",
    }


@pytest.fixture
def serve(software_root, demo_measurement):
    started: list[ServerThread] = []

    def start(source: object) -> ServerThread:
        built = create_app(
            SoftwareAttester(software_root, demo_measurement), demo_engine(), gpu_source=source
        )
        server = ServerThread(built.app).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _fetch(server: ServerThread, nonce: bytes) -> AttestationDocument:
    response = httpx.get(
        server.url + "/.well-known/sealgate-attestation", params={"nonce": nonce.hex()}, timeout=30
    )
    assert response.status_code == 200, response.text
    return AttestationDocument.from_json(response.content)


def _policy(software_root, demo_measurement, **gpu: object) -> Policy:
    return Policy.software(
        software_root.public_key().public_bytes_raw(), demo_measurement, gpu=GpuPolicy(**gpu)
    )


def _rims(files: dict[str, Path]) -> list[Path]:
    return [files["driver_rim"], files["vbios_rim"]]


def test_demo_enclave_with_captured_gpu_evidence_verifies(
    serve, gpu_files, software_root, demo_measurement
):
    source = FileGpuSource.from_files([gpu_files["report"]], [gpu_files["chain"]], _rims(gpu_files))
    assert source.nonce.hex().startswith("4cff7f53")  # the captured report's nonce, pinned
    server = serve(source)
    nonce = os.urandom(32)
    document = _fetch(server, nonce)
    assert document.gpu is not None and document.gpu.nonce_source == "pinned"
    policy = _policy(software_root, demo_measurement, count=1, allow_pinned_nonce=True)
    verified = verify_document(document, policy, nonce=nonce, now=AT_2024)
    steps = {s.name: s for s in verified.verification.steps}
    assert verified.verification.ok
    assert steps["report_data binding"].ok  # the CPU report covers the GPU section
    assert "all 33 active golden measurements" in steps["gpu0 measurements"].detail
    assert verified.verification.measurement["gpu0"].startswith("HOPPER driver 545.00")
    # Secure by default: a pinned (replayable) GPU nonce is refused without the opt-in.
    with pytest.raises(StaleEvidence) as info:
        verify_document(
            document, _policy(software_root, demo_measurement), nonce=nonce, now=AT_2024
        )
    assert info.value.step == "gpu nonce binding"


def test_gpu_report_from_another_boot_is_refused(serve, gpu_files, software_root, demo_measurement):
    """Enclave configured to bind the 2023 report's nonce; it serves a report of another boot."""
    pinned = read_report(gpu_files["report"])[4:36]
    source = FileGpuSource.from_files(
        [gpu_files["other_report"]], [gpu_files["other_chain"]], _rims(gpu_files), nonce=pinned
    )
    server = serve(source)
    nonce = os.urandom(32)
    policy = _policy(software_root, demo_measurement, allow_pinned_nonce=True)
    with pytest.raises(StaleEvidence) as info:
        verify_document(_fetch(server, nonce), policy, nonce=nonce, now=AT_2024)
    assert info.value.step == "gpu0 nonce"
    assert info.value.verification.failed_step.actual.startswith("931d8dd0")


def test_host_swapping_or_stripping_gpu_evidence_breaks_the_cpu_binding(
    serve, gpu_files, software_root, demo_measurement
):
    source = FileGpuSource.from_files([gpu_files["report"]], [gpu_files["chain"]], _rims(gpu_files))
    server = serve(source)
    nonce = os.urandom(32)
    document = _fetch(server, nonce)
    policy = _policy(software_root, demo_measurement, allow_pinned_nonce=True)
    other = GpuDevice(read_report(gpu_files["other_report"]), gpu_files["other_chain"].read_bytes())
    assert document.gpu is not None
    swapped = dataclasses.replace(
        document,
        gpu=GpuAttestation.of(
            other.report[4:36], [other], document.gpu.rims, nonce_source="pinned"
        ),
    )
    for tampered in (swapped, dataclasses.replace(document, gpu=None)):
        round_tripped = AttestationDocument.from_json(tampered.to_json())
        with pytest.raises(BindingError) as info:
            verify_document(round_tripped, policy, nonce=nonce, now=AT_2024)
        assert info.value.step == "report_data binding"


def test_derived_nonce_mode_refuses_a_report_over_another_nonce(
    serve, gpu_files, software_root, demo_measurement
):
    """A source that asks for the derived nonce but gets a captured report (another nonce)."""
    captured = FileGpuSource.from_files(
        [gpu_files["report"]], [gpu_files["chain"]], _rims(gpu_files)
    )

    class Replaying:
        def collect(self, nonce: bytes) -> GpuAttestation:
            return GpuAttestation.of(nonce, captured.devices, captured.rims)

        def describe(self) -> dict[str, str]:
            return {"gpu": "replaying"}

    server = serve(Replaying())
    nonce = os.urandom(32)
    document = _fetch(server, nonce)
    policy = _policy(software_root, demo_measurement, count=1)
    with pytest.raises(StaleEvidence) as info:
        verify_document(document, policy, nonce=nonce, now=AT_2024)
    steps = {s.name: s for s in info.value.verification.steps}
    assert steps["gpu nonce binding"].ok  # the document's GPU nonce is the derived one
    assert info.value.step == "gpu0 nonce"  # but the GPU signed another
    # A forged GPU nonce (not derived from this document) is refused at the binding step.
    assert document.gpu is not None
    forged = dataclasses.replace(document, gpu=dataclasses.replace(document.gpu, nonce=bytes(32)))
    with pytest.raises(BindingError) as info2:
        verify_document(forged, policy, nonce=nonce, now=AT_2024)
    assert info2.value.step == "report_data binding"


def test_policy_expecting_gpus_refuses_a_document_without(
    start_enclave, http, software_root, demo_measurement
):
    server, _ = start_enclave()
    nonce = os.urandom(32)
    document = _fetch(server, nonce)
    with pytest.raises(PlatformPolicyError) as info:
        verify_document(
            document, _policy(software_root, demo_measurement, count=8), nonce=nonce, now=AT_2024
        )
    assert info.value.step == "gpu count"


def test_gpu_document_round_trips(gpu_files):
    device = GpuDevice(read_report(gpu_files["report"]), gpu_files["chain"].read_bytes())
    gpu = GpuAttestation.of(device.report[4:36], [device], [b"<rim/>"], nonce_source="pinned")
    body = json.loads(json.dumps(gpu.to_dict()))
    assert GpuAttestation.from_dict(body) == gpu
    assert GpuAttestation.from_dict(body).digest() == gpu.digest()


def test_enclave_process_with_gpu_files_and_sealgate_verify_rows(
    gpu_files, software_root_file, enclave_process
):
    """``sealgate enclave --gpu files`` as a process; ``sealgate verify`` shows the GPU rows.

    Verified now (not as of 2024), the 2023 RIMs' signing chain has expired: the refusal
    names that step after every earlier GPU step passed.
    """
    import subprocess
    import sys

    key, key_file = software_root_file
    args = [
        "--port", "0", "--attester", "software", "--software-root-key", str(key_file),
        "--log-level", "warning", "--gpu", "files",
        "--gpu-report", str(gpu_files["report"]), "--gpu-chain", str(gpu_files["chain"]),
        "--gpu-rim", str(gpu_files["driver_rim"]), "--gpu-rim", str(gpu_files["vbios_rim"]),
    ]  # fmt: skip
    started = enclave_process(args, healthy=False)
    assert any(
        line.startswith("gpu: 1 captured GPU report(s), pinned nonce 4cff7f53")
        for line in started.stdout
    )
    root = key.public_key().public_bytes_raw().hex()
    cli = "import sys; from sealgate.client.cli import main; sys.argv[0] = 'sealgate'; main()"
    done = subprocess.run(
        [sys.executable, "-c", cli, "verify", started.url, "--software-root", root,
         "--allow-any-measurement", "--gpus", "1", "--gpu-allow-pinned-nonce", "--json"],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    body = json.loads(done.stdout)
    assert done.returncode == 1 and not body["ok"]
    steps = body["enclaves"][0]["steps"]
    names = [s["name"] for s in steps]
    assert "gpu nonce binding" in names and "gpu0 report signature" in names
    assert [s["name"] for s in steps if not s["ok"]] == ["gpu0 driver rim validity"]
    assert next(s for s in steps if s["name"] == "report_data binding")["ok"]


def test_the_same_gpu_twice_is_not_two_gpus(serve, gpu_files, software_root, demo_measurement):
    source = FileGpuSource.from_files(
        [gpu_files["report"]] * 2, [gpu_files["chain"]] * 2, _rims(gpu_files)
    )
    server = serve(source)
    nonce = os.urandom(32)
    policy = _policy(software_root, demo_measurement, count=2, allow_pinned_nonce=True)
    with pytest.raises(PlatformPolicyError) as info:
        verify_document(_fetch(server, nonce), policy, nonce=nonce, now=AT_2024)
    assert info.value.step == "gpus distinct"


def test_nvml_source_is_gracefully_absent_without_gpus():
    """No GPU here: building the NVML source is a clear AttesterError, importing it is fine."""
    from sealgate.enclave.attesters import AttesterError
    from sealgate.enclave.attesters.gpu import NvmlGpuSource

    with pytest.raises(AttesterError) as info:
        NvmlGpuSource()
    assert "nvidia-ml-py" in str(info.value) or "NVML" in str(info.value)


def test_a_gpu_that_refuses_attestation_is_a_problem_answer_not_a_crash(serve):
    from sealgate.enclave.attesters import AttesterError

    class Refusing:
        def collect(self, nonce: bytes) -> GpuAttestation:
            raise AttesterError("NVML refused GPU attestation: Timeout")

        def describe(self) -> dict[str, str]:
            return {"gpu": "refusing"}

    server = serve(Refusing())
    response = httpx.get(
        server.url + "/.well-known/sealgate-attestation",
        params={"nonce": os.urandom(32).hex()},
        timeout=30,
    )
    assert 500 < response.status_code < 600 and response.status_code != 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "GPU attestation" in response.json()["detail"]
