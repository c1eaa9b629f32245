"""Options shared by the client commands (``verify``, ``chat``): the policy, the gateway URL."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import click

from ..fleet import gateway_root
from ..policy import HARDWARE_PLATFORMS, ExpectedMeasurement, GpuPolicy, Policy

__all__ = ["policy_options", "build_policy", "root_url"]

_PLATFORM_REGISTER = {"software": "measurement", "sev-snp": "measurement"}


def _parse_measurement(value: str) -> ExpectedMeasurement:
    platform, sep, rest = value.partition(":")
    if not sep:
        raise click.BadParameter(f"{value!r}: use PLATFORM:HEX or tdx:rtmr1=HEX,rtmr2=HEX")
    if "=" in rest:
        registers = dict(part.split("=", 1) for part in rest.split(","))
    else:
        registers = {_PLATFORM_REGISTER.get(platform, "measurement"): rest}
    for name, hexvalue in registers.items():
        try:
            bytes.fromhex(hexvalue)
        except ValueError:
            raise click.BadParameter(f"{name} of {value!r} is not hex") from None
    return ExpectedMeasurement(platform, {k.lower(): v.lower() for k, v in registers.items()})


def policy_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the policy options; the command receives ``policy: Policy``."""

    @click.option(
        "--software-root",
        "software_roots",
        multiple=True,
        metavar="HEX",
        help="Trust this software-attester root (Ed25519 public key); development only.",
    )
    @click.option(
        "--measurement",
        "measurements",
        multiple=True,
        metavar="PLATFORM:HEX",
        help="Expected measurement, e.g. sev-snp:HEX, software:HEX or tdx:rtmr1=HEX,rtmr2=HEX.",
    )
    @click.option(
        "--allow-any-measurement",
        is_flag=True,
        help="Accept any measurement (signatures and key binding are still checked).",
    )
    @click.option("--fresh-nonce", is_flag=True, help="Require evidence over a fresh nonce.")
    @click.option(
        "--require-post-quantum",
        is_flag=True,
        help="Refuse enclaves that bind no post-quantum (MLKEM768-X25519) key.",
    )
    @click.option(
        "--max-age",
        type=float,
        default=600.0,
        show_default=True,
        help="Maximum age in seconds of evidence without a fresh nonce.",
    )
    @click.option(
        "--gpus",
        type=click.IntRange(0, 16),
        default=None,
        help="Number of NVIDIA GPUs each enclave must prove (default: whatever it claims).",
    )
    @click.option("--gpu-min-driver", metavar="VERSION", help="Minimum NVIDIA driver version.")
    @click.option(
        "--gpu-allow-pinned-nonce",
        is_flag=True,
        help="Accept captured GPU evidence over a configured nonce (development only).",
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        software_roots: tuple[str, ...],
        measurements: tuple[str, ...],
        allow_any_measurement: bool,
        fresh_nonce: bool,
        require_post_quantum: bool,
        max_age: float,
        gpus: int | None,
        gpu_min_driver: str | None,
        gpu_allow_pinned_nonce: bool,
        **kwargs: Any,
    ) -> Any:
        policy = build_policy(
            software_roots,
            measurements,
            allow_any_measurement,
            fresh_nonce,
            max_age,
            require_post_quantum=require_post_quantum,
        )
        gpu = GpuPolicy(
            count=gpus,
            min_driver_version=gpu_min_driver,
            allow_pinned_nonce=gpu_allow_pinned_nonce,
        )
        kwargs["policy"] = dataclasses.replace(policy, gpu=gpu)
        return command(*args, **kwargs)

    return wrapper


def build_policy(
    software_roots: tuple[str, ...],
    measurements: tuple[str, ...],
    allow_any_measurement: bool = False,
    fresh_nonce: bool = False,
    max_age: float | None = 600.0,
    *,
    require_post_quantum: bool = False,
) -> Policy:
    """The policy the options describe (hardware only unless a software root is given)."""
    try:
        roots = tuple(bytes.fromhex(r) for r in software_roots)
    except ValueError:
        raise click.BadParameter("--software-root must be hex") from None
    platforms = set(HARDWARE_PLATFORMS)
    if roots:
        platforms.add("software")
    return Policy(
        platforms=frozenset(platforms),
        measurements=tuple(_parse_measurement(m) for m in measurements),
        software_roots=roots,
        max_age=max_age,
        require_fresh_nonce=fresh_nonce,
        allow_any_measurement=allow_any_measurement,
        require_post_quantum=require_post_quantum,
    )


def root_url(url: str) -> str:
    """``url`` without a trailing ``/v1``, telling the user on stderr when one was dropped."""
    root, note = gateway_root(url)
    if note is not None:
        click.echo(f"Warning: {note}", err=True)
    return root
