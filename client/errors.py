"""Typed errors of the client SDK, and the record every verification failure carries.

A :class:`Verification` lists each step of an attestation check with the values compared;
a :class:`VerificationError` carries it. The two refer to each other, so they live here
together (:mod:`sealgate.client.verification` is their documented home and re-exports
the record).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from sealgate.protocol.public.suites import KEM_MLKEM768_X25519, KEM_NAMES

if TYPE_CHECKING:
    from sealgate.protocol.public.problem import Problem

__all__ = [
    "SealgateError",
    "Step",
    "Verification",
    "VerificationError",
    "EvidenceFormatError",
    "CertificateChainError",
    "EvidenceSignatureError",
    "PlatformPolicyError",
    "TcbError",
    "BindingError",
    "MeasurementMismatch",
    "StaleEvidence",
    "ReferenceValueError",
    "PostQuantumUnavailable",
    "NoVerifiedEnclave",
    "FleetUnavailable",
    "GatewayError",
    "ForwardingFailed",
    "EnclaveError",
    "ResponseIntegrityError",
    "RequestNotSent",
    "PostQuantumModeRequired",
]


class SealgateError(Exception):
    """Base class of every error raised by :mod:`sealgate.client`."""


class VerificationError(SealgateError):
    """An attestation did not verify; ``verification`` lists every step and the failing one."""

    def __init__(self, message: str, verification: Verification) -> None:
        super().__init__(message)
        self.verification = verification

    @property
    def step(self) -> str:
        """Name of the step that failed."""
        failed = self.verification.failed_step
        return failed.name if failed else ""

    def diagnostics(self) -> str:
        """A human-readable account of the whole verification."""
        return self.verification.report()


class EvidenceFormatError(VerificationError):
    """The evidence or its collateral is malformed (wrong size, unknown version)."""


class CertificateChainError(VerificationError):
    """A vendor certificate chain does not lead to a pinned root, or is not valid now."""


class EvidenceSignatureError(VerificationError):
    """The evidence is not signed by the key its chain certifies."""


class PlatformPolicyError(VerificationError):
    """The platform's own settings violate the policy (debug, migration agent, VMPL...)."""


class TcbError(VerificationError):
    """The platform's trusted computing base is below the minimum or out of date."""


class BindingError(VerificationError):
    """The signed report_data does not bind the document's keys, nonce and TLS key hash."""


class MeasurementMismatch(VerificationError):
    """The measured code is not one the policy (or a verified release) expects."""


class StaleEvidence(VerificationError):
    """The evidence is too old, or not bound to this client's fresh nonce."""


class ReferenceValueError(VerificationError):
    """No usable reference values: a GPU RIM is missing, malformed, or not NVIDIA-signed."""


class PostQuantumUnavailable(VerificationError):
    """The enclave binds no post-quantum (MLKEM768-X25519) key and the policy requires one."""


@dataclass(frozen=True, slots=True)
class Step:
    """One check: its name, outcome, and the values compared.

    ``detail`` says what was found: for a passed step, what holds; for a failed one, what
    does not (never the passing wording).
    """

    name: str
    ok: bool
    detail: str = ""
    expected: str | None = None
    actual: str | None = None


@dataclass(slots=True)
class Verification:
    """The account of one attestation verification (attached to every failure)."""

    subject: str
    platform: str = ""
    steps: list[Step] = field(default_factory=list)
    measurement: dict[str, str] = field(default_factory=dict)
    report_data: str = ""
    key_fingerprints: tuple[str, ...] = ()
    #: The KEM of each bound key, in the order of ``key_fingerprints`` (``MLKEM768-X25519``...).
    key_kems: tuple[str, ...] = ()
    verified_at: float = 0.0
    #: Models this enclave is trusted to serve (None: neither the policy nor the evidence
    #: names any, so it is used for every model, as in a single-model fleet).
    models: tuple[str, ...] | None = None

    @property
    def ok(self) -> bool:
        """True when every step passed (and there was at least one)."""
        return bool(self.steps) and all(step.ok for step in self.steps)

    @property
    def post_quantum(self) -> bool:
        """True when the enclave binds at least one post-quantum (hybrid) key."""
        return any(kem == KEM_NAMES[KEM_MLKEM768_X25519] for kem in self.key_kems)

    @property
    def failed_step(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)

    def passed(
        self, name: str, detail: str = "", expected: str | None = None, actual: str | None = None
    ) -> None:
        """Record a passed step."""
        self.steps.append(Step(name, True, detail, expected, actual))

    def fail(
        self,
        name: str,
        detail: str,
        expected: str | None = None,
        actual: str | None = None,
        *,
        error: type[VerificationError] = VerificationError,
    ) -> VerificationError:
        """Record a failed step and return the (typed) error to raise."""
        self.steps.append(Step(name, False, detail, expected, actual))
        message = f"{self.subject}: {name} failed: {detail}"
        if expected is not None or actual is not None:
            message += f" (expected {expected}, got {actual})"
        return error(message, self)

    def check(
        self,
        name: str,
        ok: bool,
        detail: str,
        expected: str | None = None,
        actual: str | None = None,
        *,
        failure: str | None = None,
        error: type[VerificationError] = VerificationError,
    ) -> None:
        """Record a step; raise ``error`` (a :class:`VerificationError`) if it failed.

        ``detail`` states what holds when the step passes; ``failure`` what went wrong when
        it does not (without one, the detail is marked as the requirement that was not met).
        """
        if ok:
            self.passed(name, detail, expected, actual)
        else:
            wording = failure if failure is not None else f"requirement not met: {detail}"
            raise self.fail(name, wording, expected, actual, error=error)

    @contextmanager
    def guard(
        self, name: str, what: str, *, error: type[VerificationError] = VerificationError
    ) -> Iterator[None]:
        """Turn any unexpected exception in the block into the failed step ``name`` (fail closed).

        Parsers of hostile input raise more than ``ValueError`` (``cryptography`` has its own
        exception types); none of them may escape as anything but a typed refusal.
        """
        try:
            yield
        except VerificationError:
            raise
        except Exception as exc:  # every failure of untrusted input is a refusal
            reason = str(exc)[:200] or "no detail"
            raise self.fail(name, f"{what} ({type(exc).__name__}: {reason})", error=error) from exc

    def report(self) -> str:
        """Plain-text report, one line per step."""
        lines = [f"verification of {self.subject} ({self.platform or 'unknown platform'}):"]
        for step in self.steps:
            mark = "PASS" if step.ok else "FAIL"
            line = f"  [{mark}] {step.name}: {step.detail}"
            if not step.ok and (step.expected is not None or step.actual is not None):
                line += f" (expected {step.expected}, got {step.actual})"
            lines.append(line)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "platform": self.platform,
            "ok": self.ok,
            "measurement": self.measurement,
            "report_data": self.report_data,
            "key_fingerprints": list(self.key_fingerprints),
            "models": None if self.models is None else list(self.models),
            "key_kems": list(self.key_kems),
            "post_quantum": self.post_quantum,
            "steps": [
                {
                    "name": s.name,
                    "ok": s.ok,
                    "detail": s.detail,
                    "expected": s.expected,
                    "actual": s.actual,
                }
                for s in self.steps
            ],
        }


class NoVerifiedEnclave(SealgateError):
    """No enclave of the fleet passed verification: nothing was (or will be) sent.

    ``failures`` maps enclave ids to the verification errors that excluded them.
    """

    def __init__(self, message: str, failures: dict[str, VerificationError] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or {}


class FleetUnavailable(SealgateError):
    """The gateway's fleet directory could not be fetched or parsed."""


class GatewayError(SealgateError):
    """A plaintext error from the (untrusted) gateway or an enclave's refusal before decryption.

    It is not enclave output: nobody authenticated it. ``status`` and ``problem``
    say what the sender claimed.
    """

    def __init__(self, status: int, problem: Problem | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem


class ForwardingFailed(GatewayError, httpx.TransportError):
    """The gateway lost the enclave after forwarding the request (its claim: 502 forwarding-failed).

    The request may have been processed, so sealgate does not re-send it. It is also an
    ``httpx.TransportError``: to the calling SDK it is a connection that dropped mid-request,
    and the SDK's own connection-retry policy applies (the openai SDK retries twice by
    default; each retry is sealed anew).
    """

    def __init__(self, status: int, problem: Problem | None, message: str) -> None:
        GatewayError.__init__(self, status, problem, message)
        self.args = (message,)
        self._request = None


#: Key of the :class:`EnclaveError` in the ``extensions`` of a decrypted error response.
ENCLAVE_ERROR_EXTENSION = "sealgate.enclave_error"


class EnclaveError(SealgateError):
    """An error answer sealed by the enclave itself: authenticated, unlike a :class:`GatewayError`.

    The transport hands such responses (e.g. ``502 upstream-unavailable`` when the
    inference engine is down) to the calling SDK unchanged, so that SDK raises its own
    error (``openai.InternalServerError``, ``httpx.HTTPStatusError``). :meth:`of` finds
    this record behind that error. ``problem`` is the decrypted RFC 9457 problem document;
    it is set once the body has been read and authenticated to its end (the SDKs read it
    before they raise), and stays None if the body was not a problem document.
    """

    def __init__(self, status: int, enclave: str, problem: Problem | None = None) -> None:
        super().__init__(status, enclave)
        self.status = status
        self.enclave = enclave
        self.problem = problem

    def __str__(self) -> str:
        message = f"enclave {self.enclave} answered {self.status}"
        if self.problem is not None:
            message += f" ({self.problem.type.rsplit(':', 1)[-1]}): {self.problem.title}"
            if self.problem.detail:
                message += f": {self.problem.detail}"
        return message + " [authenticated: sealed by the enclave]"

    @classmethod
    def of(cls, error: object) -> EnclaveError | None:
        """The enclave's error behind an SDK exception, an HTTP response, or their causes."""
        seen = 0
        current: object = error
        while current is not None and seen < 16:
            seen += 1
            if isinstance(current, EnclaveError):
                return current
            response = current if hasattr(current, "extensions") else None
            if response is None:
                try:
                    response = getattr(current, "response", None)
                except Exception:  # noqa: BLE001 - httpx raises when no response is attached
                    response = None
            extensions = getattr(response, "extensions", None)
            if isinstance(extensions, Mapping):
                found = extensions.get(ENCLAVE_ERROR_EXTENSION)
                if isinstance(found, EnclaveError):
                    return found
            current = getattr(current, "__cause__", None) or getattr(current, "__context__", None)
        return None


class ResponseIntegrityError(SealgateError):
    """A response was not encrypted and authenticated as it must be (fail closed).

    Raised for a 2xx without encryption headers, a frame that fails authentication,
    or a stream that ends before its final frame.
    """


class RequestNotSent(SealgateError):
    """The request could not be sealed (e.g. its body is too large to buffer for retries)."""


class PostQuantumModeRequired(RequestNotSent):
    """The policy requires post-quantum keys but this mode seals only to X25519 (EHBP, body-only).

    Use the native mode (the default of :class:`~sealgate.client.SecureClient`) instead.
    """
