"""``sealgate verify URL``: verify an enclave, or a whole fleet through a gateway."""

from __future__ import annotations

import json
import os
import sys

import click
import httpx
from rich.console import Console
from sealgate.protocol.attestation import AttestationDocument
from sealgate.protocol.errors import ProtocolError

from ..errors import FleetUnavailable, VerificationError
from ..fleet import ATTESTATION_PATH, FLEET_PATH, Fleet
from ..policy import Policy
from ..verification import Verification
from ..verify import verify_document
from .options import policy_options
from .report import render_verifications


def _verify_enclave(url: str, policy: Policy) -> list[Verification]:
    nonce = os.urandom(32)
    response = httpx.get(url + ATTESTATION_PATH, params={"nonce": nonce.hex()}, timeout=15)
    response.raise_for_status()
    document = AttestationDocument.from_json(response.content)
    try:
        return [verify_document(document, policy, subject=url, nonce=nonce).verification]
    except VerificationError as exc:
        return [exc.verification]


def _verify_fleet(url: str, policy: Policy) -> list[Verification]:
    fleet = Fleet(url, policy)
    try:
        fleet.refresh()
    finally:
        fleet.close()
    records = [e.verification for e in fleet.enclaves.values()]
    records += [f.verification for f in fleet.failures.values()]
    return records


@click.command()
@click.argument("url")
@policy_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(url: str, policy: Policy, as_json: bool) -> None:
    """Verify the enclave or gateway fleet at URL; exit 1 unless every enclave verifies."""
    url = url.rstrip("/")
    try:
        probe = httpx.get(url + FLEET_PATH, timeout=15)
        is_gateway = probe.status_code == 200
        records = _verify_fleet(url, policy) if is_gateway else _verify_enclave(url, policy)
    except (httpx.HTTPError, FleetUnavailable, ProtocolError) as exc:
        raise click.ClickException(f"cannot fetch attestation from {url}: {exc}") from exc
    ok = bool(records) and all(r.ok for r in records)
    if as_json:
        click.echo(
            json.dumps({"url": url, "ok": ok, "enclaves": [r.to_dict() for r in records]}, indent=2)
        )
    else:
        console = Console()
        if not records:
            console.print("[red]the gateway lists no enclave[/]")
        render_verifications(console, records)
        verified = sum(r.ok for r in records)
        console.print(f"{verified} of {len(records)} enclave(s) verified")
    sys.exit(0 if ok else 1)
