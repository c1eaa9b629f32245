from __future__ import annotations

import base64
import datetime as dt
import gzip
import json

import pytest


@pytest.fixture(scope="session")
def tinfoil_bundle(vectors):
    return json.loads((vectors / "sev-snp-tinfoil-bundle" / "attestation-bundle.json").read_text())


@pytest.fixture(scope="session")
def genoa(tinfoil_bundle):
    """(report bytes, VCEK DER, a time when both are valid)."""
    report = gzip.decompress(base64.b64decode(tinfoil_bundle["enclaveAttestationReport"]["body"]))
    vcek = base64.b64decode(tinfoil_bundle["vcek"])
    return report, vcek, dt.datetime(2026, 1, 22, tzinfo=dt.UTC).timestamp()
