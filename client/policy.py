"""Verification policy: what a client accepts before it encrypts anything to a key.

Secure by default: only hardware platforms (``sev-snp``, ``tdx``), and no
measurement is accepted until one is pinned (or taken from a verified release).
The ``software`` platform is accepted only with an explicitly trusted root key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .measurement import ExpectedMeasurement
from .release import load_release, trusted_for

__all__ = [
    "Policy",
    "ExpectedMeasurement",
    "GpuPolicy",
    "SnpPolicy",
    "TdxPolicy",
    "HARDWARE_PLATFORMS",
    "trusted_for",
]

HARDWARE_PLATFORMS = frozenset({"sev-snp", "tdx"})


@dataclass(frozen=True, slots=True)
class SnpPolicy:
    """AMD SEV-SNP guest policy and TCB requirements (see the hardware attestation module)."""

    allow_debug: bool = False
    allow_migration_agent: bool = False
    max_vmpl: int = 0
    min_tcb: Mapping[str, int] = field(default_factory=dict)
    min_firmware: tuple[int, int] | None = None
    require_reported_tcb_current: bool = False
    #: When a document carries no VCEK, fetch it from this AMD KDS base URL (None: never).
    kds_url: str | None = None
    #: Directory caching fetched VCEKs (None: ~/.cache/sealgate/vcek).
    kds_cache: str | None = None
    kds_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class TdxPolicy:
    """Intel TDX TCB status and attribute requirements."""

    allow_debug: bool = False
    accepted_tcb_statuses: frozenset[str] = frozenset({"UpToDate"})
    #: Refuse a quote whose collateral carries no PCK / root CA CRL (revocation unchecked).
    require_crls: bool = True


@dataclass(frozen=True, slots=True)
class GpuPolicy:
    """NVIDIA GPU requirements (see :mod:`sealgate.client.verify.nvidia`).

    ``count`` is the number of GPUs a document must prove (None: whatever it claims,
    0: none). A document that claims GPUs is refused unless every one verifies and is
    bound to the CPU report, whatever this policy says.
    """

    count: int | None = None
    architectures: frozenset[str] = frozenset({"HOPPER", "BLACKWELL"})
    #: e.g. ``"550.90.07"``; compared numerically part by part.
    min_driver_version: str | None = None
    #: e.g. ``"96.00.5E.00.01"`` (hexadecimal parts, as NVIDIA prints them).
    min_vbios_version: str | None = None
    #: Both RIMs must be present; False accepts a VBIOS-only appraisal (the driver unappraised).
    require_driver_rim: bool = True
    #: Demand stapled OCSP responses (good status) for the GPU's certificates.
    require_ocsp: bool = False
    #: Development only: accept GPU evidence over a nonce the enclave was configured with
    #: (captured evidence) instead of one derived from this document's binding.
    allow_pinned_nonce: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """What a client accepts. Build one with the class methods; every field has a safe default."""

    platforms: frozenset[str] = HARDWARE_PLATFORMS
    measurements: tuple[ExpectedMeasurement, ...] = ()
    #: Ed25519 public keys (32 bytes) trusted as software roots; needed for ``software``.
    software_roots: tuple[bytes, ...] = ()
    #: Reject documents whose signed time is older than this many seconds (None: no limit).
    max_age: float | None = 600.0
    #: Ask every enclave for evidence over a fresh random nonce before using it.
    require_fresh_nonce: bool = False
    #: Development only: accept any measurement (still checks signatures and binding).
    allow_any_measurement: bool = False
    #: Refuse enclaves that bind no post-quantum (MLKEM768-X25519) key, and modes that
    #: cannot use one (EHBP and the body-only mode are X25519). Without it, the native
    #: mode still prefers the hybrid key and uses X25519 only with enclaves offering no other.
    require_post_quantum: bool = False
    snp: SnpPolicy = field(default_factory=SnpPolicy)
    tdx: TdxPolicy = field(default_factory=TdxPolicy)
    gpu: GpuPolicy = field(default_factory=GpuPolicy)

    @classmethod
    def software(
        cls,
        root_public_key: bytes | str | Iterable[bytes | str],
        measurement: bytes | str | None = None,
        **options: object,
    ) -> Policy:
        """Accept the ``software`` attester signed by these roots (development and tests only)."""
        roots = (
            [root_public_key] if isinstance(root_public_key, bytes | str) else list(root_public_key)
        )
        decoded = tuple(bytes.fromhex(r) if isinstance(r, str) else bytes(r) for r in roots)
        for root in decoded:
            if len(root) != 32:
                raise ValueError("a software root is a 32-byte Ed25519 public key")
        measurements: tuple[ExpectedMeasurement, ...] = ()
        if measurement is not None:
            value = measurement.hex() if isinstance(measurement, bytes) else measurement.lower()
            measurements = (ExpectedMeasurement("software", {"measurement": value}),)
        policy = cls(
            platforms=frozenset({"software"}), software_roots=decoded, measurements=measurements
        )
        return replace(policy, **options)  # type: ignore[arg-type]

    @classmethod
    def from_release(
        cls,
        repo: str,
        *,
        bundle: Any = None,
        digest: str | None = None,
        fetch: bool = False,
        source: Any = None,
        workflow: str | None = None,
        tag_pattern: str | None = r"refs/tags/.+",
        base: Policy | None = None,
    ) -> Policy:
        """Expect the measurements a Sigstore-verified release of ``repo`` publishes.

        ``bundle`` is a Sigstore bundle (dict, JSON, or a file path — also Tinfoil's
        attestation-bundle.json); with ``fetch=True`` it is fetched by ``digest`` from
        ``source`` (GitHub's attestations API by default, or ``LocalBundles(dir)``).
        Verification is offline against Sigstore's production trusted root; any
        failure raises ``ReleaseError`` naming the check.
        """
        release = load_release(
            repo,
            bundle=bundle,
            digest=digest,
            fetch=fetch,
            source=source,
            workflow=workflow,
            tag_pattern=tag_pattern,
        )
        policy = base or cls()
        return replace(policy, measurements=policy.measurements + release.measurements)

    @classmethod
    def from_releases(
        cls, releases: Mapping[str, str | Mapping[str, Any]], *, base: Policy | None = None
    ) -> Policy:
        """Trust, for each model, one release: ``{model: {"repo": ..., "bundle": ...}}``.

        A value holds the keyword arguments of :meth:`from_release` (``repo``, and
        ``bundle`` or ``fetch=True`` with ``digest``, ...); a bare repository name is
        ``{"repo": name}``, which only works where ``from_release(name)`` would. An enclave is then used for a
        model only when its measurement comes from that model's release: a sealgate
        predicate must list the model (else ``ReleaseError``); a predicate without a
        model list (Tinfoil's) counts as one model per repository.
        """
        policy = base or cls()
        groups: list[tuple[dict[str, Any], list[str]]] = []
        for model, spec in releases.items():
            options = {"repo": spec} if isinstance(spec, str) else dict(spec)
            group = next((g for g in groups if g[0] == options), None)
            if group is None:
                groups.append((options, [model]))
            else:
                group[1].append(model)
        added: list[ExpectedMeasurement] = []
        for options, models in groups:
            kwargs = dict(options)
            release = load_release(kwargs.pop("repo"), **kwargs)
            added += trusted_for(release.measurements, models, release.repository)
        return replace(policy, measurements=policy.measurements + tuple(added))

    def with_measurements(self, *expected: ExpectedMeasurement) -> Policy:
        """A copy that also accepts these measurements."""
        return replace(self, measurements=self.measurements + tuple(expected))

    def expected_for(self, platform: str) -> tuple[ExpectedMeasurement, ...]:
        return tuple(m for m in self.measurements if m.platform == platform)
