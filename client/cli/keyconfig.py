"""``sealgate keyconfig``: decode an ``application/ohttp-keys`` file and print fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sealgate.protocol.public.errors import ProtocolError
from sealgate.protocol.public.keyconfig import decode_key_configs


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keyconfig(path: Path, as_json: bool) -> None:
    """Decode the key configurations in PATH (RFC 9458 list or one bare config)."""
    try:
        configs = decode_key_configs(path.read_bytes())
    except ProtocolError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = [
        {
            "key_id": c.key_id,
            "kem_id": c.kem_id,
            "public_key": c.public_key.hex(),
            "suites": [[s.kdf_id, s.aead_id] for s in c.suites],
            "fingerprint": c.fingerprint,
        }
        for c in configs
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"key {row['key_id']}: fingerprint {row['fingerprint']} kem 0x{row['kem_id']:04x}"
        )
