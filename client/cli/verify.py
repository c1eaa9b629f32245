"""``sealgate verify URL``: verify an enclave, or a whole fleet through a gateway."""

from __future__ import annotations

import json
import os
import sys

import click
import httpx
from rich.console import Console
from sealgate.protocol.evidence.attestation import MAX_DOCUMENT_BYTES, AttestationDocument
from sealgate.protocol.public.errors import ProtocolError

from ..errors import FleetUnavailable, VerificationError
from ..fleet import (
    ATTESTATION_PATH,
    FLEET_PATH,
    BodyRefused,
    Fleet,
    get_capped,
    unexpected_failure,
)
from ..policy import Policy
from ..verification import Verification
from ..verify import verify_document
from .options import policy_options, root_url
from .report import render_verifications


def _verify_enclave(url: str, policy: Policy) -> list[Verification]:
    nonce = os.urandom(32)
    with httpx.Client(timeout=15) as http:
        try:
            status, body = get_capped(
                http, url + ATTESTATION_PATH, MAX_DOCUMENT_BYTES, params={"nonce": nonce.hex()}
            )
        except BodyRefused as exc:
            raise click.ClickException(
                f"the attestation document from {url} was refused: {exc}"
            ) from None
    if status != 200:
        raise click.ClickException(
            f"{url} answered {status} for {ATTESTATION_PATH}: is it a sealgate enclave or gateway?"
        )
    document = AttestationDocument.from_json(bytes(body))
    try:
        return [verify_document(document, policy, subject=url, nonce=nonce).verification]
    except VerificationError as exc:
        return [exc.verification]
    except Exception as exc:  # noqa: BLE001 - hostile evidence is a refusal, not a crash
        return [unexpected_failure(url, document.platform, exc).verification]


def _verify_fleet(url: str, policy: Policy) -> list[Verification]:
    fleet = Fleet(url, policy)
    try:
        fleet.refresh()
    finally:
        fleet.close()
    return fleet.records()


@click.command()
@click.argument("url")
@policy_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(url: str, policy: Policy, as_json: bool) -> None:
    """Verify the enclave or gateway fleet at URL; exit 1 unless every enclave verifies."""
    url = root_url(url)
    try:
        with httpx.Client(timeout=15) as http, http.stream("GET", url + FLEET_PATH) as probe:
            is_gateway = probe.status_code == 200  # the body is read (capped) by the fleet
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
