"""Measurement predicates: what a release says its enclave image measures to.

* ``https://tinfoil.sh/predicate/snp-tdx-multiplatform/v1`` (in the wild):
  ``snp_measurement`` and ``tdx_measurement.rtmr1`` / ``rtmr2``.
* ``https://sealgate.dev/predicate/enclave-image/v1`` (ours): per-platform register
  values, the sealgate version, the engine image digest and (optionally) the models
  the image's measured engine configuration serves::

    {"sealgate_version": "0.1.0",
     "engine_image_digest": "sha256:...",
     "models": ["llama-3.3-70b"],
     "measurements": {"sev-snp": {"measurement": "..."},
                      "tdx": {"mrtd": "...", "rtmr1": "...", "rtmr2": "..."}}}

Both map to the client's :class:`~sealgate.client.measurement.ExpectedMeasurement`; a
sealgate predicate's ``models`` become its ``models`` (Tinfoil's names none: one model
per repository, assigned by ``Policy.from_releases``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..measurement import ExpectedMeasurement

__all__ = [
    "TINFOIL_MULTIPLATFORM",
    "SEALGATE_IMAGE",
    "measurements_from_predicate",
    "sealgate_predicate",
    "PredicateError",
]

TINFOIL_MULTIPLATFORM = "https://tinfoil.sh/predicate/snp-tdx-multiplatform/v1"
SEALGATE_IMAGE = "https://sealgate.dev/predicate/enclave-image/v1"
_HEX48 = re.compile(r"^[0-9a-f]{96}$")
_REGISTERS = {
    "sev-snp": {"measurement"},
    "tdx": {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"},
    "software": {"measurement"},
}


class PredicateError(ValueError):
    """The predicate is not one this client understands, or its values are malformed."""


def _register(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _HEX48.match(value.lower()):
        raise PredicateError(f"{name} must be 48 bytes of hex")
    return value.lower()


def measurements_from_predicate(
    predicate_type: str, predicate: Mapping[str, Any], source: str
) -> tuple[ExpectedMeasurement, ...]:
    """The expected measurements a predicate names."""
    if not isinstance(predicate, Mapping):
        raise PredicateError("the predicate is not an object")
    found: list[ExpectedMeasurement] = []
    if predicate_type == TINFOIL_MULTIPLATFORM:
        if "snp_measurement" in predicate:
            found.append(
                ExpectedMeasurement(
                    "sev-snp",
                    {"measurement": _register(predicate["snp_measurement"], "snp_measurement")},
                    source,
                )
            )
        tdx = predicate.get("tdx_measurement")
        if isinstance(tdx, Mapping):
            found.append(
                ExpectedMeasurement(
                    "tdx",
                    {k: _register(tdx[k], f"tdx_measurement.{k}") for k in ("rtmr1", "rtmr2")},
                    source,
                )
            )
    elif predicate_type == SEALGATE_IMAGE:
        models = _models(predicate.get("models"))
        measurements = predicate.get("measurements")
        if not isinstance(measurements, Mapping):
            raise PredicateError("the sealgate predicate has no 'measurements' object")
        for platform, registers in measurements.items():
            allowed = _REGISTERS.get(platform)
            if allowed is None or not isinstance(registers, Mapping) or not registers:
                raise PredicateError(f"unknown platform or empty registers: {platform!r}")
            unknown = set(registers) - allowed
            if unknown:
                raise PredicateError(f"unknown {platform} registers: {sorted(unknown)}")
            found.append(
                ExpectedMeasurement(
                    platform,
                    {k: _register(v, f"{platform}.{k}") for k, v in registers.items()},
                    source,
                    models,
                )
            )
    else:
        raise PredicateError(f"unsupported predicate type {predicate_type!r}")
    if not found:
        raise PredicateError("the predicate names no measurement")
    return tuple(found)


def _models(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(m, str) and 0 < len(m) <= 256 for m in value)
    ):
        raise PredicateError("'models' must be a non-empty list of model names")
    return frozenset(value)


def sealgate_predicate(
    measurements: Mapping[str, Mapping[str, str]],
    sealgate_version: str,
    engine_image_digest: str | None,
    models: list[str] | tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Build (and validate) a sealgate enclave-image predicate."""
    predicate: dict[str, Any] = {
        "sealgate_version": sealgate_version,
        "measurements": {
            p: {k: v.lower() for k, v in regs.items()} for p, regs in measurements.items()
        },
    }
    if engine_image_digest:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", engine_image_digest):
            raise PredicateError("engine image digest must look like sha256:<64 hex>")
        predicate["engine_image_digest"] = engine_image_digest
    if models is not None:
        predicate["models"] = sorted(models)
    measurements_from_predicate(SEALGATE_IMAGE, predicate, "validation")
    return predicate
