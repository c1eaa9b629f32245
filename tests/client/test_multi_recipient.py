"""Multi-recipient requests end to end: gateway failover, replay bound, splicing, non-candidates."""

from __future__ import annotations

import hashlib
import json
import re
import time

import httpx
import pytest
from sealgate.client import ENCLAVE_HEADER, Policy, SecureClient
from sealgate.client.affinity import rendezvous_order, routing_tag
from sealgate.client.demo import DemoFleet
from sealgate.enclave import EnclaveConfig
from sealgate.gateway import Discovery
from sealgate.protocol.public.keyconfig import KeyConfig, decode_key_configs
from sealgate.protocol.public.multi_header import MultiHeader
from sealgate.protocol.public.problem import PROBLEMS, Problem
from sealgate.protocol.sealing.bhttp import Data, MessageDecoder, Request, ResponseHead
from sealgate.protocol.sealing.multi_recipient import MultiRequestSealer
from sealgate.protocol.sealing.replay import http_date

from ..gateway.test_blindness import Tap

openai = pytest.importorskip("openai", reason="the openai SDK (dev extra) is not installed")

MODEL = "sealgate-demo-echo"
GATEWAY_PATH = "/.well-known/ohttp-gateway"
SECRET = b"multi-recipient test affinity secret"


def _member_id(url: str) -> str:
    return hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:12]


def _prompt_first_on(target: str, ids: list[str]) -> list[dict[str, str]]:
    """Messages whose routing tag puts ``target`` first: the client's first candidate."""
    for i in range(500):
        messages = [{"role": "user", "content": f"prompt {i}"}]
        tag = routing_tag(SECRET, MODEL, {"model": MODEL, "messages": messages})
        assert tag is not None
        if rendezvous_order(tag, ids)[0] == target:
            return messages
    raise AssertionError("no prompt routes to the target")


def _failovers(gateway_url: str) -> float:
    text = httpx.get(gateway_url + "/metrics").text
    found = re.findall(r"^sealgate_gateway_multi_failovers_total\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(v) for v in found)


def _run_with_first_candidate_killed(
    recipients: int,
) -> tuple[list[str], int, int, float, str]:
    """SIGKILL the enclave every request names first, then send 6 requests through a tap.

    Returns the answering enclaves, the requests sent, the POSTs the tap saw (client ->
    gateway round trips) and the gateway's failover count. The gateway polls only at
    start-up, so it learns of the death from the data plane, not from a health poll that
    might or might not come first (which made the failover count a race).
    """
    with DemoFleet(3, gateway_poll_interval=3600) as demo:
        tap = Tap(demo.gateway_port)
        try:
            url = f"http://127.0.0.1:{tap.port}"
            with SecureClient(
                url,
                demo.policy(),
                cache_affinity=True,
                affinity_secret=SECRET,
                recipients=recipients,
                refresh_interval=3600,  # the client keeps believing in the killed enclave
            ) as secure:
                secure.verify()
                ids = sorted(secure.fleet.enclaves)
                victim = _member_id(demo.enclave_urls[0])
                assert victim in ids
                messages = _prompt_first_on(victim, ids)
                client = secure.openai(max_retries=0)  # any recovery is sealgate's own
                demo.kill_enclave(0)  # after verification: requests about to be sent
                tap.seen.clear()
                answerers = []
                for _ in range(6):
                    raw = client.chat.completions.with_raw_response.create(
                        model=MODEL, messages=messages
                    )
                    answer = raw.parse().choices[0].message.content
                    assert answer.endswith("You said: " + messages[0]["content"])
                    answerers.append(raw.headers[ENCLAVE_HEADER].split(";")[0])
                posts = bytes(tap.seen).count(b"POST " + GATEWAY_PATH.encode())
                return answerers, 6, posts, _failovers(demo.gateway_url), victim
        finally:
            tap.close()


def test_first_candidate_killed_multi_recipient_no_error_no_extra_round_trip():
    answerers, sent, posts, failovers, victim = _run_with_first_candidate_killed(recipients=3)
    assert posts == sent  # one client -> gateway request each: the gateway failed over
    assert failovers >= 1  # ...and it did: the first request went to the dead enclave
    assert len(answerers) == sent and victim not in answerers  # the real answerer is named


def test_first_candidate_killed_single_recipient_costs_a_client_round_trip():
    answerers, sent, posts, failovers, victim = _run_with_first_candidate_killed(recipients=1)
    assert posts > sent  # as today: a 503, then the client re-seals to another enclave
    assert failovers == 0
    assert len(answerers) == sent and victim not in answerers


# -- a malicious gateway: direct access to the enclaves ------------------------------------


def _keys(server_url: str) -> KeyConfig:
    doc = httpx.get(server_url + "/.well-known/ohttp-gateway")
    return decode_key_configs(doc.content)[0]


def _multi_request(configs: list[KeyConfig], text: str) -> tuple[bytes, MultiRequestSealer]:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}]})
    inner = (
        (b"content-type", b"application/json"),
        (b"date", http_date(time.time()).encode()),
    )
    message = Request(b"POST", b"https", b"", b"/v1/chat/completions", inner, body.encode())
    plaintext = message.to_bytes()
    plaintext += bytes(-len(plaintext) % 1024)
    sealer = MultiRequestSealer(configs)
    return sealer.header + sealer.seal_final(plaintext), sealer


def _post(url: str, wire: bytes, key_id: str | None) -> httpx.Response:
    headers = {"content-type": "message/sealgate-multi-req"}
    if key_id is not None:
        headers["sealgate-key-id"] = key_id
    return httpx.post(url + GATEWAY_PATH, content=wire, headers=headers)


def _open(response: httpx.Response, sealer: MultiRequestSealer) -> tuple[str, int, bytes]:
    """(answering fingerprint, inner status, inner body) of a sealed multi response."""
    assert response.status_code == 200
    assert response.headers["content-type"] == "message/sealgate-multi-res"
    opener = sealer.response_opener()
    decoder = MessageDecoder(request=False)
    status, body = 0, bytearray()
    events = []
    for plaintext in [*opener.push(response.content), opener.finish()]:
        events += decoder.push(plaintext)
    events += decoder.finish()
    for event in events:
        if isinstance(event, ResponseHead):
            status = event.status
        elif isinstance(event, Data):
            body += event.data
    assert opener.fingerprint is not None
    return opener.fingerprint, status, bytes(body)


@pytest.fixture
def three(fleet):
    servers = [fleet.enclave() for _ in range(3)]
    return servers, [_keys(s.url) for s in servers]


def test_sent_to_every_candidate_executes_at_most_once_each_then_replays_are_refused(three):
    servers, configs = three
    wire, sealer = _multi_request(configs, "once per candidate")
    executed = set()
    for server, config in zip(servers, configs, strict=True):
        fingerprint, status, body = _open(_post(server.url, wire, config.fingerprint), sealer)
        assert fingerprint == config.fingerprint  # the answerer is named, authenticated
        assert status == 200 and b"once per candidate" in body
        executed.add(fingerprint)
    assert len(executed) == 3  # N executions at most, one per candidate
    for server, config in zip(servers, configs, strict=True):
        for key_id in (config.fingerprint, None):  # the same bytes again, however addressed
            fingerprint, status, body = _open(_post(server.url, wire, key_id), sealer)
            assert fingerprint == config.fingerprint
            assert Problem.from_bytes(body).is_(PROBLEMS.REPLAYED_REQUEST), (status, body)


def test_gateway_never_fails_over_after_an_enclave_opened_the_request(fleet, three):
    servers, configs = three
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]))
    wire, sealer = _multi_request(configs, "through the gateway")
    _, status, _ = _open(_post(gw.url, wire, None), sealer)
    assert status == 200
    # A replay through the gateway: the candidate it picks refuses it sealed (outer 200),
    # and the gateway passes that on instead of trying the other candidates.
    _, _, body = _open(_post(gw.url, wire, None), sealer)
    assert Problem.from_bytes(body).is_(PROBLEMS.REPLAYED_REQUEST)
    assert _failovers(gw.url) == 0


def test_a_wrapped_key_spliced_from_another_request_is_refused(three):
    servers, configs = three
    wire_a, _ = _multi_request(configs, "request a")
    wire_b, sealer_b = _multi_request(configs, "request b")
    header_a, _ = MultiHeader.parse(wire_a) or (None, 0)
    header_b, size_b = MultiHeader.parse(wire_b) or (None, 0)
    assert header_a is not None and header_b is not None
    # Candidate 0's whole entry (enc + wrapped key) from request a, in request b.
    spliced = MultiHeader((header_a.candidates[0], *header_b.candidates[1:]))
    forged = spliced.to_bytes() + wire_b[size_b:]
    response = _post(servers[0].url, forged, configs[0].fingerprint)
    assert response.status_code == 400  # plaintext: refused before anything was opened
    assert Problem.from_bytes(response.content).is_(PROBLEMS.MALFORMED_REQUEST)
    # Only the wrapped key swapped (enc kept): it does not open under b's binding either.
    c0 = header_b.candidates[0]
    swapped = type(c0)(
        c0.fingerprint,
        c0.key_id,
        c0.kem_id,
        c0.kdf_id,
        c0.aead_id,
        c0.enc,
        header_a.candidates[0].wrapped_key,
    )
    forged = MultiHeader((swapped, *header_b.candidates[1:])).to_bytes() + wire_b[size_b:]
    assert _post(servers[0].url, forged, configs[0].fingerprint).status_code == 400
    # The untouched request still works afterwards: the refusals consumed nothing.
    fingerprint, status, _ = _open(_post(servers[0].url, wire_b, configs[0].fingerprint), sealer_b)
    assert (fingerprint, status) == (configs[0].fingerprint, 200)


def test_forwarding_to_a_non_candidate_is_refused(fleet, three):
    _, configs = three
    outsider = fleet.enclave()
    wire, _ = _multi_request(configs, "not for the outsider")
    for key_id in (_keys(outsider.url).fingerprint, None):
        response = _post(outsider.url, wire, key_id)
        assert response.status_code == 422
        assert Problem.from_bytes(response.content).is_(PROBLEMS.KEY_CONFIG)


def test_client_names_an_answering_candidate_it_verified(fleet, three):
    servers, _ = three
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]))
    policy = Policy.software(fleet.root.public_key().public_bytes_raw(), fleet.measurement)
    with SecureClient(gw.url, policy, recipients=3) as secure:
        client = secure.openai(max_retries=0)
        for i in range(6):
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": f"q{i}"}]
            )
            assert raw.parse().choices[0].message.content.endswith(f"You said: q{i}")
            enclave, key = raw.headers[ENCLAVE_HEADER].split("; key=")
            verified = secure.fleet.enclaves[enclave]
            config = next(k for k in verified.keys if k.fingerprint == key)
            assert config.post_quantum  # wrapped to each candidate's hybrid key


def test_gateway_fails_over_on_refusals_before_opening(fleet):
    """A full first candidate (503) and one that no longer holds its key (422): the gateway
    tries the next with the same bytes; the client sees one answer, from the third."""
    full = fleet.enclave(config=EnclaveConfig(max_concurrent_requests=1))
    fleet.built[0].slots.take()  # as if one long stream held its only engine slot
    rotated = fleet.enclave(config=EnclaveConfig(key_grace=0))
    good = fleet.enclave()
    configs = [_keys(full.url), _keys(rotated.url), _keys(good.url)]
    gw = fleet.gateway(Discovery(static=[full.url, rotated.url, good.url]))
    fleet.built[1].rotate_keys()  # its old key dies at once; the gateway still lists it
    wire, sealer = _multi_request(configs, "third time lucky")
    response = _post(gw.url, wire, None)
    fingerprint, status, body = _open(response, sealer)
    assert fingerprint == configs[2].fingerprint and status == 200
    assert b"third time lucky" in body
    text = httpx.get(gw.url + "/metrics").text
    assert 'reason="refused_503"} 1.0' in text
    # The rotated enclave refuses the old key (422) - unless the gateway's poller already
    # saw the rotation, and then it was not asked at all.
    assert 'reason="refused_422"} 1.0' in text or _failovers(gw.url) == 1.0


@pytest.mark.parametrize("forgery", ["non-candidate", "other-request"])
def test_client_refuses_a_response_no_candidate_sealed_for_this_request(trio, tamperer, forgery):
    from sealgate.client import ResponseIntegrityError
    from starlette.responses import Response

    gw, policy = trio
    earlier: list[bytes] = []

    def forge(request, body):
        if request.method != "POST":
            return None
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        upstream = httpx.post(gw.url + request.url.path, headers=headers, content=body)
        content = upstream.content
        if forgery == "non-candidate":
            content = bytes(8) + content[8:]  # names a key that is not a candidate
        elif earlier:
            content = earlier[0]  # a genuine candidate's answer, to another request
        else:
            earlier.append(content)
        return Response(content, 200, media_type="message/sealgate-multi-res")

    tamperer.answer = forge
    with (
        SecureClient(tamperer.url, policy, recipients=3) as secure,
        secure.httpx_client() as http,
    ):
        if forgery == "other-request":
            first = http.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "a"}]}
            )
            assert first.status_code == 200
        with pytest.raises(ResponseIntegrityError):
            http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "b"}]})
