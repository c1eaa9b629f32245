"""Releases on a transparency log: verify a Sigstore-signed measurement predicate offline.

A measurement means something only when it is tied to published source. A release
workflow publishes the enclave image's measurements as a signed in-toto statement
on Sigstore's public log; :func:`verify_release` checks it offline and
:meth:`Policy.from_release <sealgate.client.policy.Policy.from_release>` turns it
into the client's expected measurements.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..measurement import ExpectedMeasurement
from .predicates import SEALGATE_IMAGE, TINFOIL_MULTIPLATFORM, PredicateError, sealgate_predicate
from .sources import BundleSource, GitHubAttestations, LocalBundles, read_bundle_file
from .verify import GITHUB_ISSUER, Release, ReleaseError, check_statement, verify_release

__all__ = [
    "GITHUB_ISSUER",
    "SEALGATE_IMAGE",
    "TINFOIL_MULTIPLATFORM",
    "BundleSource",
    "GitHubAttestations",
    "LocalBundles",
    "PredicateError",
    "Release",
    "ReleaseError",
    "check_statement",
    "load_release",
    "read_bundle_file",
    "sealgate_predicate",
    "trusted_for",
    "verify_release",
]


def load_release(
    repo: str,
    *,
    bundle: Path | str | dict[str, Any] | None = None,
    digest: str | None = None,
    fetch: bool = False,
    source: BundleSource | None = None,
    workflow: str | None = None,
    tag_pattern: str | None = r"refs/tags/.+",
) -> Release:
    """Obtain and verify a release bundle (given, from a file, or fetched by digest)."""
    if isinstance(bundle, str | Path) and not (
        isinstance(bundle, str) and bundle.lstrip().startswith("{")
    ):
        bundle_data, named = read_bundle_file(Path(bundle))
        digest = digest or named
    elif bundle is not None:
        bundle_data = bundle if isinstance(bundle, dict) else json.loads(bundle)
    elif fetch:
        if digest is None:
            raise ReleaseError(
                "subject digest", "fetching a release needs the digest of the released artifact"
            )
        bundle_data = (source or GitHubAttestations()).bundle(repo, digest)
    else:
        raise ReleaseError("bundle source", "give a bundle, or fetch=True with a digest")
    if digest is None:
        raise ReleaseError(
            "subject digest", "the release digest is required to check the statement's subject"
        )
    return verify_release(
        bundle_data, repo=repo, digest=digest, workflow=workflow, tag_pattern=tag_pattern
    )


def trusted_for(
    measurements: Iterable[ExpectedMeasurement], models: Iterable[str], repository: str
) -> list[ExpectedMeasurement]:
    """A release's measurements, trusted for ``models``; ``ReleaseError`` if it lists others.

    A release whose predicate names no models (Tinfoil's) is one model per repository:
    it is trusted for exactly the models mapped to it.
    """
    wanted = list(models)
    trusted = []
    for measurement in measurements:
        listed = measurement.models
        missing = [] if listed is None else [m for m in wanted if m not in listed]
        if missing:
            raise ReleaseError(
                "models",
                f"the release of {repository} lists {', '.join(sorted(listed or ()))}, not "
                f"{', '.join(missing)}: map {'it' if len(missing) == 1 else 'them'} to the "
                "repository that releases an image serving "
                f"{'it' if len(missing) == 1 else 'them'}",
            )
        trusted.append(replace(measurement, models=frozenset(wanted)))
    return trusted
