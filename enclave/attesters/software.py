"""The ``software`` attester: an Ed25519 key stands in for the hardware root of trust.

For laptops, CI and demos only. Its "measurement" is SHA-384 over the installed
sealgate code and the engine configuration (including the models it serves), which
catches a changed build or model list but proves nothing about isolation: whoever runs the process can read its memory.
Clients refuse ``software`` evidence unless told to trust this root's public key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealgate.protocol.evidence.software_evidence import (
    PLATFORM,
    SIGNING_CONTEXT,
    SoftwareClaims,
    encode_evidence,
)

from .base import AttesterError, Evidence

__all__ = [
    "SoftwareAttester",
    "measure_software",
    "engine_models",
    "load_root_key",
    "sealgate_version",
]

_PACKAGES = ("sealgate.protocol", "sealgate.client", "sealgate.enclave", "sealgate.gateway")


def sealgate_version() -> str:
    try:
        return metadata.version("sealgate")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def measure_software(engine: Mapping[str, object]) -> bytes:
    """SHA-384 over every installed sealgate source file (path and bytes) and the engine config."""
    import importlib

    digest = hashlib.sha384(b"sealgate software measurement v1\x00")
    for name in _PACKAGES:
        package = importlib.import_module(name)
        for root in sorted(package.__path__):
            for path in sorted(Path(root).rglob("*.py")):
                relative = f"{name}/{path.relative_to(root).as_posix()}".encode()
                data = path.read_bytes()
                digest.update(len(relative).to_bytes(4, "big") + relative)
                digest.update(len(data).to_bytes(8, "big") + data)
    engine_json = json.dumps(dict(engine), sort_keys=True, separators=(",", ":")).encode()
    digest.update(len(engine_json).to_bytes(4, "big") + engine_json)
    return digest.digest()


def engine_models(engine: Mapping[str, object]) -> tuple[str, ...] | None:
    """The ``models`` an engine description names (None when it names none)."""
    models = engine.get("models")
    if models is None:
        return None
    if not isinstance(models, list | tuple) or not all(isinstance(m, str) and m for m in models):
        raise AttesterError("the engine description's 'models' must be a list of model names")
    return tuple(sorted(models))


def load_root_key(path: Path) -> Ed25519PrivateKey:
    """Load a PEM (PKCS#8) Ed25519 private key used as the software root."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise AttesterError(f"cannot load the software root key from {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AttesterError(f"{path} is not an Ed25519 private key")
    return key


class SoftwareAttester:
    """Signs claims with an Ed25519 root key; platform ``software``."""

    platform = PLATFORM

    def __init__(
        self,
        root: Ed25519PrivateKey,
        measurement: bytes,
        clock: Callable[[], float] = time.time,
        models: tuple[str, ...] | None = None,
    ) -> None:
        self._root = root
        self.measurement = measurement
        self.root_public_key = root.public_key().public_bytes_raw()
        self._clock = clock
        self._version = sealgate_version()
        #: The measured engine configuration's models, signed into every claim.
        self.models = None if models is None else tuple(sorted(models))

    @classmethod
    def from_options(
        cls,
        root_key: Path | Ed25519PrivateKey | None = None,
        engine: Mapping[str, object] | None = None,
    ) -> SoftwareAttester:
        """Build from CLI-style options; a missing root key is generated in memory."""
        if isinstance(root_key, Path):
            root = load_root_key(root_key)
        elif root_key is None:
            root = Ed25519PrivateKey.generate()
        else:
            root = root_key
        engine = engine or {}
        return cls(root, measure_software(engine), models=engine_models(engine))

    def attest(self, report_data: bytes) -> Evidence:
        claims = SoftwareClaims(
            measurement=self.measurement,
            report_data=report_data,
            issued_at=int(self._clock()),
            sealgate_version=self._version,
            models=self.models,
        ).to_bytes()
        signature = self._root.sign(SIGNING_CONTEXT + claims)
        return Evidence(encode_evidence(claims, signature), {"software_root": self.root_public_key})

    def describe(self) -> dict[str, str]:
        return {
            "platform": self.platform,
            "software_root_public_key": self.root_public_key.hex(),
            "measurement": self.measurement.hex(),
            **({"models": ",".join(self.models)} if self.models is not None else {}),
            "warning": "software attester: no hardware isolation; for development only",
        }
