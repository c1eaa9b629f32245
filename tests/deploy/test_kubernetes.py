"""The Kubernetes manifests validate against the Kubernetes API schemas (offline)."""

from __future__ import annotations

from pathlib import Path

import click
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
    env = {e["name"]: e["value"] for e in gateway["env"]}
    assert (
        env["SEALGATE_GATEWAY_ENCLAVES_DNS"] == "sealgate-enclaves.sealgate.svc.cluster.local:8080"
    )
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    listed = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(listed)


def test_one_deployment_per_model_behind_the_same_gateway():
    docs = [d for _, d in _resources()]
    enclaves = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("sealgate-enclave-")
    ]
    assert len(enclaves) == 2
    selector = next(d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP"))[
        "spec"
    ]["selector"]
    models, images = set(), set()
    for deployment in enclaves:
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"] == labels  # selectors do not overlap
        assert selector.items() <= labels.items()  # the one headless service finds them all
        containers = {c["name"]: c for c in spec["template"]["spec"]["containers"]}
        env = {e["name"]: e["value"] for e in containers["enclave"]["env"]}
        claimed = env["SEALGATE_ENCLAVE_MODELS"].split(",")
        served = [
            a.split("=", 1)[1]
            for a in containers["engine"]["args"]
            if a.startswith("--served-model-name=")
        ]
        assert (
            len(claimed) == 1 and claimed == served
        )  # the measured claim is what the engine serves
        assert labels["sealgate.dev/model"] == claimed[0].replace(".", "-")
        models.add(claimed[0])
        images.add(containers["enclave"]["image"])
    assert len(models) == 2 and len(images) == 2  # one release (and measurement) per model
    labelled = [
        d
        for d in docs
        if d["kind"] == "Deployment" and "sealgate.dev/model" in d["metadata"]["labels"]
    ]
    assert len(labelled) == 2


def _variables(command: click.Command) -> set[str]:
    """The environment variables ``command`` reads: explicit ones and its auto prefix's."""
    prefix = command.context_settings.get("auto_envvar_prefix")
    names: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            if param.envvar:
                names.add(param.envvar if isinstance(param.envvar, str) else param.envvar[0])
            elif prefix and param.name:
                names.add(f"{prefix}_{param.name.upper()}")
    return names


@pytest.mark.parametrize("container", ["enclave", "gateway"])
def test_every_variable_in_the_manifests_is_a_setting_with_a_valid_value(container, monkeypatch):
    """Manifests configure the servers by SEALGATE_* variables: a misspelt name would be
    silently ignored, so each must be one the command reads, and the command must parse
    every value (durations, lists, numbers) without starting."""
    from sealgate.enclave.cli import enclave
    from sealgate.gateway.cli import gateway

    command = {"enclave": enclave, "gateway": gateway}[container]
    known = _variables(command)
    found = 0
    for _, doc in _resources():
        if doc["kind"] != "Deployment":
            continue
        for spec in doc["spec"]["template"]["spec"]["containers"]:
            if spec["name"] != container:
                continue
            assert spec["args"] == [container]  # settings come from the environment only
            for variable in spec["env"]:
                assert variable["name"] in known, f"{variable['name']} is not a setting"
                monkeypatch.setenv(variable["name"], variable["value"])
            with command.make_context(container, []) as ctx:  # parses, does not run
                assert ctx.params
            for variable in spec["env"]:
                monkeypatch.delenv(variable["name"])
            found += 1
    assert found >= 1


def test_the_validator_does_catch_mistakes():
    _, gateway = next((n, d) for n, d in _resources() if d["kind"] == "Deployment")
    broken = {**gateway, "spec": {**gateway["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
