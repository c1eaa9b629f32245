"""Attestation documents: software evidence binds the keys; configfs-tsm on a fake tree."""

from __future__ import annotations

import os
import struct
import threading
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sealgate.enclave import EnclaveConfig, create_app
from sealgate.enclave.attesters import AttesterError
from sealgate.enclave.attesters.tsm import TsmAttester, parse_cert_table
from sealgate.enclave.engines import demo_engine
from sealgate.protocol import AttestationDocument, parse_time_nonce, report_data
from sealgate.protocol.software_evidence import SIGNING_CONTEXT, SoftwareClaims, decode_evidence

from ..servers import ServerThread


def _verify_software(document: AttestationDocument, root_public: bytes) -> SoftwareClaims:
    claims_bytes, signature = decode_evidence(document.evidence)
    Ed25519PublicKey.from_public_bytes(root_public).verify(
        signature, SIGNING_CONTEXT + claims_bytes
    )
    return SoftwareClaims.from_bytes(claims_bytes)


def test_fresh_document_verifies_and_binds_keys_and_nonce(
    start_enclave, http, software_root, demo_measurement
):
    server, built = start_enclave()
    nonce = os.urandom(32)
    response = http.get(
        server.url + "/.well-known/sealgate-attestation", params={"nonce": nonce.hex()}
    )
    assert response.status_code == 200
    document = AttestationDocument.from_json(response.content)
    assert document.platform == "software" and document.nonce == nonce
    claims = _verify_software(document, software_root.public_key().public_bytes_raw())
    assert claims.report_data == report_data(document.key_configs, nonce, None)
    assert claims.report_data == document.expected_report_data()
    assert claims.measurement == demo_measurement and len(claims.measurement) == 48
    assert document.fingerprints == (built.keyring.current.fingerprint,)
    assert document.collateral["software_root"] == software_root.public_key().public_bytes_raw()


def test_cached_document_is_bound_to_a_time_nonce_and_renewed_on_rotation(
    start_enclave, http, software_root
):
    server, built = start_enclave()
    first = AttestationDocument.from_json(
        http.get(server.url + "/.well-known/sealgate-attestation").content
    )
    again = AttestationDocument.from_json(
        http.get(server.url + "/.well-known/sealgate-attestation").content
    )
    assert first == again  # served from the cache
    assert parse_time_nonce(first.nonce) is not None
    claims = _verify_software(first, software_root.public_key().public_bytes_raw())
    assert claims.report_data == first.expected_report_data()
    built.rotate_keys()
    renewed = AttestationDocument.from_json(
        http.get(server.url + "/.well-known/sealgate-attestation").content
    )
    assert (
        len(renewed.fingerprints) == 2
        and renewed.fingerprints[0] == built.keyring.current.fingerprint
    )


@pytest.mark.parametrize("nonce", ["abc", "zz" * 32, "00" * 33])
def test_bad_nonce_is_400(start_enclave, http, nonce):
    server, _ = start_enclave()
    response = http.get(server.url + "/.well-known/sealgate-attestation", params={"nonce": nonce})
    assert response.status_code == 400


def test_a_flood_of_nonces_is_rate_limited(start_enclave, http):
    server, _ = start_enclave(config=EnclaveConfig(attestation_rate=0.5, attestation_burst=3))
    statuses = [
        http.get(
            server.url + "/.well-known/sealgate-attestation", params={"nonce": os.urandom(32).hex()}
        )
        for _ in range(8)
    ]
    codes = [r.status_code for r in statuses]
    assert codes[:3] == [200, 200, 200]
    limited = [r for r in statuses if r.status_code == 429]
    assert len(limited) >= 4 and int(limited[0].headers["retry-after"]) >= 1
    assert (
        http.get(server.url + "/.well-known/sealgate-attestation").status_code == 200
    )  # cache still served


# --- configfs-tsm -----------------------------------------------------------------------


class FakeTsmKernel:
    """Plays the kernel behind a temporary directory laid out like configfs-tsm.

    A new report entry gets ``provider`` and ``generation`` files and an ``outblob``
    FIFO: when the attester opens it, this fake reads ``inblob`` and answers with a
    report carrying that report_data (at the SEV-SNP offset 0x50), like the kernel does.
    """

    def __init__(self, root: Path, provider: str, auxblob: bytes = b"") -> None:
        self.root = root
        self.provider = provider
        self.auxblob = auxblob
        self.threads: list[threading.Thread] = []

    def mkdir(self, entry: Path) -> None:
        entry.mkdir()
        (entry / "provider").write_text(self.provider + "\n")
        (entry / "generation").write_text("1\n")
        if self.auxblob:
            (entry / "auxblob").write_bytes(self.auxblob)
        os.mkfifo(entry / "outblob")
        thread = threading.Thread(target=self._answer, args=(entry,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _answer(self, entry: Path) -> None:
        with open(entry / "outblob", "wb") as out:  # blocks until the attester reads
            report_data = (entry / "inblob").read_bytes()
            report = bytearray(1184)
            report[0:4] = struct.pack("<I", 3)
            report[0x50:0x90] = report_data
            out.write(bytes(report))

    def cleanup(self) -> None:
        for thread in self.threads:
            thread.join(5)
        for entry in self.root.iterdir():
            for f in entry.iterdir():
                f.unlink()
            entry.rmdir()


def _cert_table(certs: dict[uuid.UUID, bytes]) -> bytes:
    header_size = 24 * (len(certs) + 1)
    entries, blobs, offset = b"", b"", header_size
    for guid, blob in certs.items():
        entries += struct.pack("<16sII", guid.bytes_le, offset, len(blob))
        blobs += blob
        offset += len(blob)
    return entries + bytes(24) + blobs


VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")


def test_sev_snp_attester_over_fake_configfs(tmp_path):
    kernel = FakeTsmKernel(tmp_path, "sev_guest", _cert_table({VCEK_GUID: b"fake-vcek-der"}))
    attester = TsmAttester("sev-snp", tmp_path, make_entry=kernel.mkdir)
    data = os.urandom(64)
    evidence = attester.attest(data)
    kernel.cleanup()
    assert len(evidence.evidence) == 1184 and evidence.evidence[0x50:0x90] == data
    assert evidence.collateral == {"vcek": b"fake-vcek-der"}
    assert list(tmp_path.iterdir()) == []  # the entry was removed (rmdir)


def test_enclave_serves_a_document_from_fake_configfs(tmp_path, http):
    kernel = FakeTsmKernel(tmp_path, "sev_guest")
    attester = TsmAttester("sev-snp", tmp_path, {"vcek": b"from --vcek"}, make_entry=kernel.mkdir)
    built = create_app(attester, demo_engine())
    with ServerThread(built.app) as server:
        nonce = os.urandom(32)
        response = http.get(
            server.url + "/.well-known/sealgate-attestation", params={"nonce": nonce.hex()}
        )
    kernel.cleanup()
    document = AttestationDocument.from_json(response.content)
    assert document.platform == "sev-snp"
    assert document.evidence[0x50:0x90] == document.expected_report_data()
    assert document.collateral["vcek"] == b"from --vcek"


def test_wrong_provider_and_missing_configfs_are_typed_errors(tmp_path):
    kernel = FakeTsmKernel(tmp_path, "tdx_guest")
    with pytest.raises(AttesterError, match="provider"):
        TsmAttester("sev-snp", tmp_path, make_entry=kernel.mkdir).attest(bytes(64))
    kernel.cleanup()
    with pytest.raises(AttesterError, match="not a tdx guest"):
        TsmAttester.from_options("tdx", tsm_root=tmp_path / "absent")


def test_cert_table_parsing_rejects_bad_tables():
    assert parse_cert_table(_cert_table({VCEK_GUID: b"x"})) == {"vcek": b"x"}
    with pytest.raises(AttesterError):
        parse_cert_table(struct.pack("<16sII", VCEK_GUID.bytes_le, 1000, 10))


def test_tls_key_hash_from_the_cli_option_is_bound(tmp_path):
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from sealgate.enclave.cli import _tls_key_hash

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = tmp_path / "tls.pem"
    pem.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = _tls_key_hash(pem)
    assert digest == hashlib.sha256(spki).digest()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from sealgate.enclave.attesters import SoftwareAttester

    built = create_app(
        SoftwareAttester(Ed25519PrivateKey.generate(), bytes(48)),
        demo_engine(),
        tls_key_hash=digest,
    )
    document = built.attestation._build(b"n" * 32)
    assert document.tls_key_hash == digest
    assert document.expected_report_data() == report_data(document.key_configs, b"n" * 32, digest)


def test_tdx_attester_over_fake_configfs(tmp_path):
    kernel = FakeTsmKernel(tmp_path, "tdx_guest")
    attester = TsmAttester("tdx", tmp_path, {"qe_identity.json": b"{}"}, make_entry=kernel.mkdir)
    data = os.urandom(64)
    evidence = attester.attest(data)
    kernel.cleanup()
    # The fake kernel answers with a report carrying the report_data; TDX evidence is the
    # outblob as the kernel returns it (the quote), with the configured collateral attached.
    assert evidence.evidence[0x50:0x90] == data and len(evidence.evidence) == 1184
    assert evidence.collateral == {"qe_identity.json": b"{}"}
    with pytest.raises(AttesterError, match="64 bytes"):
        attester.attest(b"short")
