"""Rendering verification records for people (rich) and machines (JSON)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from ..verification import Verification

__all__ = ["render_verifications"]


def models_text(record: Verification) -> str:
    """The models a verified enclave is trusted with, for people."""
    if record.models is None:
        return "any (neither the policy nor the evidence names models)"
    return ", ".join(record.models)


def render_verifications(console: Console, records: Iterable[Verification]) -> None:
    """One table per verification: every step, its result, the values compared."""
    for record in records:
        status = "[bold green]VERIFIED[/]" if record.ok else "[bold red]REFUSED[/]"
        table = Table(
            title=f"{record.subject} — {record.platform or '?'} — {status}",
            title_justify="left",
            show_lines=False,
            expand=False,
        )
        table.add_column("step")
        table.add_column("result")
        table.add_column("detail", overflow="fold")
        for step in record.steps:
            detail = step.detail
            if not step.ok and (step.expected is not None or step.actual is not None):
                detail += f"\n  expected: {step.expected}\n  actual:   {step.actual}"
            table.add_row(step.name, "[green]pass[/]" if step.ok else "[red]FAIL[/]", detail)
        console.print(table)
        if record.measurement:
            for name, value in sorted(record.measurement.items()):
                console.print(f"  {name}: [cyan]{value}[/]")
        if record.report_data:
            console.print(f"  report_data: [cyan]{record.report_data}[/]")
        if record.key_fingerprints:
            console.print(f"  keys: {_keys(record)}")
            pq = "[green]yes[/]" if record.post_quantum else "[yellow]no (X25519 only)[/]"
            console.print(f"  post-quantum key: {pq}")
        if record.ok:
            console.print(f"  models: {models_text(record)}")
        console.print()


def _keys(record: Verification) -> str:
    """``fingerprint (KEM)`` for every bound key (KEM omitted for records that lack it)."""
    if len(record.key_kems) != len(record.key_fingerprints):
        return ", ".join(record.key_fingerprints)
    return ", ".join(
        f"{f} ({k})" for f, k in zip(record.key_fingerprints, record.key_kems, strict=True)
    )


def render_summary(console: Console, records: Iterable[Verification]) -> None:
    """One row per enclave: platform, measurement, key, and every check with its result."""
    table = Table(title="fleet verification", title_justify="left")
    for column in ("enclave", "platform", "models", "measurement", "key", "checks"):
        table.add_column(column, overflow="fold")
    for record in records:
        checks = "\n".join(
            f"{'[green]✓[/]' if s.ok else '[red]✗[/]'} {s.name}" for s in record.steps
        )
        measurement = ", ".join(f"{v[:24]}…" for _, v in sorted(record.measurement.items()))
        table.add_row(
            record.subject.removeprefix("enclave "),
            record.platform,
            models_text(record),
            measurement,
            _keys(record),
            checks,
        )
    console.print(table)
