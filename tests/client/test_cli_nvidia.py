"""``sealgate verify-evidence --platform nvidia-gpu``, including offline in a network namespace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLI = "import sys; from sealgate.client.cli import main; sys.argv[0] = 'sealgate'; main()"


def _args(vectors: Path) -> list[str]:
    gpu = vectors / "nvidia-gpu"
    return [
        "verify-evidence",
        "--platform",
        "nvidia-gpu",
        "--report",
        str(gpu / "evidence_2023/attestationReport.txt"),
        "--chain",
        str(gpu / "evidence_2023/gpuAkCertChain.txt"),
        "--rim",
        str(gpu / "rims/Driver_RIM_test_no_gpu.swidtag"),
        "--rim",
        str(gpu / "rims/1010_0200_882_96005E0001_test_no_gpu.swidtag"),
        "--nonce",
        "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e",
        "--at",
        "2024-06-01T00:00:00Z",
        "--json",
    ]


def test_verify_evidence_nvidia_gpu_json(vectors: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLI, *_args(vectors)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["ok"] and body["values"]["matched_measurements"] == "33"
    assert body["values"]["driver_version"] == "545.00"


def test_verify_evidence_nvidia_gpu_refusal_names_step(vectors: Path) -> None:
    args = _args(vectors)
    args[args.index("--nonce") + 1] = "00" * 32
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    body = json.loads(done.stdout)
    assert not body["ok"]
    assert [s["name"] for s in body["steps"] if not s["ok"]] == ["gpu nonce"]


def test_verify_evidence_offline_in_network_namespace(vectors: Path) -> None:
    """No network at all (a fresh namespace has only a down loopback): it still verifies."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run([unshare, "-n", "true"], check=False, capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode()[:200]}")
    no_route = subprocess.run(
        [
            unshare,
            "-n",
            sys.executable,
            "-c",
            "import socket; s = socket.socket(); s.settimeout(2); s.connect(('1.1.1.1', 443))",
        ],
        check=False,
        capture_output=True,
        timeout=30,
    )
    assert no_route.returncode != 0  # really offline
    done = subprocess.run(
        [unshare, "-n", sys.executable, "-c", CLI, *_args(vectors)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"]
