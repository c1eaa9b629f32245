"""The GPUs an attestation document claims: each verified, bound, and as many as expected."""

from __future__ import annotations

import hmac

from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.evidence.gpu import gpu_nonce

from ...errors import BindingError, PlatformPolicyError, StaleEvidence
from ...policy import Policy
from ...verification import Verification
from .gpu import GpuEvidence, VerifiedGpu, verify_gpu

__all__ = ["verify_document_gpus"]


def verify_document_gpus(
    document: AttestationDocument, policy: Policy, record: Verification, now: float
) -> tuple[VerifiedGpu, ...]:
    """Verify every GPU of ``document`` (after its report_data binding held).

    The report_data step already proved that the CPU report covers this GPU section; here
    the GPUs' nonce must be the one derived from the document's binding (or a pinned one
    the policy allows), each GPU must verify against the stapled RIMs, the GPUs must be
    distinct devices, and their number must be the policy's.
    """
    expected = policy.gpu.count
    gpus = document.gpu
    claimed = 0 if gpus is None else len(gpus.devices)
    if gpus is None:
        if expected:
            raise record.fail(
                "gpu count",
                f"the policy expects {expected} GPU(s); the document claims none",
                expected=str(expected),
                actual="0",
                error=PlatformPolicyError,
            )
        return ()
    record.check(
        "gpu count",
        expected is None or claimed == expected,
        f"{claimed} GPU(s) claimed",
        expected="any" if expected is None else str(expected),
        actual=str(claimed),
        failure=f"the document claims {claimed} GPU(s); the policy expects {expected}",
        error=PlatformPolicyError,
    )
    derived = gpu_nonce(document.cpu_binding())
    if gpus.nonce_source == "pinned":
        record.check(
            "gpu nonce binding",
            policy.gpu.allow_pinned_nonce,
            "the enclave binds a configured GPU nonce (captured evidence; development only: "
            "allow_pinned_nonce)",
            expected=derived.hex(),
            actual=gpus.nonce.hex(),
            failure="the GPU evidence is over a nonce the enclave was configured with, not one "
            "derived from this document: it may be replayed (allow only in development)",
            error=StaleEvidence,
        )
    else:
        record.check(
            "gpu nonce binding",
            hmac.compare_digest(gpus.nonce, derived),
            "the GPU nonce is SHA-256('sealgate gpu nonce v1', this document's CPU binding)",
            expected=derived.hex(),
            actual=gpus.nonce.hex(),
            failure="the GPU nonce is not derived from this document's keys and nonce",
            error=BindingError,
        )
    verified = tuple(
        verify_gpu(
            GpuEvidence(device.report, device.chain, device.ocsp),
            gpus.rims,
            policy.gpu,
            record,
            now,
            expected_nonce=gpus.nonce,
            label=f"gpu{i}",
        )
        for i, device in enumerate(gpus.devices)
    )
    leaves = {gpu.leaf_fingerprint for gpu in verified}
    record.check(
        "gpus distinct",
        len(leaves) == len(verified),
        f"{len(verified)} distinct GPU(s) (distinct device certificates)",
        expected=str(len(verified)),
        actual=str(len(leaves)),
        failure="the same GPU's evidence is counted more than once",
        error=PlatformPolicyError,
    )
    return verified
