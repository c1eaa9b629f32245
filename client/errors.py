"""Typed errors of the client SDK.

Every verification failure carries the :class:`~sealgate.client.verification.Verification`
record that shows which step failed and which values were compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from sealgate.protocol.public.problem import Problem

    from .verification import Verification

__all__ = [
    "SealgateError",
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
