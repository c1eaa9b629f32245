"""Verify a release: a Sigstore bundle (DSSE + in-toto statement) checked offline, then its predicate.

Checks, each named in a :class:`ReleaseError` when it fails:

1. ``issuer`` — the signing certificate's OIDC issuer is GitHub Actions;
2. ``repository`` — the workflow ran in the expected repository;
3. ``workflow`` — from the expected workflow file (if one is required);
4. ``tag`` — for a ref matching the tag pattern;
5. ``signature`` — sigstore-python verifies the certificate chain to the production
   Fulcio root shipped in its trusted root, the transparency-log inclusion and the
   DSSE signature, offline;
6. ``payload type`` — the DSSE payload is an in-toto statement;
7. ``statement fields`` — exactly ``_type``, ``subject``, ``predicateType``, ``predicate``;
8. ``subject digest`` — the subject's sha256 is the release digest;
9. ``predicate`` — a known predicate naming measurements.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ..der import UTF8_STRING, DerError, read_tlv
from ..errors import SealgateError
from ..measurement import ExpectedMeasurement
from .predicates import PredicateError, measurements_from_predicate

__all__ = ["Release", "ReleaseError", "verify_release", "check_statement", "GITHUB_ISSUER"]

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
IN_TOTO_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPES = {"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"}
STATEMENT_FIELDS = {"_type", "subject", "predicateType", "predicate"}
_FULCIO = "1.3.6.1.4.1.57264.1."


class ReleaseError(SealgateError):
    """A release did not verify; ``check`` names the failed check."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"release {check} check failed: {message}")
        self.check = check


@dataclass(frozen=True, slots=True)
class Release:
    """A verified release and the measurements it publishes."""

    repository: str
    issuer: str
    identity: str
    ref: str
    log_index: int
    integrated_time: dt.datetime
    subject_name: str
    subject_digest: str
    predicate_type: str
    predicate: dict[str, Any]
    measurements: tuple[ExpectedMeasurement, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "issuer": self.issuer,
            "identity": self.identity,
            "ref": self.ref,
            "log_index": self.log_index,
            "integrated_time": self.integrated_time.isoformat(),
            "subject": {"name": self.subject_name, "sha256": self.subject_digest},
            "predicate_type": self.predicate_type,
            "measurements": [
                {
                    "platform": m.platform,
                    **dict(m.registers),
                    **({} if m.models is None else {"models": sorted(m.models)}),
                }
                for m in self.measurements
            ],
        }


def _fulcio_ext(cert: x509.Certificate, number: int) -> str | None:
    """A Fulcio extension: v2 (a DER UTF8String) at ``number`` >= 8, raw v1 values below."""
    try:
        value = cert.extensions.get_extension_for_oid(
            x509.ObjectIdentifier(f"{_FULCIO}{number}")
        ).value
    except x509.ExtensionNotFound:
        return None
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    try:
        if number < 8:
            return raw.decode()
        tag, text, end = read_tlv(raw)
        if tag != UTF8_STRING:
            raise DerError(f"tag {tag:#04x} where a UTF8String belongs")
        if end != len(raw):
            raise DerError("bytes after the UTF8String")
        return text.decode()
    except (DerError, UnicodeDecodeError) as exc:
        raise ReleaseError(
            "signing certificate", f"Fulcio extension {number} is malformed ({exc})"
        ) from None


def _identity_checks(
    cert: x509.Certificate, repo: str, workflow: str | None, tag_pattern: str | None
) -> tuple[str, str, str]:
    issuer = _fulcio_ext(cert, 8) or _fulcio_ext(cert, 1) or ""
    if issuer != GITHUB_ISSUER:
        raise ReleaseError(
            "issuer", f"signed via {issuer or 'an unknown issuer'}, expected {GITHUB_ISSUER}"
        )
    repository = _fulcio_ext(cert, 5) or (_fulcio_ext(cert, 12) or "").removeprefix(
        "https://github.com/"
    )
    if repository.lower() != repo.lower():
        raise ReleaseError("repository", f"built in {repository or '?'}, expected {repo}")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    identity = uris[0] if uris else ""
    if workflow is not None:
        prefix = f"https://github.com/{repo}/{workflow.lstrip('/')}@"
        if not identity.lower().startswith(prefix.lower()):
            raise ReleaseError(
                "workflow", f"signed by {identity or '?'}, expected workflow {workflow}"
            )
    ref = _fulcio_ext(cert, 14) or _fulcio_ext(cert, 6) or ""
    if tag_pattern is not None and not re.fullmatch(tag_pattern, ref):
        raise ReleaseError("tag", f"ref {ref or '?'} does not match {tag_pattern!r}")
    return issuer, identity, ref


def check_statement(
    payload_type: str, payload: bytes, digest: str | None, source: str
) -> tuple[dict[str, Any], tuple[ExpectedMeasurement, ...]]:
    """Checks 6-9 on a verified DSSE payload; returns the statement and its measurements."""
    if payload_type != IN_TOTO_TYPE:
        raise ReleaseError(
            "payload type", f"DSSE payload type is {payload_type!r}, expected {IN_TOTO_TYPE}"
        )
    try:
        statement = json.loads(payload)
    except ValueError:
        raise ReleaseError("statement fields", "the statement is not JSON") from None
    if not isinstance(statement, dict) or set(statement) != STATEMENT_FIELDS:
        got = sorted(statement) if isinstance(statement, dict) else type(statement).__name__
        raise ReleaseError(
            "statement fields", f"expected exactly {sorted(STATEMENT_FIELDS)}, got {got}"
        )
    if statement["_type"] not in STATEMENT_TYPES:
        raise ReleaseError("statement fields", f"unknown statement type {statement['_type']!r}")
    subjects = statement["subject"]
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise ReleaseError("subject digest", "expected exactly one subject")
    subject_digest = str((subjects[0].get("digest") or {}).get("sha256", "")).lower()
    if digest is not None and subject_digest != digest.lower():
        raise ReleaseError(
            "subject digest", f"subject sha256 is {subject_digest}, expected {digest.lower()}"
        )
    try:
        measurements = measurements_from_predicate(
            statement["predicateType"], statement["predicate"], source
        )
    except PredicateError as exc:
        raise ReleaseError("predicate", str(exc)) from None
    return statement, measurements


def _log_entry(bundle_json: str) -> tuple[int, dt.datetime]:
    """The log index and integration time of a loaded bundle's one transparency-log entry.

    Read from ``Bundle.to_json()`` (the Sigstore bundle format's
    ``verificationMaterial.tlogEntries``, int64 fields as JSON strings): sigstore 4 has no
    public accessor for them and sigstore 3's ``LogEntry`` fields are gone in 4.
    """
    try:
        (entry,) = json.loads(bundle_json)["verificationMaterial"]["tlogEntries"]
        log_index = int(entry["logIndex"])
        integrated = int(entry.get("integratedTime") or 0)
    except (ValueError, KeyError, TypeError) as exc:
        raise ReleaseError("bundle format", f"unreadable transparency-log entry: {exc}") from None
    return log_index, dt.datetime.fromtimestamp(integrated, dt.UTC)


def verify_release(
    bundle_json: bytes | str | dict[str, Any],
    *,
    repo: str,
    digest: str | None,
    workflow: str | None = None,
    tag_pattern: str | None = r"refs/tags/.+",
) -> Release:
    """Verify a Sigstore bundle offline against the production trusted root shipped with sigstore."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier, policy

    raw = json.dumps(bundle_json) if isinstance(bundle_json, dict) else bundle_json
    try:
        bundle = Bundle.from_json(raw)
    except (SigstoreError, ValueError) as exc:
        raise ReleaseError("bundle format", f"not a Sigstore bundle: {exc}") from None
    cert = bundle.signing_certificate
    issuer, identity, ref = _identity_checks(cert, repo, workflow, tag_pattern)
    identity_policy = policy.AllOf(
        [policy.OIDCIssuer(GITHUB_ISSUER), policy.GitHubWorkflowRepository(repo)]
    )
    try:
        payload_type, payload = Verifier.production(offline=True).verify_dsse(
            bundle, identity_policy
        )
    except (SigstoreError, ValueError) as exc:
        raise ReleaseError("signature", f"Sigstore verification failed: {exc}") from None
    statement, measurements = check_statement(
        payload_type, payload, digest, f"release {repo}@{ref}"
    )
    log_index, integrated_time = _log_entry(bundle.to_json())
    subject = statement["subject"][0]
    return Release(
        repository=repo,
        issuer=issuer,
        identity=identity,
        ref=ref,
        log_index=log_index,
        integrated_time=integrated_time,
        subject_name=str(subject.get("name", "")),
        subject_digest=str(subject["digest"]["sha256"]).lower(),
        predicate_type=statement["predicateType"],
        predicate=statement["predicate"],
        measurements=measurements,
    )
