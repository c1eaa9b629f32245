"""The attacks, as data: one :class:`Attack` per row of the report.

A *client* attack is a pair of hooks for the adversarial proxy plus what the threat model
expects of the client (refuse the tampered answer, or deliver the sealed request intact);
the same entry runs against the sealgate SDK, a weakened SDK in the tests, or any program
given with ``--client-cmd``. *Gateway* and *enclave* attacks are small functions over a
URL. Adding an attack is adding one entry to :data:`CATALOGUE`.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from ...protocol.public.headers import KEY_ID, VERIFIED_ENCLAVE
from ...protocol.public.keyconfig import decode_key_configs, fingerprint_of
from ...protocol.public.modes import EHBP
from ...protocol.public.paths import ATTESTATION, EHBP_KEYS, FLEET, HEALTH, METRICS, OHTTP_GATEWAY
from ..headers import NOT_FORWARDED
from .proxy import SEALED_PATH, AdversarialProxy, Exchange, join_chunks, split_chunks

__all__ = [
    "short",
    "Attack",
    "CATALOGUE",
    "Expect",
    "Outcome",
    "Target",
    "Reply",
    "Result",
    "Subject",
    "Context",
]

#: Marks the prompt and the Authorization value, so a leak anywhere is a substring search.
#: The request line every raw (socket-level) attack starts with.
_POST = b"POST " + OHTTP_GATEWAY.encode() + b" HTTP/1.1\r\n"
SECRET = "redteam-secret-7f3a"  # noqa: S105 - a marker to search for, not a credential


class Target(StrEnum):
    """The party an attack is aimed at (whose defence it tests)."""

    CLIENT = "client"
    GATEWAY = "gateway"
    ENCLAVE = "enclave"


class Expect(StrEnum):
    """What a client attack may end in, short of being caught."""

    #: The client must not accept the answer.
    REFUSE = "refuse"
    #: It may succeed only with the true answer.
    INTACT = "intact"
    #: It must not seal anything to a key the directory forged.
    NO_SEND = "no-send"


class Outcome(StrEnum):
    CAUGHT = "caught"
    NOT_CAUGHT = "not caught"
    LIMIT = "not caught (limit of the protocol)"
    NOT_APPLICABLE = "not applicable"


def short(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    evidence: str


@dataclass(slots=True)
class Reply:
    """What a client under test did with one request."""

    status: str  # "ok" (it accepted an answer), "refused" (a clean error), "crashed"
    text: str = ""
    detail: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Subject(Protocol):
    """A client under test: the SDK (in-process) or a ``--client-cmd`` program."""

    name: str
    ehbp: bool

    def request(self, base_url: str, prompt: str, stream: bool) -> Reply: ...


@dataclass
class Context:
    """Everything an attack may use. ``proxy`` sits in front of ``gateway_url``."""

    proxy: AdversarialProxy | None
    gateway_url: str | None
    enclave_urls: list[str] = field(default_factory=list)
    subject: Subject | None = None
    #: Bounds for attacks on deployed systems.
    max_requests: int = 40
    deadline: float = 20.0
    #: Log lines written so far by the SDK in this process and by the local gateway.
    logs: Callable[[], list[str]] | None = None
    #: An attestation document of an enclave running other code, signed by the trusted root.
    other_measurement: dict[str, Any] | None = None


Hook = Callable[[Exchange], None]


@dataclass(frozen=True, slots=True)
class Attack:
    id: str
    title: str
    #: The threat-model sentence this row checks (README, "Threat model").
    promise: str
    target: Target
    on_request: Hook | None = None
    on_response: Hook | None = None
    expect: Expect = Expect.REFUSE
    stream: bool = True
    #: In EHBP this is a limit the protocol documents (README, "Known limits").
    ehbp_limit: bool = False
    ehbp_applicable: bool = True
    run: Callable[[Context], Result] | None = None
    #: Waits on a server deadline: runs in the background, beside the other attacks.
    slow: bool = False


# -- response tampering ------------------------------------------------------------------


def _sealed_response(hook: Callable[[Exchange], None]) -> Hook:
    def apply(exchange: Exchange) -> None:
        if exchange.sealed and exchange.status == 200:
            hook(exchange)
            exchange.headers[APPLIED] = "1"  # recorded, never sent: the request is gone

    return apply


def _is_ehbp(exchange: Exchange) -> bool:
    return any(k.lower() == EHBP.response_nonce_header.lower() for k in exchange.response_headers)


def _ehbp_frames(body: bytes) -> list[bytes]:
    frames = []
    while len(body) >= 4:
        size = int.from_bytes(body[:4], "big")
        frames.append(body[: 4 + size])
        body = body[4 + size :]
    return frames


def _edit_chunks(edit: Callable[[list[bytes]], list[bytes]], *, keep_final: bool = True) -> Hook:
    """Apply ``edit`` to the list of sealed chunks (OHTTP chunks, or EHBP frames)."""

    def apply(exchange: Exchange) -> None:
        if _is_ehbp(exchange):
            exchange.response_body = b"".join(edit(_ehbp_frames(exchange.response_body)))
            return
        nonce, chunks, final = split_chunks(
            exchange.body, exchange.response_body, multi=exchange.multi
        )
        exchange.response_body = join_chunks(nonce, edit(chunks), final if keep_final else None)

    return _sealed_response(apply)


def _flip(exchange: Exchange) -> None:
    body = bytearray(exchange.response_body)
    body[len(body) // 2] ^= 0x01
    exchange.response_body = bytes(body)


def _drop_final(exchange: Exchange) -> None:
    if _is_ehbp(exchange):  # EHBP has no final marker: drop the last frame
        frames = _ehbp_frames(exchange.response_body)
        exchange.response_body = b"".join(frames[:-1])
        return
    nonce, chunks, _ = split_chunks(exchange.body, exchange.response_body, multi=exchange.multi)
    exchange.response_body = join_chunks(nonce, chunks, None)


def _cut_inside(exchange: Exchange) -> None:
    exchange.response_body = exchange.response_body[: len(exchange.response_body) * 2 // 3]


def _swap(chunks: list[bytes]) -> list[bytes]:
    if len(chunks) >= 3:
        chunks[1], chunks[2] = chunks[2], chunks[1]
    return chunks


def _duplicate(chunks: list[bytes]) -> list[bytes]:
    return chunks[:2] + chunks[1:] if len(chunks) >= 2 else chunks + chunks


def _drop_middle(chunks: list[bytes]) -> list[bytes]:
    return chunks[:1] + chunks[2:] if len(chunks) >= 3 else chunks[:-1]


def _plaintext_json(exchange: Exchange) -> None:
    fake = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "FORGED"}}],
    }
    exchange.response_body = json.dumps(fake).encode()
    exchange.response_headers = {"content-type": "application/json"}


def _plaintext_sse(exchange: Exchange) -> None:
    event = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "FORGED"}}],
    }
    exchange.response_body = b"data: " + json.dumps(event).encode() + b"\n\ndata: [DONE]\n\n"
    exchange.response_headers = {"content-type": "text/event-stream"}


def _status(code: int) -> Hook:
    def apply(exchange: Exchange) -> None:
        exchange.status = code

    return apply


def _forge_header(exchange: Exchange) -> None:
    exchange.response_headers[VERIFIED_ENCLAVE] = "forged; key=forged"


def _fake_refusal(code: int) -> Hook:
    def apply(exchange: Exchange) -> None:
        if exchange.sealed:
            body = json.dumps({"type": "about:blank", "title": "forged", "status": code})
            exchange.answer(code, body.encode(), "application/problem+json")

    return apply


# -- request tampering -------------------------------------------------------------------


def _sealed_request(hook: Callable[[Exchange], None]) -> Hook:
    def apply(exchange: Exchange) -> None:
        if exchange.sealed:
            hook(exchange)

    return apply


def _inject_headers(exchange: Exchange) -> None:
    exchange.headers["Authorization"] = "Bearer stolen"
    exchange.headers["X-Injected"] = "1"
    exchange.target += ("&" if "?" in exchange.target else "?") + "model=evil"


def _rewrite_target(exchange: Exchange) -> None:
    if exchange.path == SEALED_PATH:
        exchange.target = "/v1/chat/completions"
    else:
        exchange.target = "/v1/embeddings"


def _flip_request(exchange: Exchange) -> None:
    body = bytearray(exchange.body)
    if body:
        body[-1] ^= 0x01
    exchange.body = bytes(body)


def _downgrade(exchange: Exchange) -> None:
    if exchange.path == SEALED_PATH:
        exchange.answer(404, b'{"detail": "use EHBP"}', "application/problem+json")


# -- fleet-directory lies ----------------------------------------------------------------


def _directory(edit: Callable[[dict[str, Any]], None]) -> Hook:
    def apply(exchange: Exchange) -> None:
        if exchange.path == FLEET and exchange.status == 200:
            document = json.loads(exchange.response_body)
            edit(document)
            exchange.response_body = json.dumps(document).encode()

    return apply


FORGED_KEY = "deadbeefdeadbeef"
#: Marks (in the recorded request) an exchange whose response a hook tampered with.
APPLIED = "x-redteam-applied"


def _unbound_key(document: dict[str, Any]) -> None:
    for entry in document.get("enclaves", []):
        entry["keys"] = [FORGED_KEY]


def _swap_documents(document: dict[str, Any]) -> None:
    entries = document.get("enclaves", [])
    if len(entries) >= 2:
        entries[0]["attestation"], entries[1]["attestation"] = (
            entries[1]["attestation"],
            entries[0]["attestation"],
        )
        entries[0]["keys"], entries[1]["keys"] = entries[1]["keys"], entries[0]["keys"]
        for entry in entries[2:]:
            entry["healthy"] = False


def _foreign_root(document: dict[str, Any]) -> None:
    root = base64.b64encode(os.urandom(32)).decode()
    for entry in document.get("enclaves", []):
        entry["attestation"].setdefault("collateral", {})["software_root"] = root


def _garbage(document: dict[str, Any]) -> None:
    for index, entry in enumerate(document.get("enclaves", [])):
        entry["load"] = float("nan") if index % 2 else 1e308
        entry["id"] = "x" * 5000 if index == 0 else entry["id"]
        entry["keys"] = "not-a-list" if index == 1 else entry["keys"]
    document["enclaves"] = [*document.get("enclaves", []), None, 7, {"id": []}]


def _stale(document: dict[str, Any]) -> None:
    for entry in document.get("enclaves", []):
        attestation = entry.get("attestation", {})
        attestation["evidence"] = base64.b64encode(b'{"claims": "", "signature": ""}').decode()


def _gateway_key() -> tuple[str, bytes]:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from ...protocol.public.keyconfig import KeyConfig

    public = X25519PrivateKey.generate().public_key().public_bytes_raw()
    config = KeyConfig.for_x25519(public)
    return config.fingerprint, config.to_bytes()


GATEWAY_KEY, GATEWAY_KEY_CONFIG = _gateway_key()


def _substitute_key(exchange: Exchange) -> None:
    """Hand out a key the gateway holds; answer (never forward) whatever is sealed to it."""
    if exchange.path == EHBP_KEYS:
        exchange.answer(200, GATEWAY_KEY_CONFIG, "application/ohttp-keys")
    elif any(k.lower() == EHBP.encapsulated_key_header.lower() for k in exchange.headers):
        exchange.headers["x-redteam-sealed-to-gateway"] = "1"
        exchange.answer(502, b'{"detail": "kept by the gateway"}', "application/problem+json")


# -- custom client attacks ----------------------------------------------------------------


def _need(ctx: Context) -> tuple[AdversarialProxy, Subject]:
    assert ctx.proxy is not None and ctx.subject is not None
    return ctx.proxy, ctx.subject


def _replayed_response(ctx: Context) -> Result:
    proxy, subject = _need(ctx)
    proxy.reset()
    first = subject.request(proxy.url, f"first {SECRET}", True)
    captured = [e for e in proxy.exchanges if e.sealed and e.status == 200]
    if first.status != "ok" or not captured:
        return Result(Outcome.NOT_APPLICABLE, f"no sealed answer to capture ({first.detail})")
    old = captured[-1]

    def serve_old(exchange: Exchange) -> None:
        if exchange.sealed:
            exchange.status = old.status
            exchange.response_headers = dict(old.response_headers)
            exchange.response_body = old.response_body

    proxy.reset(on_response=serve_old)
    second = subject.request(proxy.url, f"second {SECRET}", True)
    if second.status == "ok":
        return Result(
            Outcome.NOT_CAUGHT, f"accepted the answer to another request: {second.text[-40:]!r}"
        )
    return Result(_refusal_outcome(second), f"refused: {short(second.detail, 90)}")


def _refusal_outcome(reply: Reply) -> Outcome:
    return Outcome.NOT_CAUGHT if reply.status == "crashed" else Outcome.CAUGHT


def _swapped_concurrent(ctx: Context) -> Result:
    """Two requests in flight at once; each gets the other's sealed response."""
    import asyncio
    import threading

    proxy, subject = _need(ctx)
    waiting: list[tuple[Exchange, bytes]] = []
    swapped: list[bool] = []

    async def swap(exchange: Exchange) -> None:
        if not (exchange.sealed and exchange.status == 200):
            return
        waiting.append((exchange, exchange.response_body))
        for _ in range(200):  # the other response, for up to 10 s
            if len(waiting) >= 2:
                break
            await asyncio.sleep(0.05)
        mine = [i for i, (held, _) in enumerate(waiting[:2]) if held is exchange]
        if len(waiting) >= 2 and mine:
            exchange.response_body = waiting[1 - mine[0]][1]
            swapped.append(True)

    proxy.reset(on_response=swap)
    replies: list[Reply] = []
    threads = [
        threading.Thread(target=lambda p=p: replies.append(subject.request(proxy.url, p, False)))
        for p in (f"left {SECRET}", f"right {SECRET}")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if not swapped:
        return Result(
            Outcome.NOT_APPLICABLE,
            "the two requests were not in flight together",
        )
    accepted = [r for r in replies if r.status == "ok"]
    if accepted:
        return Result(
            Outcome.NOT_CAUGHT, f"accepted the other request's answer: {accepted[0].text[-40:]!r}"
        )
    return Result(_refusal_outcome(replies[0]), f"both refused: {short(replies[0].detail, 80)}")


def _replay_at_enclave(ctx: Context) -> Result:
    proxy, subject = _need(ctx)
    proxy.reset()
    reply = subject.request(proxy.url, f"replay {SECRET}", False)
    captured = [e for e in proxy.exchanges if e.sealed and e.status == 200]
    if reply.status != "ok" or not captured:
        return Result(Outcome.NOT_APPLICABLE, f"no sealed request to capture ({reply.detail})")
    original = captured[-1]
    before = sum(_metric(url, "sealgate_enclave_replays_total") for url in ctx.enclave_urls)
    headers = {k: v for k, v in original.headers.items() if k.lower() not in NOT_FORWARDED}
    assert ctx.gateway_url is not None
    answers = [
        httpx.post(
            ctx.gateway_url + original.target, content=original.body, headers=headers, timeout=20
        )
        for _ in range(3)
    ]
    after = sum(_metric(url, "sealgate_enclave_replays_total") for url in ctx.enclave_urls)
    codes = [a.status_code for a in answers]
    if original.path != SEALED_PATH:  # EHBP: nothing remembers a request
        processed = sum(1 for a in answers if a.status_code == 200)
        return Result(Outcome.LIMIT, f"EHBP: {processed}/3 replays answered 200 (processed again)")
    if after - before >= 3:
        return Result(
            Outcome.CAUGHT, f"3 replays refused by the enclave's guard (statuses {codes})"
        )
    return Result(
        Outcome.NOT_CAUGHT, f"replay counter rose by {after - before} of 3 (statuses {codes})"
    )


def _metric(url: str, name: str) -> float:
    try:
        text = httpx.get(url + METRICS, timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def _token_lengths(ctx: Context) -> Result:
    proxy, subject = _need(ctx)
    sizes = []
    for prompt in ("a b c d", "Supercalifragilistic hippopotamus exuberance xylophone"):
        proxy.reset()
        reply = subject.request(proxy.url, prompt, True)
        sealed = [e for e in proxy.exchanges if e.sealed and e.status == 200]
        if reply.status != "ok" or not sealed:
            return Result(Outcome.NOT_APPLICABLE, f"no sealed stream to observe ({reply.detail})")
        exchange = sealed[-1]
        if _is_ehbp(exchange):
            sizes.append([len(f) - 4 for f in _ehbp_frames(exchange.response_body)])
        else:
            _, chunks, final = split_chunks(
                exchange.body, exchange.response_body, multi=exchange.multi
            )
            sizes.append([len(c) for c in chunks] + [len(final or b"")])
    note = "; ".join(
        f"answer {i + 1}: {len(s)} chunks of sizes {sorted(set(s))}" for i, s in enumerate(sizes)
    )
    if all(len(set(s[1:-2])) <= 1 for s in sizes):
        return Result(Outcome.LIMIT, f"chunk counts leak, lengths padded; {note}")
    return Result(Outcome.NOT_CAUGHT, f"token lengths visible; {note}")


def _plaintext_on_the_wire(ctx: Context) -> Result:
    proxy, subject = _need(ctx)
    proxy.reset()
    reply = subject.request(proxy.url, f"wire {SECRET}", False)
    wire = bytes(proxy.wire)
    leaks = [
        name
        for name, marker in (("prompt", SECRET), ("Authorization", "Bearer " + SECRET))
        if marker.encode() in wire
    ]
    if leaks:
        return Result(Outcome.NOT_CAUGHT, f"the gateway saw {', '.join(leaks)} in clear")
    if reply.status != "ok":
        return Result(Outcome.NOT_APPLICABLE, f"request failed: {short(reply.detail, 80)}")
    return Result(Outcome.CAUGHT, f"{len(wire)} bytes on the wire, no prompt or Authorization")


def _leak_in_errors(ctx: Context) -> Result:
    proxy, subject = _need(ctx)
    proxy.reset(on_response=_sealed_response(_flip))
    reply = subject.request(proxy.url, f"error {SECRET}", False)
    if reply.status == "ok":
        return Result(Outcome.NOT_APPLICABLE, "the tampered answer was accepted (see bit flip)")
    if SECRET in reply.detail:
        return Result(Outcome.NOT_CAUGHT, "the error text contains the prompt")
    return Result(Outcome.CAUGHT, f"error text has no prompt: {short(reply.detail, 70)}")


def _other_measurement(ctx: Context) -> Result:
    proxy, subject = _need(ctx)
    document = ctx.other_measurement
    if document is None:
        return Result(Outcome.NOT_APPLICABLE, "no enclave running other code to borrow from")
    keys = [
        fingerprint_of(config.to_bytes())
        for config in decode_key_configs(base64.b64decode(document["key_configs"]))
    ]

    def lie(directory: dict[str, Any]) -> None:
        for entry in directory.get("enclaves", []):
            entry["attestation"], entry["keys"] = document, keys

    proxy.reset(on_response=_directory(lie))
    before = len(ctx.logs()) if ctx.logs else 0
    reply = subject.request(proxy.url, f"measurement {SECRET}", False)
    reasons = [
        line.split(": ", 2)[-1].split(" (")[0]
        for line in (ctx.logs()[before:] if ctx.logs else [])
        if "refused" in line
    ]
    sent = [e for e in proxy.exchanges if e.headers.get(KEY_ID) in keys]
    if sent or reply.status == "ok":
        return Result(Outcome.NOT_CAUGHT, f"sealed {len(sent)} request(s) to the other code")
    why = short(reasons[0], 90) if reasons else short(reply.detail, 80)
    return Result(_refusal_outcome(reply), f"nothing sealed to it; refused: {why}")


def _leak_in_logs(ctx: Context) -> Result:
    proxy, subject = _need(ctx)
    if ctx.logs is None:
        return Result(Outcome.NOT_APPLICABLE, "no logs to read")
    proxy.reset(on_response=_sealed_response(_flip))
    subject.request(proxy.url, f"logs {SECRET}", False)
    proxy.reset()
    subject.request(proxy.url, f"logs {SECRET}", True)
    lines = ctx.logs()
    if any(SECRET in line for line in lines):
        return Result(Outcome.NOT_CAUGHT, "a log line contains the prompt or Authorization")
    return Result(Outcome.CAUGHT, f"{len(lines)} SDK and gateway log lines, no prompt or secret")


def _fake_503_loop(ctx: Context) -> Result:
    proxy, subject = _need(ctx)
    proxy.reset(on_request=_fake_refusal(503))
    started = time.monotonic()
    reply = subject.request(proxy.url, f"loop {SECRET}", False)
    tries = sum(1 for e in proxy.exchanges if e.sealed)
    elapsed = time.monotonic() - started
    if reply.status == "ok":
        return Result(Outcome.NOT_CAUGHT, "accepted a forged 503 as an answer")
    if tries <= 8:
        return Result(_refusal_outcome(reply), f"gave up after {tries} attempts in {elapsed:.1f}s")
    return Result(Outcome.NOT_CAUGHT, f"{tries} attempts: the loop is not bounded")


# -- gateway and enclave attacks (plain sockets and HTTP; bounded) -------------------------


def _raw(url: str, payload: bytes, timeout: float = 5.0) -> bytes:
    parts = urlsplit(url)
    host, port = (
        parts.hostname or "127.0.0.1",
        parts.port or (443 if parts.scheme == "https" else 80),
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(payload.replace(b"HOST", f"{host}:{port}".encode()))
        except (BrokenPipeError, ConnectionResetError):
            return b""  # closed on us mid-request: refused
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return data


SMUGGLES = {
    "CL.TE": _POST + b"Host: HOST\r\nContent-Length: 6\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: HOST\r\n\r\n",
    "TE.CL": _POST + b"Host: HOST\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    "TE obfuscated": _POST + b"Host: HOST\r\n"
    b"Transfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\nabcd",
    "double CL": _POST + b"Host: HOST\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd",
}


def _smuggling(ctx: Context) -> Result:
    assert ctx.gateway_url is not None
    seen = {}
    for name, payload in SMUGGLES.items():
        answer = _raw(ctx.gateway_url, payload)
        statuses = [
            line.split(b" ")[1].decode()
            for line in answer.split(b"\r\n")
            if line.startswith(b"HTTP/1.1 ")
        ]
        seen[name] = statuses
    bad = {n: s for n, s in seen.items() if len(s) != 1 or not s[0].startswith("4")}
    if bad:
        return Result(Outcome.NOT_CAUGHT, f"desync or non-4xx: {bad}")
    return Result(
        Outcome.CAUGHT,
        "each payload: one 4xx, connection closed ("
        + ", ".join(f"{n} {s[0]}" for n, s in seen.items())
        + ")",
    )


def _malformed_sealed(ctx: Context) -> Result:
    assert ctx.gateway_url is not None
    bodies = {"empty": b"", "garbage": os.urandom(64), "short header": b"\x01\x00"}
    codes = {}
    for name, body in bodies.items():
        codes[name] = httpx.post(
            ctx.gateway_url + SEALED_PATH,
            content=body,
            headers={"content-type": "message/ohttp-chunked-req"},
            timeout=10,
        ).status_code
    if all(400 <= c < 500 for c in codes.values()):
        return Result(Outcome.CAUGHT, f"4xx for every malformed body: {codes}")
    return Result(Outcome.NOT_CAUGHT, f"statuses {codes}")


def _oversize(ctx: Context) -> Result:
    assert ctx.gateway_url is not None
    header = _POST + b"Host: HOST\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    answer = _raw(ctx.gateway_url, header)
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
    if status == "closed" or status.startswith("4"):
        return Result(Outcome.CAUGHT, f"200 KB header: {status}")
    return Result(Outcome.NOT_CAUGHT, f"200 KB header answered {status}")


def _nonce_flood(ctx: Context) -> Result:
    assert ctx.gateway_url is not None
    codes: list[int] = []
    started = time.monotonic()
    with httpx.Client(timeout=10) as http:
        directory = http.get(ctx.gateway_url + FLEET).json()
        key = next(iter(e["keys"][0] for e in directory.get("enclaves", []) if e.get("keys")), "")
        headers = {KEY_ID: key}
        for _ in range(ctx.max_requests):
            if time.monotonic() - started > ctx.deadline:
                break
            url = ctx.gateway_url + ATTESTATION
            response = http.get(url, params={"nonce": os.urandom(32).hex()}, headers=headers)
            codes.append(response.status_code)
            if codes[-1] == 429:
                break
    if 429 in codes:
        return Result(Outcome.CAUGHT, f"429 after {codes.index(429)} fresh-nonce requests")
    return Result(Outcome.NOT_CAUGHT, f"{len(codes)} fresh-nonce requests, none limited")


def _slowloris(ctx: Context) -> Result:
    assert ctx.gateway_url is not None
    parts = urlsplit(ctx.gateway_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sockets = []
    for _ in range(4):
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(_POST + b"Host: x\r\n")
        sockets.append(sock)
    started = time.monotonic()
    served = httpx.get(ctx.gateway_url + HEALTH, timeout=10).status_code
    closed = 0
    try:
        while time.monotonic() - started < ctx.deadline and closed < len(sockets):
            closed = 0
            for sock in sockets:
                try:
                    sock.sendall(b"X-Drip: 1\r\n")
                    sock.settimeout(0.05)
                    if sock.recv(4096) == b"":
                        closed += 1
                        continue
                    closed += 1  # an answer (408) then close
                except TimeoutError:
                    pass
                except OSError:
                    closed += 1
            time.sleep(1.0)
    finally:
        for sock in sockets:
            sock.close()
    if closed == len(sockets) and served == 200:
        return Result(
            Outcome.CAUGHT,
            f"4 dripping heads closed after {time.monotonic() - started:.0f}s; others served",
        )
    return Result(
        Outcome.NOT_CAUGHT,
        f"{len(sockets) - closed}/4 dripping heads still open after {ctx.deadline:.0f}s",
    )


SLOW_BODY_BOUND = 45.0  # seconds; above the gateway's default body deadline (30 s)


def _slow_body(ctx: Context) -> Result:
    """A well-formed start (a real key id and request header), then one byte a second."""
    assert ctx.gateway_url is not None
    parts = urlsplit(ctx.gateway_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    bound = max(ctx.deadline, SLOW_BODY_BOUND)
    directory = httpx.get(ctx.gateway_url + FLEET, timeout=10).json()
    entry = next(e for e in directory["enclaves"] if e.get("keys"))
    from ...protocol.public.keyconfig import decode_key_configs

    config = decode_key_configs(base64.b64decode(entry["attestation"]["key_configs"]))[0]
    raw = config.to_bytes()
    # RFC 9458 §4.3 header: key id, KEM, then the first KDF/AEAD pair the config offers.
    prefix = raw[:3] + raw[-4:] + os.urandom(32)
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            _POST + b"Host: x\r\n"
            b"Content-Type: message/ohttp-chunked-req\r\n"
            + f"{KEY_ID}: {entry['keys'][0]}\r\n".encode()
            + b"Content-Length: 100000\r\n\r\n"
            + prefix
        )
        sock.settimeout(1.0)
        answer = b""
        while time.monotonic() - started < bound:
            try:
                sock.sendall(b"\x00")
                answer += sock.recv(4096)
                break  # an answer, or the connection closed
            except TimeoutError:
                continue
            except OSError:
                break
    elapsed = time.monotonic() - started
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
    if elapsed < bound:
        return Result(Outcome.CAUGHT, f"a body dripped at 1 byte/s: {status} after {elapsed:.0f}s")
    return Result(Outcome.NOT_CAUGHT, f"a body dripped at 1 byte/s still open after {bound:.0f}s")


def _enclave_garbage(ctx: Context) -> Result:
    if not ctx.enclave_urls:
        return Result(Outcome.NOT_APPLICABLE, "no enclave URL")
    code = httpx.post(
        ctx.enclave_urls[0] + SEALED_PATH,
        content=os.urandom(80),
        headers={"content-type": "message/ohttp-chunked-req"},
        timeout=10,
    ).status_code
    if 400 <= code < 500:
        return Result(Outcome.CAUGHT, f"garbage sealed body: {code}")
    return Result(Outcome.NOT_CAUGHT, f"garbage sealed body: {code}")


# -- the catalogue -----------------------------------------------------------------------

AEAD = "read or change ... the response's status, headers and body (all inside the AEAD)"
FINAL = "pass a truncated stream as complete (the final chunk is sealed with AAD `final`)"
INNER = "a rewritten outer request still delivers exactly the sealed one, or nothing"
KEYS = "make a client use a key that is not bound in verified evidence"

CATALOGUE: list[Attack] = [
    Attack(
        "resp-bitflip",
        "flip one bit of a sealed response",
        AEAD,
        Target.CLIENT,
        on_response=_sealed_response(_flip),
    ),
    Attack(
        "resp-truncate-boundary",
        "cut a stream between chunks (drop the final chunk)",
        FINAL,
        Target.CLIENT,
        on_response=_sealed_response(_drop_final),
        ehbp_limit=True,
    ),
    Attack(
        "resp-truncate-inside",
        "cut a stream inside a chunk",
        FINAL,
        Target.CLIENT,
        on_response=_sealed_response(_cut_inside),
    ),
    Attack(
        "resp-reorder",
        "swap two sealed chunks",
        AEAD,
        Target.CLIENT,
        on_response=_edit_chunks(_swap),
    ),
    Attack(
        "resp-duplicate",
        "repeat a sealed chunk",
        AEAD,
        Target.CLIENT,
        on_response=_edit_chunks(_duplicate),
    ),
    Attack(
        "resp-drop",
        "drop a sealed chunk in the middle",
        AEAD,
        Target.CLIENT,
        on_response=_edit_chunks(_drop_middle),
    ),
    Attack(
        "resp-replayed",
        "answer with another request's sealed response",
        AEAD,
        Target.CLIENT,
        run=_replayed_response,
    ),
    Attack(
        "resp-swapped",
        "swap the sealed responses of two concurrent requests",
        AEAD,
        Target.CLIENT,
        run=_swapped_concurrent,
    ),
    Attack(
        "plaintext-json",
        "substitute a plaintext 200 JSON answer",
        AEAD,
        Target.CLIENT,
        on_response=_sealed_response(_plaintext_json),
        stream=False,
    ),
    Attack(
        "plaintext-sse",
        "substitute a plaintext SSE stream",
        AEAD,
        Target.CLIENT,
        on_response=_sealed_response(_plaintext_sse),
    ),
    Attack(
        "status-rewrite",
        "rewrite the status 200 -> 201",
        AEAD,
        Target.CLIENT,
        on_response=_sealed_response(_status(201)),
        stream=False,
        ehbp_limit=True,
    ),
    Attack(
        "header-forge",
        "forge a Sealgate-Verified-Enclave response header",
        "forge a `Sealgate-*` header the caller takes for the SDK's",
        Target.CLIENT,
        on_response=_sealed_response(_forge_header),
        expect=Expect.INTACT,
        ehbp_limit=True,
    ),
    Attack(
        "req-inject",
        "inject Authorization, headers and query into the outer request",
        INNER,
        Target.CLIENT,
        on_request=_sealed_request(_inject_headers),
        expect=Expect.INTACT,
        stream=False,
        ehbp_limit=True,
    ),
    Attack(
        "req-target",
        "rewrite the outer request target",
        INNER,
        Target.CLIENT,
        on_request=_sealed_request(_rewrite_target),
        expect=Expect.INTACT,
        stream=False,
        ehbp_limit=True,
    ),
    Attack(
        "req-bitflip",
        "flip one bit of the sealed request",
        INNER,
        Target.CLIENT,
        on_request=_sealed_request(_flip_request),
        expect=Expect.INTACT,
        stream=False,
    ),
    Attack(
        "downgrade",
        "refuse the native endpoint to force a weaker mode",
        "the SDK never falls back from the native mode by itself",
        Target.CLIENT,
        on_request=_downgrade,
        ehbp_applicable=False,
        stream=False,
    ),
    Attack(
        "dir-unbound-key",
        "directory lists a key not bound in evidence",
        KEYS,
        Target.CLIENT,
        on_response=_directory(_unbound_key),
        expect=Expect.NO_SEND,
        stream=False,
        ehbp_applicable=False,
    ),
    Attack(
        "dir-swapped",
        "directory swaps two enclaves' documents",
        KEYS,
        Target.CLIENT,
        on_response=_directory(_swap_documents),
        expect=Expect.NO_SEND,
        stream=False,
        ehbp_applicable=False,
    ),
    Attack(
        "dir-foreign-root",
        "directory carries a foreign attestation root",
        KEYS,
        Target.CLIENT,
        on_response=_directory(_foreign_root),
        expect=Expect.NO_SEND,
        stream=False,
        ehbp_applicable=False,
    ),
    Attack(
        "dir-stale",
        "directory carries emptied/stale evidence",
        KEYS,
        Target.CLIENT,
        on_response=_directory(_stale),
        expect=Expect.NO_SEND,
        stream=False,
        ehbp_applicable=False,
    ),
    Attack(
        "dir-garbage",
        "directory with NaN, oversize and garbage fields",
        KEYS,
        Target.CLIENT,
        on_response=_directory(_garbage),
        expect=Expect.NO_SEND,
        stream=False,
        ehbp_applicable=False,
    ),
    Attack(
        "dir-other-measurement",
        "directory serves genuine evidence (trusted root) of other code",
        KEYS,
        Target.CLIENT,
        run=_other_measurement,
        ehbp_applicable=False,
    ),
    Attack(
        "key-substitution",
        "serve the gateway's own key at /.well-known/hpke-keys",
        KEYS,
        Target.CLIENT,
        on_request=_substitute_key,
        expect=Expect.NO_SEND,
        stream=False,
    ),
    Attack(
        "fake-503",
        "answer every sealed request with a forged 503",
        "drop, delay or cut a response (never more); retries are bounded",
        Target.CLIENT,
        run=_fake_503_loop,
    ),
    Attack(
        "fake-421",
        "answer every sealed request with a forged 421",
        "drop, delay or cut a response (never more); retries are bounded",
        Target.CLIENT,
        on_request=_fake_refusal(421),
        stream=False,
    ),
    Attack(
        "fake-422",
        "answer every sealed request with a forged 422",
        "drop, delay or cut a response (never more); retries are bounded",
        Target.CLIENT,
        on_request=_fake_refusal(422),
        stream=False,
    ),
    Attack(
        "replay-enclave",
        "replay a captured request three times",
        "get a request processed twice",
        Target.CLIENT,
        run=_replay_at_enclave,
    ),
    Attack(
        "token-lengths",
        "observe chunk sizes of two different answers",
        "sizes rounded up to padding buckets; chunk count leaks (known limit)",
        Target.CLIENT,
        run=_token_lengths,
    ),
    Attack(
        "leak-wire",
        "look for the prompt and Authorization on the wire",
        "read ... headers (`Authorization` included), the body",
        Target.CLIENT,
        run=_plaintext_on_the_wire,
    ),
    Attack(
        "leak-errors",
        "look for the prompt in exception text",
        "secrets never in errors",
        Target.CLIENT,
        run=_leak_in_errors,
    ),
    Attack(
        "leak-logs",
        "look for the prompt and Authorization in the SDK's and the gateway's logs",
        "secrets never in logs",
        Target.CLIENT,
        run=_leak_in_logs,
        ehbp_applicable=False,
    ),
    Attack(
        "gw-smuggling",
        "HTTP smuggling and desync payloads (CL.TE, TE.CL, ...)",
        "bad network input gets a 4xx, never a desync",
        Target.GATEWAY,
        run=_smuggling,
    ),
    Attack(
        "gw-malformed",
        "malformed sealed bodies",
        "bad network input gets a 4xx",
        Target.GATEWAY,
        run=_malformed_sealed,
    ),
    Attack(
        "gw-oversize",
        "oversize request head",
        "bad network input gets a 4xx",
        Target.GATEWAY,
        run=_oversize,
    ),
    Attack(
        "gw-nonce-flood",
        "fresh-nonce attestation flood",
        "nonce floods are rate-limited",
        Target.GATEWAY,
        run=_nonce_flood,
    ),
    Attack(
        "gw-slowloris",
        "slowloris: heads dripped a line a second",
        "slow heads are closed at the header deadline",
        Target.GATEWAY,
        run=_slowloris,
        slow=True,
    ),
    Attack(
        "gw-slow-body",
        "slow body: one byte a second",
        "a slow body cannot hold a connection past the body deadline",
        Target.GATEWAY,
        run=_slow_body,
        slow=True,
    ),
    Attack(
        "enclave-garbage",
        "garbage sealed body straight to an enclave",
        "bad network input gets a 4xx",
        Target.ENCLAVE,
        run=_enclave_garbage,
    ),
]
