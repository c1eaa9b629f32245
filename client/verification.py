"""The :class:`Verification` record: every step of an attestation check, passed or failed."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import VerificationError

__all__ = ["Step", "Verification"]


@dataclass(frozen=True, slots=True)
class Step:
    """One check: its name, outcome, and the values compared."""

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
    verified_at: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every step passed (and there was at least one)."""
        return bool(self.steps) and all(step.ok for step in self.steps)

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
        error: type[VerificationError] = VerificationError,
    ) -> None:
        """Record a step; raise ``error`` (a :class:`VerificationError`) if it failed."""
        if ok:
            self.passed(name, detail, expected, actual)
        else:
            raise self.fail(name, detail, expected, actual, error=error)

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
