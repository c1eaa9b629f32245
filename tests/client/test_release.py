"""Releases on Sigstore's transparency log, verified offline — with networking disabled."""

from __future__ import annotations

import base64
import copy
import json
import socket

import pytest
from click.testing import CliRunner
from sealgate.client import Policy
from sealgate.client.cli import main
from sealgate.client.release import (
    SEALGATE_IMAGE,
    LocalBundles,
    ReleaseError,
    check_statement,
    load_release,
    sealgate_predicate,
    verify_release,
)
from sealgate.client.release.predicates import measurements_from_predicate
from sealgate.client.verify.sev_snp import SnpReport

from .certs import self_signed

REPO = "tinfoilsh/confidential-model-router"
FULCIO = "1.3.6.1.4.1.57264.1."


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def bundle(vectors):
    data = json.loads((vectors / "sev-snp-tinfoil-bundle" / "attestation-bundle.json").read_text())
    return data["sigstoreBundle"], data["digest"], data


def test_real_bundle_verifies_offline_and_matches_the_hardware_report(bundle):
    sigstore_bundle, digest, data = bundle
    release = verify_release(
        sigstore_bundle,
        repo=REPO,
        digest=digest,
        workflow=".github/workflows/build.yml",
        tag_pattern=r"refs/tags/v\d+\.\d+\.\d+",
    )
    assert release.ref == "refs/tags/v0.0.38" and release.log_index == 845420855
    assert release.identity.endswith("/.github/workflows/build.yml@refs/tags/v0.0.38")
    snp = next(m for m in release.measurements if m.platform == "sev-snp")
    import gzip

    report = SnpReport.from_bytes(
        gzip.decompress(base64.b64decode(data["enclaveAttestationReport"]["body"]))
    )
    assert (
        snp.registers["measurement"] == report.measurement.hex()
    )  # hardware report <-> transparency log


def test_policy_from_release_maps_both_platforms(bundle, vectors):
    policy = Policy.from_release(
        REPO, bundle=vectors / "sev-snp-tinfoil-bundle" / "attestation-bundle.json"
    )
    platforms = {m.platform: m for m in policy.measurements}
    assert set(platforms) == {"sev-snp", "tdx"} and set(platforms["tdx"].registers) == {
        "rtmr1",
        "rtmr2",
    }
    assert platforms["sev-snp"].source == f"release {REPO}@refs/tags/v0.0.38"
    assert policy.platforms == frozenset({"sev-snp", "tdx"})  # hardware only, as by default


def test_policy_from_a_local_directory_source(bundle, tmp_path):
    sigstore_bundle, digest, _ = bundle
    (tmp_path / f"{digest}.json").write_text(json.dumps(sigstore_bundle))
    policy = Policy.from_release(REPO, fetch=True, digest=digest, source=LocalBundles(tmp_path))
    assert len(policy.measurements) == 2
    with pytest.raises(ReleaseError) as excinfo:
        Policy.from_release(REPO, fetch=True, digest="00" * 32, source=LocalBundles(tmp_path))
    assert excinfo.value.check == "bundle source"


@pytest.mark.parametrize(
    ("kwargs", "check"),
    [
        ({"repo": "tinfoilsh/some-other-repo"}, "repository"),
        ({"workflow": ".github/workflows/release.yml"}, "workflow"),
        ({"tag_pattern": r"refs/tags/v1\..*"}, "tag"),
        ({"digest": "11" * 32}, "subject digest"),
    ],
)
def test_identity_and_digest_refusals(bundle, kwargs, check):
    sigstore_bundle, digest, _ = bundle
    args = {"repo": REPO, "digest": digest, **kwargs}
    with pytest.raises(ReleaseError) as excinfo:
        verify_release(sigstore_bundle, **args)
    assert excinfo.value.check == check


def test_wrong_issuer(bundle, monkeypatch):
    from sealgate.client.release import verify as release_verify

    sigstore_bundle, digest, _ = bundle
    monkeypatch.setattr(release_verify, "GITHUB_ISSUER", "https://accounts.google.com")
    with pytest.raises(ReleaseError) as excinfo:
        verify_release(sigstore_bundle, repo=REPO, digest=digest)
    assert excinfo.value.check == "issuer"


def _tampered(sigstore_bundle, field, mutate):
    tampered = copy.deepcopy(sigstore_bundle)
    envelope = tampered["dsseEnvelope"]
    if field == "payload":
        raw = bytearray(base64.b64decode(envelope["payload"]))
        mutate(raw)
        envelope["payload"] = base64.b64encode(bytes(raw)).decode()
    elif field == "signature":
        raw = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
        mutate(raw)
        envelope["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    else:
        envelope["payloadType"] = mutate
    return tampered


@pytest.mark.parametrize("field", ["payload", "signature"])
def test_tampered_bytes_are_refused_by_the_signature_check(bundle, field):
    sigstore_bundle, digest, _ = bundle

    def flip(raw):
        raw[len(raw) // 2] ^= 0x01

    with pytest.raises(ReleaseError) as excinfo:
        verify_release(_tampered(sigstore_bundle, field, flip), repo=REPO, digest=digest)
    assert excinfo.value.check == "signature"


def test_changed_payload_type_in_the_envelope_is_refused(bundle):
    sigstore_bundle, digest, _ = bundle
    with pytest.raises(ReleaseError) as excinfo:
        verify_release(
            _tampered(sigstore_bundle, "type", "application/json"), repo=REPO, digest=digest
        )
    assert excinfo.value.check == "signature"  # the type is signed too (DSSE PAE)


def _statement(bundle):
    sigstore_bundle, digest, _ = bundle
    return json.loads(base64.b64decode(sigstore_bundle["dsseEnvelope"]["payload"])), digest


def test_statement_with_extra_fields_is_refused(bundle):
    statement, digest = _statement(bundle)
    statement["extra"] = "surprise"
    with pytest.raises(ReleaseError) as excinfo:
        check_statement("application/vnd.in-toto+json", json.dumps(statement).encode(), digest, "t")
    assert excinfo.value.check == "statement fields"


def test_non_in_toto_payload_type_is_refused(bundle):
    statement, digest = _statement(bundle)
    with pytest.raises(ReleaseError) as excinfo:
        check_statement("text/plain", json.dumps(statement).encode(), digest, "t")
    assert excinfo.value.check == "payload type"
    statement["predicateType"] = "https://example.com/unknown"
    with pytest.raises(ReleaseError) as excinfo:
        check_statement("application/vnd.in-toto+json", json.dumps(statement).encode(), digest, "t")
    assert excinfo.value.check == "predicate"


def test_sealgate_predicate_round_trip(bundle):
    statement, digest = _statement(bundle)
    snp = statement["predicate"]["snp_measurement"]
    predicate = sealgate_predicate(
        {"sev-snp": {"measurement": snp}, "tdx": {"mrtd": "ab" * 48}},
        "0.1.0",
        "sha256:" + "cd" * 32,
    )
    statement.update(predicateType=SEALGATE_IMAGE, predicate=predicate)
    _, measurements = check_statement(
        "application/vnd.in-toto+json", json.dumps(statement).encode(), digest, "t"
    )
    assert {m.platform: dict(m.registers) for m in measurements} == {
        "sev-snp": {"measurement": snp},
        "tdx": {"mrtd": "ab" * 48},
    }


def test_cli_verify_release_and_measure(vectors, tmp_path):
    path = vectors / "sev-snp-tinfoil-bundle" / "attestation-bundle.json"
    result = CliRunner().invoke(
        main, ["verify-release", "--bundle", str(path), "--repo", REPO, "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (
        out["issuer"] == "https://token.actions.githubusercontent.com"
        and out["log_index"] == 845420855
    )
    table = CliRunner().invoke(main, ["verify-release", "--bundle", str(path), "--repo", REPO])
    assert table.exit_code == 0 and "VERIFIED" in table.output and "integrated time" in table.output
    refused = CliRunner().invoke(
        main, ["verify-release", "--bundle", str(path), "--repo", "a/b", "--json"]
    )
    assert refused.exit_code == 1 and json.loads(refused.output)["check"] == "repository"

    written = tmp_path / "predicate.json"
    made = CliRunner().invoke(
        main,
        [
            "measure",
            "--sev-snp",
            "ab" * 48,
            "--tdx",
            "rtmr1=" + "cd" * 48,
            "--engine-image-digest",
            "sha256:" + "ef" * 32,
            "-o",
            str(written),
        ],
    )
    assert made.exit_code == 0, made.output
    predicate = json.loads(written.read_text())
    assert predicate["measurements"] == {
        "sev-snp": {"measurement": "ab" * 48},
        "tdx": {"rtmr1": "cd" * 48},
    }
    bad = CliRunner().invoke(main, ["measure", "--sev-snp", "xyz"])
    assert bad.exit_code != 0


def test_load_release_requires_a_digest(bundle):
    sigstore_bundle, _, _ = bundle
    with pytest.raises(ReleaseError) as excinfo:
        load_release(REPO, bundle=sigstore_bundle)
    assert excinfo.value.check == "subject digest"


def test_policy_from_releases_tinfoil_is_one_model_per_repository(vectors):
    """A real Tinfoil release names no models: the mapping assigns the model to it."""
    path = vectors / "sev-snp-tinfoil-bundle" / "attestation-bundle.json"
    policy = Policy.from_releases({"llama-3.3-70b": {"repo": REPO, "bundle": path}})
    assert policy.measurements and all(
        m.models == frozenset({"llama-3.3-70b"}) for m in policy.measurements
    )
    assert "for llama-3.3-70b" in str(policy.measurements[0])
    # Two models mapped to the same release: the measurement is trusted for both.
    both = Policy.from_releases(
        {"a": {"repo": REPO, "bundle": path}, "b": {"repo": REPO, "bundle": path}}
    )
    assert {m.models for m in both.measurements} == {frozenset({"a", "b"})}
    # The single-model case stays as short as before and names no models.
    assert all(m.models is None for m in Policy.from_release(REPO, bundle=path).measurements)


def test_cli_measure_lists_the_models(tmp_path):
    out = tmp_path / "predicate.json"
    result = CliRunner().invoke(
        main, ["measure", "--sev-snp", "ab" * 48, "--model", "qwen3-32b", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    predicate = json.loads(out.read_text())
    assert predicate["models"] == ["qwen3-32b"]
    (expected,) = measurements_from_predicate(SEALGATE_IMAGE, predicate, "r")
    assert expected.models == frozenset({"qwen3-32b"})


def test_a_sealgate_release_is_trusted_only_for_models_it_lists():
    from sealgate.client.policy import trusted_for

    value = "cd" * 48
    predicate = sealgate_predicate({"sev-snp": {"measurement": value}}, "0.1.0", None, ["a", "b"])
    measurements = measurements_from_predicate(SEALGATE_IMAGE, predicate, "release org/x")
    (narrowed,) = trusted_for(measurements, ["a"], "org/x")
    assert narrowed.models == frozenset({"a"}) and narrowed.registers == {"measurement": value}
    with pytest.raises(ReleaseError) as caught:
        trusted_for(measurements, ["a", "c"], "org/x")
    assert caught.value.check == "models" and "lists a, b, not c" in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [b"\x0c\x05ab", b"\x0c\x02\xff\xfe", b"\x13\x02ab", b"\x0c\x02abcd", b"\x0c\x85\x00"],
    ids=["truncated", "not-utf8", "not-a-utf8string", "trailing-bytes", "bad-length"],
)
def test_a_malformed_fulcio_v2_extension_is_a_release_error(value):
    from sealgate.client.release.verify import _fulcio_ext

    cert = self_signed("fulcio-test", [(f"{FULCIO}8", value)])
    with pytest.raises(ReleaseError) as excinfo:
        _fulcio_ext(cert, 8)
    assert excinfo.value.check == "signing certificate"
    issuer = b"https://issuer.example/abcdef"
    good = self_signed("fulcio-test", [(f"{FULCIO}8", bytes([0x0C, len(issuer)]) + issuer)])
    assert _fulcio_ext(good, 8) == issuer.decode()
