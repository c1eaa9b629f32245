"""A fleet of two models behind one gateway: per-model trust, routing by the sealed `model`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
from collections.abc import Iterator

import httpx
import pytest
from sealgate.client import ENCLAVE_HEADER, ExpectedMeasurement, Policy, SecureClient
from sealgate.client.models import UnknownModel
from sealgate.gateway import Discovery

from ..servers import ServerThread

openai = pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")

A, B = "model-a", "model-b"
MESSAGES = [{"role": "user", "content": "which model?"}]


class _Caught:
    error: UnknownModel


@contextlib.contextmanager
def raises_unknown_model() -> Iterator[_Caught]:
    """``UnknownModel`` through the openai SDK: current releases let it through as it is;
    the oldest supported (1.40) wraps every transport exception in ``APIConnectionError``,
    with ours as its cause. Either way the caller gets the typed error."""
    caught = _Caught()
    with pytest.raises((UnknownModel, openai.APIConnectionError)) as info:
        yield caught
    error = info.value if isinstance(info.value, UnknownModel) else info.value.__cause__
    assert isinstance(error, UnknownModel), repr(info.value)
    caught.error = error


def member_id(server: ServerThread) -> str:
    """The id the gateway gives a statically discovered enclave."""
    return hashlib.sha256(server.url.encode()).hexdigest()[:12]


def served_count(fleet, index: int) -> float:
    """Sealed requests the enclave ``index`` of the loopback fleet handled (its own metric)."""
    metric = fleet.built[index].metrics.requests
    return sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total"))


@pytest.fixture
def two_models(fleet):
    """2 enclaves of model A, 1 of model B, and a rogue enclave whose engine config claims
    A and B but whose release lists only B. Returns (gateway, policy, ids by role)."""
    a1, measured_a = fleet.model_enclave((A,))
    a2, _ = fleet.model_enclave((A,))
    b1, measured_b = fleet.model_enclave((B,))
    rogue, measured_rogue = fleet.model_enclave((A, B))
    gw = fleet.gateway(Discovery(static=[s.url for s in (a1, a2, b1, rogue)]))

    def release(measurement: bytes, repo: str, *models: str) -> ExpectedMeasurement:
        return ExpectedMeasurement(
            "software", {"measurement": measurement.hex()}, f"release {repo}", frozenset(models)
        )

    policy = Policy.software(fleet.root.public_key().public_bytes_raw()).with_measurements(
        release(measured_a, "org/a-enclave", A),
        release(measured_b, "org/b-enclave", B),
        release(measured_rogue, "org/b-enclave", B),
    )
    ids = {
        "a": {member_id(a1), member_id(a2)},
        "b": {member_id(b1), member_id(rogue)},
        "rogue": member_id(rogue),
    }
    return gw, policy, ids


def test_every_request_lands_on_an_enclave_of_its_model_sync(two_models, fleet):
    gw, policy, ids = two_models
    with SecureClient(gw.url, policy) as secure:
        client = secure.openai()
        landed: dict[str, set[str]] = {A: set(), B: set()}
        for turn in range(24):
            model = A if turn % 2 else B
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=MESSAGES, stream=bool(turn % 3 == 0)
            )
            landed[model].add(raw.headers[ENCLAVE_HEADER].split(";")[0])
            if turn % 3 == 0:
                text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
            else:
                completion = raw.parse()
                assert completion.model == model
                text = completion.choices[0].message.content
            assert text.endswith("You said: which model?")
        embedding = client.embeddings.create(model=B, input="x")
        assert len(embedding.data[0].embedding) == 16
    assert landed[A] == ids["a"]  # both A enclaves used, never B's nor the rogue
    assert landed[B] <= ids["b"] and landed[B]
    # The engines agree: the B-only engine would have answered 404 to a model-a request,
    # and the enclaves' own counters add up per model group.
    assert served_count(fleet, 0) + served_count(fleet, 1) == 12


def test_async_and_streaming_route_by_model(two_models):
    gw, policy, ids = two_models

    async def main() -> dict[str, set[str]]:
        with SecureClient(gw.url, policy) as secure:
            client = secure.async_openai()
            landed: dict[str, set[str]] = {A: set(), B: set()}
            for model in (A, B) * 6:
                raw = await client.chat.completions.with_raw_response.create(
                    model=model, messages=MESSAGES, stream=True
                )
                landed[model].add(raw.headers[ENCLAVE_HEADER].split(";")[0])
                stream = raw.parse()
                if inspect.isawaitable(stream):  # openai versions differ here
                    stream = await stream
                text = "".join(
                    [c.choices[0].delta.content or "" async for c in stream if c.choices]
                )
                assert text.endswith("You said: which model?")
            await client.close()
            return landed

    landed = asyncio.run(main())
    assert landed[A] <= ids["a"] and landed[A]
    assert landed[B] <= ids["b"] and landed[B]


def test_release_that_does_not_list_the_model_is_never_chosen(two_models, fleet):
    gw, policy, ids = two_models
    with SecureClient(gw.url, policy) as secure:
        records = {r.subject.removeprefix("enclave "): r for r in secure.verify()}
        rogue = records[ids["rogue"]]
        # Its engine config claims A and B; its release lists B: trusted for B only.
        assert rogue.ok and rogue.models == (B,)
        step = next(s for s in rogue.steps if s.name == "models")
        assert step.expected == B and step.actual == f"{A}, {B}"
        client = secure.openai()
        for _ in range(20):
            raw = client.chat.completions.with_raw_response.create(model=A, messages=MESSAGES)
            assert raw.headers[ENCLAVE_HEADER].split(";")[0] != ids["rogue"]
    assert served_count(fleet, 3) == 0


def test_unknown_model_fails_before_sending_and_lists_models(two_models, fleet):
    gw, policy, _ = two_models
    with SecureClient(gw.url, policy) as secure:
        secure.verify()
        before = [served_count(fleet, i) for i in range(4)]
        client = secure.openai(max_retries=0)
        with raises_unknown_model() as caught:  # typed, through the openai SDK
            client.chat.completions.create(model="model-c", messages=MESSAGES)
        error = caught.error
        assert error.model == "model-c" and error.available == [A, B]
        assert "Models available: model-a, model-b" in str(error)
        with secure.httpx_client() as http, pytest.raises(UnknownModel):
            http.post("/v1/embeddings", json={"model": "model-c", "input": "x"})
        assert [served_count(fleet, i) for i in range(4)] == before


def test_models_listing_is_the_verified_union(two_models, fleet):
    gw, policy, ids = two_models
    with SecureClient(gw.url, policy) as secure:
        client = secure.openai()
        before = [served_count(fleet, i) for i in range(4)]
        listed = client.models.list()
        assert [m.id for m in listed.data] == [A, B]
        assert client.models.retrieve(B).id == B
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("model-c")
        # Answered from verified evidence: no enclave saw a request.
        assert [served_count(fleet, i) for i in range(4)] == before
        by_model = secure.fleet.served_models()
        assert set(by_model[A]) == ids["a"] and set(by_model[B]) == ids["b"]


def test_release_predicate_models_and_from_releases_mapping():
    """`models` of the sealgate predicate become the measurement's models; Tinfoil's none."""
    from sealgate.client.release.predicates import (
        SEALGATE_IMAGE,
        TINFOIL_MULTIPLATFORM,
        PredicateError,
        measurements_from_predicate,
        sealgate_predicate,
    )

    value = "ab" * 48
    predicate = sealgate_predicate({"sev-snp": {"measurement": value}}, "0.1.0", None, [B, A])
    assert predicate["models"] == [A, B]
    (found,) = measurements_from_predicate(SEALGATE_IMAGE, predicate, "r")
    assert found.models == frozenset({A, B})
    (tinfoil,) = measurements_from_predicate(TINFOIL_MULTIPLATFORM, {"snp_measurement": value}, "t")
    assert tinfoil.models is None
    with pytest.raises(PredicateError):
        measurements_from_predicate(SEALGATE_IMAGE, {**predicate, "models": [1]}, "r")


def test_single_model_fleet_unchanged(trio):
    """Evidence and policy naming no models: any model name goes anywhere, as before."""
    gw, policy = trio
    with SecureClient(gw.url, policy) as secure:
        assert all(r.models is None for r in secure.verify())
        with secure.httpx_client() as http:
            reply = http.post(
                "/v1/chat/completions", json={"model": "anything", "messages": MESSAGES}
            )
            assert reply.status_code == 200
            listed = http.get("/v1/models")  # forwarded to an enclave, as before
            assert listed.headers[ENCLAVE_HEADER] and listed.json()["data"]


def test_demo_engine_with_models_refuses_others():
    from sealgate.enclave.engines.demo import create_demo_app
    from starlette.testclient import TestClient

    with TestClient(create_demo_app(models=(A,))) as client:
        ok = client.post("/v1/chat/completions", json={"model": A, "messages": MESSAGES})
        wrong = client.post("/v1/chat/completions", json={"model": B, "messages": MESSAGES})
    assert ok.status_code == 200 and wrong.status_code == 404
    assert wrong.json()["error"]["code"] == "model_not_found"


def test_gateway_directory_carries_claims_but_the_client_trusts_releases(two_models):
    gw, policy, ids = two_models
    listing = httpx.get(gw.url + "/.well-known/sealgate-fleet", timeout=10).json()
    claimed = {e["id"]: e["models"] for e in listing["enclaves"]}
    assert claimed[ids["rogue"]] == [A, B]  # what its engine config claims, shown to operators
    assert {claimed[i][0] for i in ids["a"]} == {A}
    with SecureClient(gw.url, policy) as secure:
        secure.verify()
        assert secure.fleet.enclaves[ids["rogue"]].models == (B,)  # what the client trusts


def _cli_policy(fleet, two_models_measurements: list[bytes]) -> list[str]:
    args = ["--software-root", fleet.root.public_key().public_bytes_raw().hex()]
    for value in two_models_measurements:
        args += ["--measurement", f"software:{value.hex()}"]
    return args


def test_cli_verify_shows_models_and_chat_model_picks_among_them(fleet):
    from click.testing import CliRunner
    from sealgate.client.cli import main

    a1, measured_a = fleet.model_enclave((A,))
    b1, measured_b = fleet.model_enclave((B,))
    gw = fleet.gateway(Discovery(static=[a1.url, b1.url]))
    policy_args = _cli_policy(fleet, [measured_a, measured_b])
    runner = CliRunner()
    shown = runner.invoke(main, ["verify", gw.url, *policy_args, "--json"])
    assert shown.exit_code == 0, shown.output
    listed = {e["subject"]: e["models"] for e in json.loads(shown.output)["enclaves"]}
    assert listed == {f"enclave {member_id(a1)}": [A], f"enclave {member_id(b1)}": [B]}
    table = runner.invoke(main, ["verify", gw.url, *policy_args])
    assert f"models: {A}" in table.output and f"models: {B}" in table.output

    chat = runner.invoke(main, ["chat", "--gateway", gw.url, "--model", B, *policy_args, "hi"])
    assert chat.exit_code == 0, chat.output
    assert "You said: hi" in chat.output and member_id(b1) in chat.output
    unknown = runner.invoke(main, ["chat", "--gateway", gw.url, "--model", "c", *policy_args, "x"])
    assert unknown.exit_code == 1
    assert "Models available: model-a, model-b" in unknown.output


def test_ehbp_mode_routes_by_model_too(two_models):
    from sealgate.protocol.public.modes import EHBP

    gw, policy, ids = two_models
    with SecureClient(gw.url, policy, mode=EHBP) as secure:
        client = secure.openai()
        for model, allowed in ((A, ids["a"]), (B, ids["b"])):
            for _ in range(6):
                raw = client.chat.completions.with_raw_response.create(
                    model=model, messages=MESSAGES
                )
                assert raw.headers[ENCLAVE_HEADER].split(";")[0] in allowed
                assert raw.parse().model == model
        with raises_unknown_model():
            client.chat.completions.create(model="model-c", messages=MESSAGES)


def test_router_reads_the_model_of_every_openai_body_route():
    from sealgate.client.models import Router

    router = Router()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"):
        body = json.dumps({"model": "m", "input": "x", "prompt": "y"}).encode()
        assert router.route("POST", path, body).model == "m"
        assert router.route("POST", "/prefix" + path, body).model == "m"
    assert router.route("GET", "/v1/chat/completions", b'{"model": "m"}').model is None
    assert router.route("POST", "/v1/files", b'{"model": "m"}').model is None
    for body in (b"", b"not json", b"[1]", b'{"model": 3}', b'{"model": ""}'):
        assert router.route("POST", "/v1/completions", body).model is None
    assert router.route("POST", "/v1/chat/completions", b'{"messages": []}').tag is None


def test_a_gateway_lying_about_models_changes_nothing(two_models):
    """Unsigned claims (directory field, document info) are ignored: evidence decides."""
    from .conftest import Tamperer

    gw, policy, ids = two_models
    liar = Tamperer(gw.url)

    def claim_everything(doc: dict) -> dict:
        for entry in doc["enclaves"]:
            entry["models"] = [A, B, "model-c"]
            entry["attestation"]["info"]["models"] = f"{A},{B},model-c"
        return doc

    liar.rewrite_fleet = claim_everything
    try:
        with SecureClient(liar.url, policy) as secure:
            client = secure.openai()
            assert [m.id for m in client.models.list().data] == [A, B]
            for _ in range(8):
                raw = client.chat.completions.with_raw_response.create(model=B, messages=MESSAGES)
                assert raw.headers[ENCLAVE_HEADER].split(";")[0] in ids["b"]
            with raises_unknown_model():
                client.chat.completions.create(model="model-c", messages=MESSAGES)
    finally:
        liar.close()
