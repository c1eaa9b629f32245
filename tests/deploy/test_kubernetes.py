"""The Kubernetes manifests validate against the Kubernetes API schemas (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml (dev extra) is not installed")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (dev extra)"
)

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30"


def _resources():
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


def test_every_manifest_validates_strictly():
    resources = list(_resources())
    kinds = sorted({doc["kind"] for _, doc in resources})
    assert kinds == ["Deployment", "Namespace", "Service"]
    for name, document in resources:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_gateway_discovers_the_headless_enclave_service():
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in _resources()}
    headless = docs[("Service", "sealgate-enclaves")]
    assert headless["spec"]["clusterIP"] == "None"
    gateway = docs[("Deployment", "sealgate-gateway")]["spec"]["template"]["spec"]["containers"][0]
    assert "--enclaves-dns=sealgate-enclaves.sealgate.svc.cluster.local:8080" in gateway["args"]
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == ["enclaves.yaml", "gateway.yaml", "namespace.yaml"]


def test_the_validator_does_catch_mistakes():
    _, gateway = next((n, d) for n, d in _resources() if d["kind"] == "Deployment")
    broken = {**gateway, "spec": {**gateway["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
