"""``sealgate verify-release`` and ``sealgate measure``: the transparency-log side of measurements."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..release import ReleaseError, load_release, sealgate_predicate
from ..release.predicates import SEALGATE_IMAGE, PredicateError


@click.command("verify-release")
@click.option(
    "--bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Sigstore bundle (v0.3 JSON), or an attestation bundle with sigstoreBundle + digest.",
)
@click.option(
    "--repo",
    required=True,
    metavar="OWNER/NAME",
    help="The GitHub repository that must have built it.",
)
@click.option(
    "--digest",
    metavar="HEX",
    help="sha256 of the released artifact (default: from the bundle file).",
)
@click.option(
    "--workflow", metavar="PATH", help="Required workflow file, e.g. .github/workflows/release.yml."
)
@click.option(
    "--tag-pattern",
    default=r"refs/tags/.+",
    show_default=True,
    help="Regex the signed ref must match.",
)
@click.option("--json", "as_json", is_flag=True)
def verify_release(
    bundle: Path,
    repo: str,
    digest: str | None,
    workflow: str | None,
    tag_pattern: str,
    as_json: bool,
) -> None:
    """Verify a release's Sigstore bundle offline and print its measurements."""
    try:
        release = load_release(
            repo, bundle=bundle, digest=digest, workflow=workflow, tag_pattern=tag_pattern
        )
    except ReleaseError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "check": exc.check, "error": str(exc)}, indent=2))
        else:
            Console().print(f"[bold red]REFUSED[/] ({exc.check}): {exc}")
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"ok": True, **release.to_dict()}, indent=2))
        return
    table = Table(
        title=f"release of {release.repository} — [bold green]VERIFIED[/] offline",
        title_justify="left",
    )
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name, value in (
        ("issuer", release.issuer),
        ("identity", release.identity),
        ("ref", release.ref),
        ("log index", str(release.log_index)),
        ("integrated time", release.integrated_time.isoformat()),
        ("subject", f"{release.subject_name} sha256:{release.subject_digest}"),
        ("predicate", release.predicate_type),
    ):
        table.add_row(name, value)
    for m in release.measurements:
        for register, value in sorted(m.registers.items()):
            table.add_row(f"{m.platform} {register}", value)
    Console().print(table)


@click.command()
@click.option("--sev-snp", "snp", metavar="HEX", help="SEV-SNP launch measurement of the image.")
@click.option(
    "--tdx",
    "tdx",
    multiple=True,
    metavar="REGISTER=HEX",
    help="TDX register (mrtd, rtmr0..3); repeatable.",
)
@click.option(
    "--software", metavar="HEX", help="Software-attester measurement (development builds)."
)
@click.option(
    "--engine-image-digest", metavar="sha256:HEX", help="Digest of the inference engine image."
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME",
    help="A model the image's measured engine configuration serves (repeatable).",
)
@click.option("--sealgate-version", default=None, help="Default: the installed version.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (default: stdout).",
)
def measure(
    snp: str | None,
    tdx: tuple[str, ...],
    software: str | None,
    engine_image_digest: str | None,
    models: tuple[str, ...],
    sealgate_version: str | None,
    output: Path | None,
) -> None:
    """Write the sealgate enclave-image predicate for the measurements an image build computed."""
    from importlib import metadata

    measurements: dict[str, dict[str, str]] = {}
    if snp:
        measurements["sev-snp"] = {"measurement": snp}
    if tdx:
        measurements["tdx"] = dict(item.split("=", 1) for item in tdx)
    if software:
        measurements["software"] = {"measurement": software}
    try:
        version = sealgate_version or metadata.version("sealgate")
        predicate = sealgate_predicate(
            measurements, version, engine_image_digest, list(models) or None
        )
    except (PredicateError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    text = json.dumps(predicate, indent=2) + "\n"
    if output:
        output.write_text(text)
        click.echo(f"wrote {SEALGATE_IMAGE} predicate to {output}", err=True)
    else:
        click.echo(text, nl=False)
