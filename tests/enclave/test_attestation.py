"""Attestation documents: software evidence binds the keys; configfs-tsm on a fake tree."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sealgate.client import Fleet, Policy, verify_document
from sealgate.client.errors import StaleEvidence
from sealgate.enclave import EnclaveConfig, KeyRing, create_app
from sealgate.enclave.attestation import AttestationService
from sealgate.enclave.attesters import AttesterError, Evidence, SoftwareAttester
from sealgate.enclave.attesters.tsm import TsmAttester, parse_cert_table
from sealgate.enclave.engines import demo_engine
from sealgate.gateway import Discovery
from sealgate.protocol.evidence.attestation import AttestationDocument, parse_time_nonce
from sealgate.protocol.evidence.binding import report_data
from sealgate.protocol.evidence.software_evidence import (
    SIGNING_CONTEXT,
    SoftwareClaims,
    decode_evidence,
)

from ..servers import GatewayThread, ServerThread


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
    # Both keys of the generation are bound: X25519 (EHBP's) first, then the hybrid one.
    assert built.keyring.current_hybrid is not None
    assert document.fingerprints == (
        built.keyring.current.fingerprint,
        built.keyring.current_hybrid.fingerprint,
    )
    assert [c.kem_name for c in document.keys] == ["X25519", "MLKEM768-X25519"]
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
        len(renewed.fingerprints) == 4  # the new pair and the pair within its grace period
        and renewed.fingerprints[0] == built.keyring.current.fingerprint
    )


@pytest.mark.parametrize("nonce", ["abc", "zz" * 32, "00" * 33])
def test_bad_nonce_is_400(start_enclave, http, nonce):
    server, _ = start_enclave()
    response = http.get(server.url + "/.well-known/sealgate-attestation", params={"nonce": nonce})
    assert response.status_code == 400


class CountingAttester:
    """Wraps an attester: counts reports and can hold them until ``release`` is set."""

    def __init__(self, inner: SoftwareAttester, *, gated: bool = False) -> None:
        self.inner = inner
        self.platform = inner.platform
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        if not gated:
            self.release.set()
        self._lock = threading.Lock()

    def attest(self, report_data: bytes) -> Evidence:
        with self._lock:
            self.calls += 1
        self.entered.set()
        assert self.release.wait(20), "test never released the attester"
        return self.inner.attest(report_data)

    def describe(self) -> dict[str, str]:
        return self.inner.describe()


@pytest.fixture
def counting_enclave(software_root, demo_measurement):
    """Start an enclave whose attester is a :class:`CountingAttester`; stopped after the test."""
    started: list[ServerThread] = []

    def start(config: EnclaveConfig | None = None, gated: bool = False):
        attester = CountingAttester(SoftwareAttester(software_root, demo_measurement), gated=gated)
        built = create_app(attester, demo_engine(), config)
        server = ServerThread(built.app).start()
        started.append(server)
        return server, built, attester

    yield start
    for server in started:
        server.stop()


def _strict_policy(software_root, demo_measurement) -> Policy:
    return Policy.software(
        software_root.public_key().public_bytes_raw(), demo_measurement, require_fresh_nonce=True
    )


def _wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def shared_http() -> Iterator[httpx.Client]:
    """One thread-safe client with a connection per concurrent request."""
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    with httpx.Client(timeout=30, limits=limits) as client:
        yield client


def _get_nonce(client: httpx.Client, url: str, nonce: bytes) -> httpx.Response:
    return client.get(url + "/.well-known/sealgate-attestation", params={"nonce": nonce.hex()})


def test_one_report_answers_a_whole_batch_and_every_proof_verifies(
    counting_enclave, shared_http, software_root, demo_measurement
):
    server, built, attester = counting_enclave(EnclaveConfig(attestation_concurrency=1), gated=True)
    nonces = [os.urandom(32) for _ in range(100)]
    with ThreadPoolExecutor(max_workers=len(nonces)) as pool:
        first = pool.submit(_get_nonce, shared_http, server.url, nonces[0])
        # The first report is held in the attester, so every later nonce joins one batch.
        assert attester.entered.wait(20)
        rest = [pool.submit(_get_nonce, shared_http, server.url, n) for n in nonces[1:]]
        _wait_until(lambda: built.attestation.pending == len(nonces), "100 pending nonces")
        attester.release.set()
        responses = [first.result(30)] + [f.result(30) for f in rest]
    assert attester.calls == 2 and built.attestation.reports == 2
    assert built.attestation.nonces_served == len(nonces)
    policy = _strict_policy(software_root, demo_measurement)
    documents = []
    for nonce, response in zip(nonces, responses, strict=True):
        assert response.status_code == 200
        document = AttestationDocument.from_json(response.content)
        verified = verify_document(document, policy, nonce=nonce)
        assert any(s.name == "fresh nonce" and s.ok for s in verified.verification.steps)
        documents.append(document)
    # A batch of one stays a v1 document binding the nonce directly (old clients keep working).
    assert documents[0].nonce_proof is None and documents[0].nonce == nonces[0]
    assert documents[0].to_dict()["format"] == "sealgate-attestation/v1"
    batched = documents[1:]
    assert {d.evidence for d in batched} == {batched[0].evidence}  # one report for 99 nonces
    assert all(d.to_dict()["format"] == "sealgate-attestation/v2" for d in batched)
    assert sorted(d.nonce_proof.index for d in batched) == list(range(99))
    assert all(d.nonce_proof.size == 99 and len(d.nonce_proof.path) <= 7 for d in batched)
    # Another client's proof, or a replay to a client with a new nonce, is refused.
    with pytest.raises(StaleEvidence):
        verify_document(batched[0], policy, nonce=nonces[2])
    with pytest.raises(StaleEvidence):
        verify_document(batched[0], policy, nonce=os.urandom(32))


def test_a_nonce_flood_does_not_starve_strict_clients(
    counting_enclave, software_root, demo_measurement
):
    """Issue 12: one anonymous flood of nonces made every require_fresh_nonce client fail."""
    server, _built, attester = counting_enclave()  # default limits
    gateway = GatewayThread(Discovery(static=[server.url])).start()
    flood_url = server.url + "/.well-known/sealgate-attestation"
    flooding, strict_done = threading.Event(), threading.Event()
    flood_statuses: list[int] = []

    async def flood() -> None:
        async with httpx.AsyncClient(timeout=30) as client:

            async def one_task() -> None:
                while len(flood_statuses) < 2000 and not (
                    strict_done.is_set() and len(flood_statuses) >= 200
                ):
                    response = await client.get(flood_url, params={"nonce": os.urandom(32).hex()})
                    flood_statuses.append(response.status_code)
                    if len(flood_statuses) >= 40:
                        flooding.set()

            await asyncio.gather(*(one_task() for _ in range(20)))

    flooder = threading.Thread(target=asyncio.run, args=(flood(),))
    flooder.start()
    strict = [Fleet(gateway.url, _strict_policy(software_root, demo_measurement)) for _ in range(5)]
    try:
        assert flooding.wait(30), "the flood did not start"
        with ThreadPoolExecutor(max_workers=5) as pool:
            list(pool.map(lambda fleet: fleet.refresh(), strict))
        strict_done.set()
        flooder.join(60)
        for fleet in strict:
            assert not fleet.failures, [str(e) for e in fleet.failures.values()]
            enclave, _key = fleet.choose(settle=0)  # NoVerifiedEnclave before the fix
            assert any(s.name == "fresh nonce" and s.ok for s in enclave.verification.steps)
    finally:
        strict_done.set()
        flooder.join(60)
        for fleet in strict:
            fleet.close()
        gateway.stop()
    assert not flooder.is_alive()
    assert len(flood_statuses) >= 200 and set(flood_statuses) == {200}
    served = len(flood_statuses) + len(strict)
    # Far fewer reports than nonces: one per batch (plus the gateway's cached document).
    assert attester.calls * 2 <= served, (attester.calls, served)


def test_a_flood_beyond_the_batch_queue_gets_429_with_retry_after(
    counting_enclave, shared_http, http
):
    config = EnclaveConfig(
        attestation_concurrency=1, attestation_batch_size=4, attestation_batch_queue=2
    )
    server, built, attester = counting_enclave(config, gated=True)
    with ThreadPoolExecutor(max_workers=11) as pool:
        first = pool.submit(_get_nonce, shared_http, server.url, os.urandom(32))
        assert attester.entered.wait(20)  # batch 1 is in the attester; batch 2 fills up next
        flood = [
            pool.submit(_get_nonce, shared_http, server.url, os.urandom(32)) for _ in range(10)
        ]
        limited = []
        for future in as_completed(flood, timeout=30):  # only the refused ones answer now
            limited.append(future.result())
            if len(limited) == 6:
                break
        assert built.attestation.pending == 5  # a full batch still admitted its 4
        attester.release.set()
        responses = [first.result(30)] + [f.result(30) for f in flood]
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 5 + [429] * 6
    assert all(r.status_code == 429 for r in limited)
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert attester.calls == 2
    assert http.get(server.url + "/.well-known/sealgate-attestation").status_code == 200


class FailingAttester:
    platform = "software"

    def attest(self, report_data: bytes) -> Evidence:
        raise AttesterError("the TSM device refused the report")

    def describe(self) -> dict[str, str]:
        return {}


async def test_a_client_hanging_up_does_not_cancel_its_batch(software_root, demo_measurement):
    attester = CountingAttester(SoftwareAttester(software_root, demo_measurement))
    service = AttestationService(attester, KeyRing(), engine={}, batch_window=0.05)
    nonces = [os.urandom(32) for _ in range(3)]
    tasks = [asyncio.create_task(service.fresh(n)) for n in nonces]
    await asyncio.sleep(0)  # every task has joined the open batch
    assert service.pending == 3
    tasks[0].cancel()
    documents = await asyncio.gather(*tasks[1:])
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert attester.calls == 1 and service.pending == 0
    policy = _strict_policy(software_root, demo_measurement)
    for nonce, document in zip(nonces[1:], documents, strict=True):
        assert document.nonce_proof is not None and document.nonce_proof.size == 3
        verify_document(document, policy, nonce=nonce)


async def test_an_attester_failure_reaches_every_client_of_the_batch():
    service = AttestationService(FailingAttester(), KeyRing(), engine={}, batch_window=0.02)
    results = await asyncio.gather(
        *(service.fresh(os.urandom(32)) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, AttesterError) for r in results)
    assert service.pending == 0 and service.reports == 0
    with pytest.raises(ValueError, match="32 bytes"):
        await service.fresh(b"short")


def test_single_nonce_requests_keep_binding_the_nonce_directly(start_enclave, http):
    server, built = start_enclave()
    for _ in range(3):
        nonce = os.urandom(32)
        response = http.get(
            server.url + "/.well-known/sealgate-attestation", params={"nonce": nonce.hex()}
        )
        document = AttestationDocument.from_json(response.content)
        assert response.json()["format"] == "sealgate-attestation/v1"
        assert document.nonce == nonce and document.nonce_proof is None
    assert built.attestation.reports == 3


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
