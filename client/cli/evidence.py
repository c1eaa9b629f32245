"""``sealgate verify-evidence``: verify raw SEV-SNP, TDX or NVIDIA GPU evidence offline (auditors)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from pathlib import Path

import click
from rich.console import Console

from ..errors import VerificationError
from ..policy import GpuPolicy, SnpPolicy, TdxPolicy
from ..verification import Verification
from ..verify.base import PlatformEvidence
from ..verify.sev_snp import snp_evidence, verify_snp
from ..verify.tdx import Collateral, fmspc_of, tdx_evidence, verify_tdx
from .report import render_verifications


def _when(value: str | None) -> float:
    if value is None:
        return dt.datetime.now(dt.UTC).timestamp()
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()


@click.command("verify-evidence")
@click.option("--platform", type=click.Choice(["sev-snp", "tdx", "nvidia-gpu"]), required=True)
@click.option(
    "--report",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SEV-SNP: the 1184-byte attestation report. nvidia-gpu: SPDM request || response "
    "(binary, or hex as NVIDIA's tools write it).",
)
@click.option(
    "--chain",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="nvidia-gpu: the GPU's PEM certificate chain, leaf first.",
)
@click.option(
    "--rim",
    "rims",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="nvidia-gpu: a reference integrity manifest (repeat for driver and VBIOS).",
)
@click.option("--nonce", metavar="HEX", help="nvidia-gpu: the nonce the request must carry.")
@click.option(
    "--no-driver-rim",
    is_flag=True,
    help="nvidia-gpu: appraise the VBIOS only (driver unappraised).",
)
@click.option(
    "--vcek",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SEV-SNP: the VCEK (or VLEK) certificate, DER or PEM.",
)
@click.option(
    "--quote",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TDX: the v4 quote.",
)
@click.option(
    "--collateral",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="TDX: directory of Intel PCS collateral (tcb_info_<fmspc>.json, qe_identity.json, chains).",
)
@click.option("--at", "at", metavar="ISO-TIME", help="Verify as of this time (default: now).")
@click.option("--allow-debug", is_flag=True, help="Do not refuse a debuggable guest.")
@click.option("--json", "as_json", is_flag=True)
def verify_evidence(
    platform: str,
    report: Path | None,
    vcek: Path | None,
    quote: Path | None,
    collateral: Path | None,
    chain: Path | None,
    rims: tuple[Path, ...],
    nonce: str | None,
    no_driver_rim: bool,
    at: str | None,
    allow_debug: bool,
    as_json: bool,
) -> None:
    """Verify hardware evidence and print every step and the extracted values."""
    now = _when(at)
    record = Verification(subject=str(report or quote), platform=platform, verified_at=now)
    evidence: PlatformEvidence | None = None
    try:
        if platform == "sev-snp":
            if report is None or vcek is None:
                raise click.UsageError("--platform sev-snp needs --report and --vcek")
            parsed = verify_snp(
                report.read_bytes(),
                vcek.read_bytes(),
                SnpPolicy(allow_debug=allow_debug),
                record,
                now,
            )
            evidence = snp_evidence(parsed)
        elif platform == "nvidia-gpu":
            if report is None or chain is None:
                raise click.UsageError("--platform nvidia-gpu needs --report and --chain")
            evidence = _verify_gpu(
                report,
                chain,
                rims,
                nonce,
                GpuPolicy(require_driver_rim=not no_driver_rim),
                record,
                now,
            )
        else:
            if quote is None or collateral is None:
                raise click.UsageError("--platform tdx needs --quote and --collateral")
            raw = quote.read_bytes()
            try:
                fmspc = fmspc_of(raw)  # picks the TCB info file for this platform
                bundle = Collateral.from_directory(collateral, fmspc)
            except (OSError, ValueError) as exc:
                raise click.ClickException(f"cannot load collateral: {exc}") from exc
            parsed_quote = verify_tdx(raw, bundle, TdxPolicy(allow_debug=allow_debug), record, now)
            evidence = tdx_evidence(parsed_quote, fmspc)
    except VerificationError:
        pass  # the record names the failed step
    values: dict[str, str] = {}
    if evidence is not None:
        # One source for each value: report_data and the registers live in the record,
        # ``values`` adds the platform's other fields.
        record.measurement = dict(evidence.registers)
        record.report_data = evidence.report_data.hex()
        values = {**evidence.registers, **evidence.details}
    if as_json:
        click.echo(json.dumps({**record.to_dict(), "values": values}, indent=2))
    else:
        console = Console()
        render_verifications(console, [record])
        for name, value in sorted(evidence.details.items() if evidence else ()):
            console.print(f"  {name}: [cyan]{value}[/]")
    sys.exit(0 if record.ok else 1)


def _verify_gpu(
    report: Path,
    chain: Path,
    rims: tuple[Path, ...],
    nonce: str | None,
    policy: GpuPolicy,
    record: Verification,
    now: float,
) -> PlatformEvidence:
    from ..verify.nvidia import GpuEvidence, verify_gpu

    raw = report.read_bytes()
    with contextlib.suppress(UnicodeDecodeError, ValueError):  # NVIDIA's tools write hex
        raw = bytes.fromhex(raw.decode("ascii"))
    try:
        expected = None if nonce is None else bytes.fromhex(nonce)
    except ValueError:
        raise click.BadParameter(f"--nonce {nonce!r} is not hex") from None
    verified = verify_gpu(
        GpuEvidence(raw, chain.read_bytes()),
        [path.read_bytes() for path in rims],
        policy,
        record,
        now,
        expected_nonce=expected,
    )
    return PlatformEvidence(
        report_data=b"",
        registers={},
        details={
            "architecture": verified.architecture,
            "driver_version": verified.driver_version,
            "vbios_version": verified.vbios_version,
            "nonce": verified.nonce.hex(),
            "rims": ", ".join(verified.rims),
            "matched_measurements": str(verified.matched),
            **verified.details,
        },
    )
