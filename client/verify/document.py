"""Verify one attestation document against a policy.

Steps, each recorded in the :class:`Verification`: platform allowed; the platform's
evidence (signatures, certificate chains — by the platform verifier); report_data
equals the binding of the document's keys, nonce and TLS key hash (and GPU evidence);
each claimed NVIDIA GPU verifies and signed the derived GPU nonce; the measurement
matches the policy; freshness (the client's nonce, bound directly or through a nonce
batch's Merkle root, or the signed age); the keys are usable.
"""

from __future__ import annotations

import dataclasses
import hmac
import time

from sealgate.protocol.evidence.attestation import AttestationDocument, parse_time_nonce
from sealgate.protocol.public.errors import InvalidNonceProof, ProtocolError
from sealgate.protocol.public.keyconfig import KeyConfig

from ..errors import BindingError, MeasurementMismatch, PostQuantumUnavailable, StaleEvidence
from ..policy import ExpectedMeasurement, Policy
from ..verification import Verification
from .base import VERIFIERS

__all__ = ["verify_document", "VerifiedDocument"]


class VerifiedDocument:
    """A document that passed every step, with the keys it binds."""

    __slots__ = ("document", "keys", "verification")

    def __init__(
        self, document: AttestationDocument, keys: tuple[KeyConfig, ...], verification: Verification
    ) -> None:
        self.document = document
        self.keys = keys
        self.verification = verification


def verify_document(
    document: AttestationDocument,
    policy: Policy,
    *,
    subject: str = "enclave",
    nonce: bytes | None = None,
    now: float | None = None,
) -> VerifiedDocument:
    """Verify ``document``; raise :class:`VerificationError` naming the failed step.

    ``nonce`` is the fresh nonce this client sent, if any: the document must bind it.
    ``now`` is the verification time (defaults to the current time).
    """
    now = time.time() if now is None else now
    record = Verification(subject=subject, platform=document.platform, verified_at=now)
    record.check(
        "platform allowed",
        document.platform in policy.platforms,
        f"platform {document.platform!r} is {'' if document.platform in policy.platforms else 'not '}"
        "accepted by the policy",
        expected=", ".join(sorted(policy.platforms)),
        actual=document.platform,
    )
    verifier = VERIFIERS.get(document.platform)
    if verifier is None:
        raise record.fail(
            "platform verifier", f"no verifier is installed for {document.platform!r}"
        )
    evidence = verifier(document, policy, record, now)
    record.measurement = dict(evidence.registers)
    record.report_data = evidence.report_data.hex()

    expected = document.expected_report_data()
    record.check(
        "report_data binding",
        hmac.compare_digest(expected, evidence.report_data),
        "the signed report_data binds this document's keys, nonce and TLS key hash",
        expected=expected.hex(),
        actual=evidence.report_data.hex(),
        error=BindingError,
    )
    if document.gpu is not None or policy.gpu.count:
        from .nvidia.document import verify_document_gpus

        for i, gpu in enumerate(verify_document_gpus(document, policy, record, now)):
            record.measurement[f"gpu{i}"] = (
                f"{gpu.architecture} driver {gpu.driver_version} VBIOS {gpu.vbios_version}"
            )
    matched = _check_measurement(record, policy, document.platform, evidence.registers)
    _check_models(record, matched, evidence.models)
    _check_freshness(record, policy, document, nonce, evidence.issued_at, now)
    try:
        keys = document.keys
        for key in keys:
            key.require_supported()
    except ProtocolError as exc:
        raise record.fail("key configs", exc.message) from None
    record.key_fingerprints = tuple(k.fingerprint for k in keys)
    record.key_kems = tuple(k.kem_name for k in keys)
    listed = ", ".join(f"{k.fingerprint} ({k.kem_name})" for k in keys)
    record.passed("key configs", f"{len(keys)} usable key(s): {listed}")
    if policy.require_post_quantum:
        record.check(
            "post-quantum key",
            any(k.post_quantum for k in keys),
            "the enclave binds an MLKEM768-X25519 key (required by the policy)",
            failure="the enclave binds no MLKEM768-X25519 key, and the policy requires "
            "post-quantum keys (require_post_quantum=True)",
            expected="MLKEM768-X25519",
            actual=", ".join(sorted({k.kem_name for k in keys})),
            error=PostQuantumUnavailable,
        )
    return VerifiedDocument(document, keys, record)


def _check_models(
    record: Verification, matched: ExpectedMeasurement | None, signed: tuple[str, ...] | None
) -> None:
    """Which models this enclave is trusted with: its release's list, else its signed claim.

    A release that lists models wins; a claim (the software attester's measured engine
    configuration) can only narrow it, never add a model the release does not list.
    """
    trusted = None if matched is None else matched.models
    if trusted is not None:
        served = sorted(trusted if signed is None else trusted & set(signed))
        record.check(
            "models",
            bool(served),
            f"serves {', '.join(served)} (listed by {matched.source if matched else '?'})",
            failure="the enclave's signed model list and its release's share no model",
            expected=", ".join(sorted(trusted)),
            actual="(unsigned)" if signed is None else ", ".join(signed),
        )
        record.models = tuple(served)
    elif signed is not None:
        record.passed(
            "models",
            f"serves {', '.join(signed)} (signed claim of the measured engine configuration)",
            actual=", ".join(signed),
        )
        record.models = tuple(sorted(signed))
    else:
        record.passed("models", "neither the policy nor the evidence names models: any model")


def _check_measurement(
    record: Verification, policy: Policy, platform: str, registers: dict[str, str]
) -> ExpectedMeasurement | None:
    actual = ", ".join(f"{k}={v}" for k, v in sorted(registers.items()))
    if policy.allow_any_measurement:
        record.passed(
            "measurement",
            "any measurement accepted (allow_any_measurement: development only)",
            actual=actual,
        )
        return None
    expected = policy.expected_for(platform)
    if not expected:
        raise record.fail(
            "measurement",
            "the policy pins no measurement for this platform: pin one, or build the policy "
            "from a verified release (Policy.from_release)",
            expected="(none configured)",
            actual=actual,
            error=MeasurementMismatch,
        )
    matches = [m for m in expected if m.matches(platform, registers)]
    match = matches[0] if matches else None
    if len(matches) > 1:  # one image released for several models: trusted for each
        lists = [m.models for m in matches]
        union = None if None in lists else frozenset().union(*(m for m in lists if m))
        match = dataclasses.replace(matches[0], models=union)
    record.check(
        "measurement",
        match is not None,
        f"matches {match}" if match else "no expected measurement matches the evidence",
        expected=" | ".join(str(m) for m in expected),
        actual=actual,
        error=MeasurementMismatch,
    )
    return match


def _check_freshness(
    record: Verification,
    policy: Policy,
    document: AttestationDocument,
    nonce: bytes | None,
    issued_at: int | None,
    now: float,
) -> None:
    if nonce is not None:
        _check_nonce(record, document, nonce)
        return
    if policy.require_fresh_nonce:
        raise record.fail(
            "fresh nonce",
            "the policy requires evidence over a fresh client nonce; this document was not "
            "requested with one (a replay cannot be ruled out)",
            expected="a client nonce",
            actual=document.nonce.hex() or "(empty)",
            error=StaleEvidence,
        )
    if policy.max_age is None:
        record.passed("freshness", "no maximum age configured")
        return
    signed_time = parse_time_nonce(document.nonce)
    when = signed_time if signed_time is not None else issued_at
    if when is None:
        raise record.fail(
            "freshness",
            "the document carries no signed time",
            expected=f"age <= {policy.max_age:g}s",
            actual="unknown",
        )
    age = now - when
    record.check(
        "freshness",
        -60 <= age <= policy.max_age,
        f"evidence signed {age:.0f}s ago (guest clock; the host can skew it)",
        expected=f"age <= {policy.max_age:g}s",
        actual=f"{age:.0f}s",
        error=StaleEvidence,
    )


def _check_nonce(record: Verification, document: AttestationDocument, nonce: bytes) -> None:
    """The bound nonce is this client's nonce, or a batch root its inclusion proof leads to.

    The report_data step already showed that the evidence binds ``document.nonce``;
    for a batch, the root is recomputed here from the nonce this client sent (never
    the copy in the proof), so only a batch that really held it can match.
    """
    proof = document.nonce_proof
    if proof is None:
        record.check(
            "fresh nonce",
            hmac.compare_digest(document.nonce, nonce),
            "the evidence binds the nonce this client just sent",
            expected=nonce.hex(),
            actual=document.nonce.hex(),
            error=StaleEvidence,
        )
        return
    try:
        recomputed = proof.bound_nonce(nonce)
    except InvalidNonceProof as exc:
        raise record.fail(
            "fresh nonce",
            f"the nonce batch proof is unusable: {exc.message}",
            expected=nonce.hex(),
            actual=proof.nonce.hex(),
            error=StaleEvidence,
        ) from None
    record.check(
        "fresh nonce",
        hmac.compare_digest(recomputed, document.nonce),
        f"the evidence binds a batch of {proof.size} nonces whose Merkle root, recomputed from "
        f"the nonce this client just sent (leaf {proof.index}), is the bound one",
        failure="the nonce batch proof does not lead from the nonce this client just sent to "
        "the root the evidence binds (a replayed document, or another client's batch)",
        expected=recomputed.hex(),
        actual=document.nonce.hex(),
        error=StaleEvidence,
    )
