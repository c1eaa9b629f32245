"""The report: a rich table, JSON, or JUnit XML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from xml.etree import ElementTree

from rich.console import Console
from rich.table import Table

from .catalogue import Outcome
from .runner import Row

__all__ = ["table", "to_json", "to_junit", "to_markdown"]

_STYLE = {
    Outcome.CAUGHT: "green",
    Outcome.NOT_CAUGHT: "bold red",
    Outcome.LIMIT: "yellow",
    Outcome.NOT_APPLICABLE: "dim",
}


def table(rows: Sequence[Row], console: Console) -> None:
    view = Table(title="sealgate redteam", show_lines=False)
    for column in ("attack", "subject", "promise (threat model)", "result", "evidence"):
        view.add_column(column, overflow="fold")
    for row in rows:
        outcome = row.result.outcome
        view.add_row(
            row.attack.id,
            row.subject,
            row.attack.promise,
            f"[{_STYLE[outcome]}]{outcome.value}[/]",
            row.result.evidence,
        )
    console.print(view)
    failed = sum(row.failed for row in rows)
    console.print(
        f"{len(rows)} attacks: {sum(r.result.outcome is Outcome.CAUGHT for r in rows)} caught, "
        f"{failed} not caught, "
        f"{sum(r.result.outcome is Outcome.LIMIT for r in rows)} limits of the protocol, "
        f"{sum(r.result.outcome is Outcome.NOT_APPLICABLE for r in rows)} not applicable"
    )


def to_json(rows: Sequence[Row]) -> str:
    return json.dumps(
        {"ok": not any(r.failed for r in rows), "rows": [r.as_dict() for r in rows]}, indent=2
    )


def to_junit(rows: Sequence[Row]) -> str:
    suite = ElementTree.Element(
        "testsuite",
        name="sealgate-redteam",
        tests=str(len(rows)),
        failures=str(sum(r.failed for r in rows)),
        skipped=str(sum(r.result.outcome is Outcome.NOT_APPLICABLE for r in rows)),
    )
    for row in rows:
        case = ElementTree.SubElement(
            suite, "testcase", classname=f"redteam.{row.attack.target}", name=row.attack.id
        )
        if row.failed:
            ElementTree.SubElement(case, "failure", message=row.result.evidence)
        elif row.result.outcome is Outcome.NOT_APPLICABLE:
            ElementTree.SubElement(case, "skipped", message=row.result.evidence)
        else:
            ElementTree.SubElement(
                case, "system-out"
            ).text = f"{row.result.outcome.value}: {row.result.evidence}"
    return ElementTree.tostring(suite, encoding="unicode")


def to_markdown(rows: Sequence[Row]) -> str:
    """A Markdown table (attack, subject, result, evidence), for READMEs and issues."""
    lines = ["| attack | subject | result | evidence |", "|---|---|---|---|"]
    for row in rows:
        evidence = row.result.evidence.replace("|", "\\|")
        lines.append(
            f"| `{row.attack.id}` {row.attack.title} | {row.subject} | "
            f"{row.result.outcome.value} | {evidence} |"
        )
    return "\n".join(lines)
