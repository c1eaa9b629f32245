"""The GPU section of the attestation document: parsing is total, the binding is exact."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.evidence.binding import report_data
from sealgate.protocol.evidence.gpu import GpuAttestation, GpuDevice, gpu_nonce
from sealgate.protocol.public.errors import MalformedAttestationDocument

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["nonce", "nonce_source", "devices", "rims", "x"]), json_values, max_size=5
    )
)
def test_hostile_gpu_sections_are_typed_errors(body: dict) -> None:
    try:
        parsed = GpuAttestation.from_dict(body)
    except MalformedAttestationDocument:
        return  # the only way to refuse
    assert GpuAttestation.from_dict(parsed.to_dict()) == parsed


def _sample() -> GpuAttestation:
    return GpuAttestation.of(bytes(range(32)), [GpuDevice(b"report", b"chain")], [b"rim", b"rim"])


def test_round_trip_and_rims_deduplicated() -> None:
    gpu = _sample()
    assert gpu.rims == (b"rim",)
    assert GpuAttestation.from_dict(json.loads(json.dumps(gpu.to_dict()))) == gpu


def test_digest_covers_nonce_source_reports_and_chains_not_rims() -> None:
    gpu = _sample()
    changed = [
        GpuAttestation.of(bytes(32), gpu.devices, gpu.rims),
        GpuAttestation.of(gpu.nonce, gpu.devices, gpu.rims, nonce_source="pinned"),
        GpuAttestation.of(gpu.nonce, [GpuDevice(b"report!", b"chain")], gpu.rims),
        GpuAttestation.of(gpu.nonce, [GpuDevice(b"report", b"chain!")], gpu.rims),
        GpuAttestation.of(gpu.nonce, [*gpu.devices, *gpu.devices], gpu.rims),
    ]
    assert len({gpu.digest(), *(c.digest() for c in changed)}) == 6
    assert GpuAttestation.of(gpu.nonce, gpu.devices, [b"other"]).digest() == gpu.digest()


def test_report_data_without_gpus_is_unchanged_and_with_gpus_differs() -> None:
    keys = b"an encoded key-config list"
    plain = report_data(keys, b"n" * 32)
    assert report_data(keys, b"n" * 32, None, None) == plain
    assert report_data(keys, b"n" * 32, None, bytes(32)) != plain
    assert gpu_nonce(plain) != gpu_nonce(report_data(keys, b"m" * 32))
    with pytest.raises(ValueError):
        report_data(keys, b"", None, b"short")


def test_document_with_bad_gpu_section_is_refused() -> None:
    body = {
        "format": "sealgate-attestation/v1",
        "platform": "software",
        "key_configs": "",
        "evidence": "",
        "gpu": {"nonce": "00", "devices": [], "rims": []},
    }
    with pytest.raises(MalformedAttestationDocument):
        AttestationDocument.from_dict(body)
