"""sealgate.client: verify, then encrypt — the SDK application developers install.

All verification happens here, on the client: attestation evidence (platform
signatures and certificate chains), the binding of the enclave's keys into it,
the measurement against the policy. Only then are request bodies sealed to the
attested keys; responses are opened incrementally and refused if not authentic.
"""

from __future__ import annotations

from .errors import (
    EnclaveError,
    FleetUnavailable,
    ForwardingFailed,
    GatewayError,
    NoVerifiedEnclave,
    RequestNotSent,
    ResponseIntegrityError,
    SealgateError,
    VerificationError,
)
from .fleet import Fleet, VerifiedEnclave
from .models import UnknownModel
from .native import AsyncNativeTransport, NativeTransport
from .policy import ExpectedMeasurement, GpuPolicy, Policy, SnpPolicy, TdxPolicy
from .session import SecureClient
from .transport import (
    ENCLAVE_HEADER,
    AsyncEhbpTransport,
    AsyncSealgateTransport,
    EhbpTransport,
    SealgateTransport,
)
from .verification import Step, Verification
from .verify import PlatformEvidence, VerifiedDocument, register, verify_document

__all__ = [
    "ENCLAVE_HEADER",
    "AsyncEhbpTransport",
    "AsyncNativeTransport",
    "AsyncSealgateTransport",
    "EnclaveError",
    "ExpectedMeasurement",
    "Fleet",
    "FleetUnavailable",
    "ForwardingFailed",
    "GatewayError",
    "GpuPolicy",
    "EhbpTransport",
    "NativeTransport",
    "NoVerifiedEnclave",
    "PlatformEvidence",
    "Policy",
    "RequestNotSent",
    "ResponseIntegrityError",
    "SealgateError",
    "SealgateTransport",
    "SecureClient",
    "SnpPolicy",
    "Step",
    "TdxPolicy",
    "UnknownModel",
    "Verification",
    "VerificationError",
    "VerifiedDocument",
    "VerifiedEnclave",
    "register",
    "verify_document",
]
