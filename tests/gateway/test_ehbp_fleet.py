"""Tinfoil's own EHBP clients (PyPI ``tinfoil-ehbp``, npm ``ehbp``) through a gateway fleet.

EHBP requests carry no key id, so the gateway sends key discovery and un-keyed sealed
requests to one deterministic primary enclave, and replays a buffered body on the other
enclaves only when an enclave refused it with EHBP's key-config 422 before processing it.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sealgate.enclave.engines import ASGIEngine
from sealgate.gateway import Discovery, GatewayConfig
from sealgate.gateway.fleet import Fleet
from sealgate.protocol.public.keyconfig import KeyConfig
from sealgate.protocol.sealing.hpke import PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..loopback import LoopbackFleet

EHBP_NPM_VERSION = "0.1.7"
NODE_SCRIPT = Path(__file__).resolve().parent.parent / "interop" / "ehbp_client.mjs"
REQUESTS = 30
ROTATE_AT = 10  # the key-discovery enclave rotates its key before this request
REDISCOVER_AT = 20  # the client fetches the (new) key again before this request


def _three_enclaves(fleet: LoopbackFleet, config: GatewayConfig | None = None) -> Any:
    servers = [fleet.enclave() for _ in range(3)]
    return fleet.gateway(
        Discovery(static=[s.url for s in servers]), config or GatewayConfig(poll_interval=0.2)
    )


def _discovered_key(http: Any, gateway_url: str) -> KeyConfig:
    response = http.get(gateway_url + "/.well-known/hpke-keys")
    assert response.status_code == 200
    return KeyConfig.from_bytes(response.content)


def _holder(fleet: LoopbackFleet, fingerprint: str) -> int:
    """Index of the enclave holding the key ``fingerprint``."""
    return next(i for i, b in enumerate(fleet.built) if b.keyring.lookup(fingerprint) is not None)


def _rotate_discovery_enclave(fleet: LoopbackFleet, gw: Any, http: Any) -> None:
    """Rotate the key of the enclave the gateway answers key discovery from; re-poll."""
    current = _discovered_key(http, gw.url).fingerprint
    fleet.built[_holder(fleet, current)].rotate_keys()  # the old key stays in its grace period
    gw.refresh()  # the gateway sees the new key list now, not after its poll interval


def _requests_served(fleet: LoopbackFleet, outcome: str, expected: int | None = None) -> list[int]:
    """Per enclave, EHBP requests that ended with ``outcome``.

    An enclave counts a request just after sending its last byte, so with ``expected``
    this waits (up to a generous deadline) until the counts add up to it.
    """
    deadline = time.monotonic() + 10
    while True:
        counts = [int(b.metrics.requests.labels("ehbp", outcome)._value.get()) for b in fleet.built]
        if expected is None or sum(counts) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.01)


# -- the Python client (tinfoil-ehbp, dev extra) -----------------------------------------


def _python_request(ehbp: Any, client: Any, i: int) -> str:
    """One chat completion (even: buffered, odd: streamed); 'ok' or what went wrong."""
    body = {"model": "sealgate-demo-echo", "messages": [{"role": "user", "content": f"req {i}"}]}
    try:
        if i % 2 == 0:
            response = client.post("/v1/chat/completions", json_body=body)
            if response.status_code != 200:
                return f"status {response.status_code}"
            text = response.json()["choices"][0]["message"]["content"]
        else:
            with client.stream(
                "POST", "/v1/chat/completions", json_body={**body, "stream": True}
            ) as streamed:
                if streamed.status_code != 200:
                    return f"status {streamed.status_code}"
                text = _sse_text(b"".join(streamed.iter_bytes()))
    except (ehbp.EHBPError, httpx.HTTPError) as error:
        return f"{type(error).__name__}: {error}"
    return "ok" if text.endswith(f"You said: req {i}") else f"wrong answer {text!r}"


def _client_key(client: Any) -> str:
    """Fingerprint of the key a tinfoil-ehbp client seals to."""
    return KeyConfig.from_bytes(client.server_identity.marshal_public_config()).fingerprint


def _sse_text(body: bytes) -> str:
    parts = []
    for line in body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            choices = json.loads(line[6:])["choices"]
            if choices:
                parts.append(choices[0]["delta"].get("content", ""))
    return "".join(parts)


def test_tinfoil_python_client_30_of_30_through_three_enclaves_with_a_rotation(fleet, http):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    gw = _three_enclaves(fleet)
    client = ehbp.Client.discover(gw.url)
    first_key = _client_key(client)
    outcomes = []
    for i in range(REQUESTS):
        if i == ROTATE_AT:
            _rotate_discovery_enclave(fleet, gw, http)
        if i == REDISCOVER_AT:
            client = ehbp.Client.discover(gw.url)
            rotated = fleet.built[_holder(fleet, first_key)].keyring.current.fingerprint
            assert _client_key(client) == rotated != first_key  # the same enclave, new key
        outcomes.append(_python_request(ehbp, client, i))
    failures = {i: o for i, o in enumerate(outcomes) if o != "ok"}
    assert not failures, f"{REQUESTS - len(failures)}/{REQUESTS} succeeded: {failures}"
    served = _requests_served(fleet, "ok", REQUESTS)
    assert sum(served) == REQUESTS  # each one processed exactly once


# -- the npm client (ehbp, installed into pytest's cache) ----------------------------------


@pytest.fixture(scope="session")
def npm_ehbp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose node_modules holds ehbp@0.1.7 (installed once into pytest's cache)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the npm ehbp client")
    name = f"npm-ehbp-{EHBP_NPM_VERSION}"
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    target = Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)
    installed = target / "node_modules" / "ehbp" / "package.json"
    if installed.is_file() and json.loads(installed.read_text())["version"] == EHBP_NPM_VERSION:
        return target
    try:
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(target),
                "--no-audit",
                "--no-fund",
                "--fetch-retries=1",
                "--fetch-timeout=30000",
                f"ehbp@{EHBP_NPM_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        output = getattr(error, "stderr", b"") or b""
        pytest.skip(f"npm install ehbp@{EHBP_NPM_VERSION} failed: {output.decode()[-500:]}")
    return target


class NodeClient:
    """The node script as a child process; its stdout lines arrive through a queue."""

    def __init__(self, ehbp_dir: Path, base_url: str, stderr_path: Path) -> None:
        self._stderr = stderr_path.open("w")
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(
            [
                "node",
                str(NODE_SCRIPT),
                str(ehbp_dir),
                base_url,
                str(REQUESTS),
                str(ROTATE_AT),
                str(REDISCOVER_AT),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def events(self, timeout: float = 60) -> Iterator[dict[str, Any]]:
        """Each JSON line until the script exits; fails if it goes silent for ``timeout``."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"node client silent for {timeout}s: {self.stderr_path.read_text()}")
            if line is None:
                return
            yield json.loads(line)

    def resume(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


@pytest.fixture
def node_client(npm_ehbp: Path, tmp_path: Path) -> Iterator[Any]:
    """Start the node script against a base URL (killed after the test)."""
    started: list[NodeClient] = []

    def start(base_url: str) -> NodeClient:
        client = NodeClient(npm_ehbp, base_url, tmp_path / f"node-{len(started)}.stderr")
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


def test_npm_ehbp_client_30_of_30_through_three_enclaves_with_a_rotation(fleet, http, node_client):
    gw = _three_enclaves(fleet)
    node = node_client(gw.url)
    results: list[dict[str, Any]] = []
    for event in node.events():
        if "paused" in event:
            _rotate_discovery_enclave(fleet, gw, http)
            node.resume()
        else:
            results.append(event)
    assert node.proc.wait(timeout=60) == 0, node.stderr_path.read_text()
    assert len(results) == REQUESTS
    failures = {
        r["i"]: r
        for r in results
        if not (r.get("ok") and r["content"].endswith(f"You said: request {r['i']}"))
    }
    assert not failures, f"{REQUESTS - len(failures)}/{REQUESTS} succeeded: {failures}"
    assert sum(_requests_served(fleet, "ok", REQUESTS)) == REQUESTS


# -- the primary: one stable enclave for key discovery --------------------------------------


def _fleet_of(urls: list[str]) -> Fleet:
    fleet = Fleet()
    fleet.set_members(urls)
    for member in fleet.members.values():
        fleet.update(member, (member.id,), 0.0, None)
    return fleet


def test_primary_is_the_lowest_id_and_changes_only_when_it_goes_unhealthy():
    fleet = _fleet_of([f"http://127.0.0.1:{port}" for port in range(9001, 9006)])
    by_id = sorted(fleet.members.values(), key=lambda m: m.id)
    first = fleet.primary().member
    assert first is by_id[0]
    fleet.fail(by_id[1], "poll failed")  # another member failing changes nothing
    assert fleet.primary().member is first
    fleet.fail(first, "poll failed")
    second = fleet.primary().member
    assert second is by_id[2]  # the lowest id among the healthy ones
    fleet.update(first, (first.id,), 0.0, None)
    assert fleet.primary().member is second  # sticky: a recovered member does not take over
    # a request the new primary refused is offered to the former primary first
    assert fleet.fallback([second]) is first
    fleet.set_members([m.url for m in fleet.members.values() if m is not second])
    assert fleet.primary().member is first


def test_fallback_offers_every_healthy_member_once_then_none():
    fleet = _fleet_of([f"http://127.0.0.1:{port}" for port in range(9001, 9004)])
    tried = [fleet.primary().member]
    while (member := fleet.fallback(tried)) is not None:
        assert member not in tried and member.healthy
        tried.append(member)
    assert len(tried) == 3


def test_key_discovery_through_the_gateway_always_comes_from_the_primary(fleet, http):
    gw = _three_enclaves(fleet)
    document = http.get(gw.url + "/.well-known/sealgate-fleet").json()
    primary_keys = next(e["keys"] for e in document["enclaves"] if e["id"] == document["primary"])
    seen = {_discovered_key(http, gw.url).fingerprint for _ in range(20)}
    assert seen == {primary_keys[0]}
    assert len({b.keyring.current.fingerprint for b in fleet.built}) == 3


def test_primary_that_goes_down_is_replaced_and_discovery_follows(fleet, http):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    gw = _three_enclaves(fleet)
    before = _discovered_key(http, gw.url).fingerprint
    fleet.enclaves[_holder(fleet, before)].stop()
    gw.refresh()  # the poll fails: the primary leaves the routing table
    after = _discovered_key(http, gw.url).fingerprint
    assert after != before
    client = ehbp.Client.discover(gw.url)
    assert [_python_request(ehbp, client, i) for i in range(4)] == ["ok"] * 4


# -- replay after a key-config 422 -----------------------------------------------------------


def _non_primary_keys(fleet: LoopbackFleet, gw: Any, http: Any) -> list[KeyConfig]:
    primary = _discovered_key(http, gw.url).fingerprint
    return [b.keyring.current.config for b in fleet.built if b.keyring.lookup(primary) is None]


def test_request_sealed_to_another_enclaves_key_is_replayed_on_it(fleet, http):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    gw = _three_enclaves(fleet)
    others = _non_primary_keys(fleet, gw, http)
    assert len(others) == 2
    for key in others:  # e.g. a client that fetched its key before the primary changed
        client = ehbp.Client.with_config(gw.url, key.to_bytes())
        assert [_python_request(ehbp, client, i) for i in range(3)] == ["ok"] * 3
        # several frames, sent chunked: the enclave refuses after the first one, while
        # the client is still sending; the gateway keeps reading and replays all of it
        big = {"messages": [{"role": "user", "content": "x" * 300_000 + " big"}]}
        response = client.post("/v1/chat/completions", json_body=big)
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"].endswith(" big")
    served = _requests_served(fleet, "ok", 8)
    assert sorted(served) == [0, 4, 4]  # processed once each, by the enclaves holding the keys
    refused = _requests_served(fleet, "unknown_key", 8)
    assert sum(refused) >= 8  # the primary refused each one before the engine saw it


def test_clients_of_a_former_primary_are_replayed_on_it_first(fleet, http):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    gw = _three_enclaves(fleet)
    client = ehbp.Client.discover(gw.url)
    old_key = _discovered_key(http, gw.url)

    async def flap() -> str:
        routing = gw.gateway.fleet
        old = routing.primary().member
        routing.fail(old, "poll failed")  # one missed poll: another member becomes primary
        new = routing.primary().member
        await gw.gateway.poller.poll(old)  # back at the next poll; the primary stays
        assert old.healthy and routing.primary().member is new
        return new.id

    new_primary = gw.call(flap())
    assert http.get(gw.url + "/.well-known/sealgate-fleet").json()["primary"] == new_primary
    assert _discovered_key(http, gw.url) != old_key
    assert [_python_request(ehbp, client, i) for i in range(4)] == ["ok"] * 4
    old = _holder(fleet, old_key.fingerprint)
    assert _requests_served(fleet, "ok", 4)[old] == 4
    refused = _requests_served(fleet, "unknown_key", 4)
    # only the new primary refused them: the former one was offered each request next
    assert refused[old] == 0 and sorted(refused) == [0, 0, 4]


def test_request_sealed_to_a_key_no_enclave_holds_gets_the_key_config_problem(fleet, http):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    gw = _three_enclaves(fleet)
    stranger = PrivateKey.generate().key_config(7)
    client = ehbp.Client.with_config(gw.url, stranger.to_bytes())
    with pytest.raises(ehbp.KeyConfigMismatchError):
        client.post("/v1/chat/completions", json_body={"messages": []})
    assert _requests_served(fleet, "unknown_key", 3) == [1, 1, 1]  # each enclave once
    # the connection stays usable: a request sealed to the primary's key goes through
    assert _python_request(ehbp, ehbp.Client.discover(gw.url), 0) == "ok"


def test_attempts_are_bounded_by_configuration(fleet, http):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    gw = _three_enclaves(fleet, GatewayConfig(poll_interval=0.2, ehbp_max_attempts=2))
    stranger = PrivateKey.generate().key_config(7)
    client = ehbp.Client.with_config(gw.url, stranger.to_bytes())
    with pytest.raises(ehbp.KeyConfigMismatchError):
        client.post("/v1/chat/completions", json_body={"messages": []})
    assert sum(_requests_served(fleet, "unknown_key", 2)) == 2


def test_body_larger_than_the_replay_limit_goes_to_the_primary_only(fleet, http):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    gw = _three_enclaves(fleet, GatewayConfig(poll_interval=0.2, ehbp_replay_bytes=1024))
    primary = _holder(fleet, _discovered_key(http, gw.url).fingerprint)
    key = _non_primary_keys(fleet, gw, http)[0]
    client = ehbp.Client.with_config(gw.url, key.to_bytes())
    assert _python_request(ehbp, client, 0) == "ok"  # small: replayed on the key's holder
    assert sum(_requests_served(fleet, "ok", 1)) == 1
    before = _requests_served(fleet, "unknown_key")
    with pytest.raises(ehbp.KeyConfigMismatchError):
        client.post("/v1/chat/completions", json_body={"messages": [], "pad": "x" * 4096})
    expected = [n + (i == primary) for i, n in enumerate(before)]  # the primary refused it
    assert _requests_served(fleet, "unknown_key", sum(expected)) == expected


def _engine_answering_422(calls: list[bytes]) -> ASGIEngine:
    """An engine that rejects every chat request with its own (sealed) 422."""

    async def chat(request: Request) -> Response:
        calls.append(await request.body())
        return JSONResponse({"error": "invalid request"}, status_code=422)

    return ASGIEngine(
        Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]),
        {"engine": "rejecting"},
    )


def test_a_422_from_the_engine_is_sealed_and_never_replayed(fleet, http):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    calls: list[bytes] = []
    servers = [fleet.enclave(_engine_answering_422(calls)) for _ in range(3)]
    gw = fleet.gateway(Discovery(static=[s.url for s in servers]))
    for key in [_discovered_key(http, gw.url), *_non_primary_keys(fleet, gw, http)]:
        client = ehbp.Client.with_config(gw.url, key.to_bytes())
        response = client.post("/v1/chat/completions", json_body={"messages": ["once"]})
        assert response.status_code == 422  # the engine's answer, decrypted by the client
        assert response.json() == {"error": "invalid request"}
    assert len(calls) == 3  # every request reached an engine exactly once


def test_ehbp_client_naming_its_key_is_routed_straight_to_the_holder(fleet, http):
    ehbp = pytest.importorskip("ehbp", reason="tinfoil-ehbp (dev extra) is not installed")
    gw = _three_enclaves(fleet)
    for key in _non_primary_keys(fleet, gw, http):
        client = ehbp.Client.with_config(gw.url, key.to_bytes())
        body = {"messages": [{"role": "user", "content": "direct"}]}
        response = client.post(
            "/v1/chat/completions", json_body=body, headers={"Sealgate-Key-Id": key.fingerprint}
        )
        assert response.status_code == 200
    assert sorted(_requests_served(fleet, "ok", 2)) == [0, 1, 1]
    assert _requests_served(fleet, "unknown_key") == [0, 0, 0]  # no detour via the primary


def test_a_body_arriving_in_the_same_read_as_its_head_is_not_counted_as_head(fleet):
    """Large sealed bodies often arrive with their head in one read: that is not a 431."""
    server = fleet.enclave()
    gw = fleet.gateway(Discovery(static=[server.url]))
    body = b"x" * 40_000  # far above max_header_bytes (16 KiB)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-length: %d\r\n"
        b"sealgate-key-id: %s\r\n\r\n" % (len(body), b"ab" * 8)
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as conn:
        conn.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 421 ")  # routed (unknown key), not refused as a head
