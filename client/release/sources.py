"""Where release bundles come from: a file, a directory (air-gapped), or GitHub's attestations API.

Fetched bundles are cached on disk by digest; every fetch has a timeout. Nothing
fetched is trusted: each bundle is verified offline (:func:`verify_release`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .verify import ReleaseError

__all__ = ["BundleSource", "LocalBundles", "GitHubAttestations", "read_bundle_file"]


def read_bundle_file(path: Path) -> tuple[dict[str, Any], str | None]:
    """A Sigstore bundle, or an attestation bundle holding ``sigstoreBundle`` and ``digest``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReleaseError("bundle format", f"cannot read {path}: {exc}") from None
    if isinstance(data, dict) and "sigstoreBundle" in data:
        digest = data.get("digest")
        return data["sigstoreBundle"], digest if isinstance(digest, str) else None
    if isinstance(data, dict) and "mediaType" in data:
        return data, None
    raise ReleaseError(
        "bundle format", f"{path} holds neither a Sigstore bundle nor an attestation bundle"
    )


class BundleSource(Protocol):
    def bundle(self, repo: str, digest: str) -> dict[str, Any]:
        """The Sigstore bundle attesting ``digest`` for ``repo``."""
        ...


@dataclass(frozen=True, slots=True)
class LocalBundles:
    """A bundle file, or a directory of ``<digest>.json`` / ``*.sigstore.json`` files (air-gapped use)."""

    path: Path

    def bundle(self, repo: str, digest: str) -> dict[str, Any]:
        candidates = [self.path] if self.path.is_file() else sorted(self.path.glob("*.json"))
        for candidate in candidates:
            try:
                bundle, named = read_bundle_file(candidate)
            except ReleaseError:
                continue
            if named in (None, digest) and (
                named == digest or candidate.stem.startswith(digest) or self.path.is_file()
            ):
                return bundle
        raise ReleaseError("bundle source", f"no bundle for sha256:{digest} in {self.path}")


@dataclass(frozen=True, slots=True)
class GitHubAttestations:
    """GitHub's attestations API (``/repos/{repo}/attestations/sha256:{digest}``), cached on disk."""

    api: str = "https://api.github.com"
    timeout: float = 10.0
    cache_dir: Path | None = None
    token: str | None = None

    def _cache(self) -> Path:
        return self.cache_dir or Path(os.path.expanduser("~/.cache/sealgate/releases"))

    def bundle(self, repo: str, digest: str) -> dict[str, Any]:
        import httpx

        cached = self._cache() / f"{repo.replace('/', '_')}-{digest}.json"
        if cached.exists():
            return dict(json.loads(cached.read_text()))
        headers = {"Accept": "application/vnd.github+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = httpx.get(
                f"{self.api.rstrip('/')}/repos/{repo}/attestations/sha256:{digest}",
                headers=headers,
                timeout=self.timeout,
            )
            response.raise_for_status()
            attestations = response.json()["attestations"]
            bundle = attestations[0]["bundle"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise ReleaseError(
                "bundle source", f"cannot fetch the attestation for sha256:{digest}: {exc}"
            ) from None
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(bundle))
        return dict(bundle)
