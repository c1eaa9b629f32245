"""The software attester's signed model list: optional, canonical, and validated."""

from __future__ import annotations

import json

import pytest
from sealgate.protocol.evidence.software_evidence import SoftwareClaims
from sealgate.protocol.public.errors import MalformedAttestationDocument


def _claims(models: tuple[str, ...] | None) -> SoftwareClaims:
    return SoftwareClaims(b"\x01" * 48, b"\x02" * 64, 1_700_000_000, "0.1.0", models=models)


def test_claims_without_models_are_unchanged_bytes():
    encoded = _claims(None).to_bytes()
    assert b"models" not in encoded
    assert SoftwareClaims.from_bytes(encoded).models is None


def test_models_are_signed_sorted_and_round_trip():
    encoded = _claims(("b", "a")).to_bytes()
    assert json.loads(encoded)["models"] == ["a", "b"]
    assert SoftwareClaims.from_bytes(encoded).models == ("a", "b")


@pytest.mark.parametrize("bad", ["a", [1], [""], {"a": 1}])
def test_malformed_model_lists_are_refused(bad):
    body = json.loads(_claims(None).to_bytes())
    body["models"] = bad
    with pytest.raises(MalformedAttestationDocument):
        SoftwareClaims.from_bytes(json.dumps(body).encode())
