"""The :class:`Verification` record: every step of an attestation check, passed or failed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sealgate.protocol.public.suites import KEM_MLKEM768_X25519, KEM_NAMES

from .errors import VerificationError

__all__ = ["Step", "Verification"]


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
