"""The start-up check of the engine's models (``EnclaveConfig.models``, ``--model``).

These use the demo engine and a plain HTTP one; tests/engines/ runs the same check
against a real llama.cpp server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import httpx
import pytest
from sealgate.enclave import EnclaveConfig, create_app
from sealgate.enclave.attesters import SoftwareAttester
from sealgate.enclave.engines import HTTPEngine, demo_engine
from sealgate.enclave.engines.demo import DEMO_MODEL, EMBEDDING_MODEL, create_demo_app
from sealgate.enclave.engines.models import MissingModels
from sealgate.gateway import Discovery

from ..loopback import gated_engine
from ..servers import ServerThread, bind_loopback


def _wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_claimed_models_that_the_engine_serves_are_healthy_and_logged(start_enclave, caplog):
    caplog.set_level(logging.INFO, logger="sealgate.enclave")
    server, _ = start_enclave(config=EnclaveConfig(models=(DEMO_MODEL,)))
    health = httpx.get(server.url + "/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    engine = health.json()["engine"]
    assert engine["served"] == [DEMO_MODEL, EMBEDDING_MODEL] and engine["missing"] == []
    assert f"engine serves {DEMO_MODEL}, {EMBEDDING_MODEL}; claimed: {DEMO_MODEL}" in caplog.text


def test_a_claimed_model_the_engine_lacks_refuses_to_start(software_root, demo_measurement):
    built = create_app(
        SoftwareAttester(software_root, demo_measurement),
        demo_engine(),
        EnclaveConfig(models=(DEMO_MODEL, "llama-3-70b")),
    )

    async def start() -> None:
        async with built.app.router.lifespan_context(built.app):
            raise AssertionError("the enclave started")

    with pytest.raises(MissingModels, match="does not serve llama-3-70b") as refused:
        asyncio.run(start())
    assert refused.value.missing == ("llama-3-70b",)
    assert DEMO_MODEL in refused.value.served


def test_an_unreachable_engine_is_unhealthy_until_it_serves_the_model(start_enclave, fleet):
    # The engine's port is reserved but nothing listens yet: connection refused.
    sock = bind_loopback()
    port = sock.getsockname()[1]
    sock.close()
    config = EnclaveConfig(models=(DEMO_MODEL,), engine_check_interval=0.05)
    server, built = start_enclave(engine=HTTPEngine(f"http://127.0.0.1:{port}"), config=config)
    health = httpx.get(server.url + "/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unhealthy"
    assert "unreachable" in health.json()["engine"]["error"]
    # The gateway keeps it out of its routing table meanwhile.
    gw = fleet.gateway(Discovery(static=[server.url]))
    gw.refresh()
    assert gw.gateway.fleet.healthy_count() == 0

    engine = ServerThread(create_demo_app(), port=port).start()
    try:
        _wait_for(lambda: httpx.get(server.url + "/healthz").status_code == 200, "healthy")
        assert built.engine_models.served == (DEMO_MODEL, EMBEDDING_MODEL)

        def routed() -> bool:
            gw.refresh()
            return gw.gateway.fleet.healthy_count() == 1

        _wait_for(routed, "the gateway to route to it")
    finally:
        engine.stop()


def test_without_claims_a_missing_model_list_is_only_logged(start_enclave, caplog):
    # The gated engine serves chat only: its GET /v1/models is a 404.
    server, built = start_enclave(engine=gated_engine(threading.Event()))
    assert httpx.get(server.url + "/healthz").status_code == 200
    assert built.engine_models.error == "the engine answered GET /v1/models with 404"
    assert "engine model check failed" in caplog.text
