from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealgate.enclave import EnclaveConfig, KeyRing, create_app
from sealgate.enclave.attesters import SoftwareAttester, measure_software
from sealgate.enclave.engines import Engine, demo_engine

from ..servers import ServerThread
from .processes import EnclaveProcess


@pytest.fixture(scope="session")
def software_root() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def software_root_file(tmp_path) -> tuple[Ed25519PrivateKey, Path]:
    """A new software root key, and the PEM file ``--software-root-key`` reads."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "root.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key, path


@pytest.fixture(scope="session")
def demo_measurement() -> bytes:
    return measure_software(demo_engine().description)


@pytest.fixture
def start_enclave(
    software_root, demo_measurement
) -> Iterator[Callable[..., tuple[ServerThread, object]]]:
    started: list[ServerThread] = []

    def start(
        engine: Engine | None = None,
        config: EnclaveConfig | None = None,
        keyring: KeyRing | None = None,
    ):
        attester = SoftwareAttester(software_root, demo_measurement)
        built = create_app(attester, engine or demo_engine(), config, keyring)
        server = ServerThread(built.app).start()
        started.append(server)
        return server, built

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def enclave_process(tmp_path) -> Iterator[Callable[..., EnclaveProcess]]:
    """Start ``python -m sealgate.enclave`` processes (:class:`EnclaveProcess` arguments);
    each is stopped when the test ends."""
    started: list[EnclaveProcess] = []

    def start(args=(), env=None, **kwargs) -> EnclaveProcess:
        started.append(EnclaveProcess(tmp_path, args, env, **kwargs))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()
