"""Run the catalogue: against a local demo fleet (default), a third-party client program,
or a deployed gateway / enclave given by URL."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ...protocol.public.headers import KEY_ID
from ...protocol.public.paths import ATTESTATION
from ..errors import SealgateError
from ..policy import Policy
from .catalogue import (
    APPLIED,
    CATALOGUE,
    FORGED_KEY,
    GATEWAY_KEY,
    SECRET,
    Attack,
    Context,
    Expect,
    Outcome,
    Reply,
    Result,
    Target,
    short,
)
from .proxy import AdversarialProxy

__all__ = [
    "ADAPTERS",
    "CommandSubject",
    "Row",
    "SdkSubject",
    "local_adversary",
    "run_local",
    "run_remote",
]

ADAPTER_DIR = Path(__file__).resolve().parent / "adapters"
#: Ready-made ``--client-cmd`` values for Tinfoil's EHBP clients.
ADAPTERS = {
    "tinfoil-ehbp": f"{shlex.quote(sys.executable)} {shlex.quote(str(ADAPTER_DIR / 'tinfoil_ehbp.py'))}",
    "npm-ehbp": f"node {shlex.quote(str(ADAPTER_DIR / 'ehbp_npm.mjs'))}",
}
MODEL = "sealgate-demo-echo"


@dataclass(frozen=True, slots=True)
class Row:
    attack: Attack
    subject: str
    result: Result

    @property
    def failed(self) -> bool:
        return self.result.outcome is Outcome.NOT_CAUGHT

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.attack.id,
            "attack": self.attack.title,
            "target": self.attack.target,
            "subject": self.subject,
            "promise": self.attack.promise,
            "result": self.result.outcome.value,
            "evidence": self.result.evidence,
        }


def _sse_text(raw: bytes) -> str:
    parts = []
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            try:
                choices = json.loads(line[6:]).get("choices") or []
            except ValueError:
                continue
            if choices:
                parts.append(choices[0].get("delta", {}).get("content") or "")
    return "".join(parts)


@dataclass
class SdkSubject:
    """The sealgate SDK in this process; ``factory`` builds the client (tests pass a weak one)."""

    policy: Policy
    factory: Callable[[str, Policy], Any] | None = None
    name: str = "sealgate SDK"
    ehbp: bool = False

    def _client(self, base_url: str) -> Any:
        if self.factory is not None:
            return self.factory(base_url, self.policy)
        from ..session import SecureClient

        return SecureClient(base_url, self.policy, timeout=20, max_attempts=3)

    def request(self, base_url: str, prompt: str, stream: bool) -> Reply:
        body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": stream}
        headers = {"Authorization": f"Bearer {SECRET}"}
        try:
            with self._client(base_url) as secure, secure.httpx_client() as http:
                if stream:
                    with http.stream(
                        "POST", "/v1/chat/completions", json=body, headers=headers
                    ) as r:
                        raw = b"".join(r.iter_bytes())
                    text = _sse_text(raw) if r.status_code == 200 else ""
                else:
                    r = http.post("/v1/chat/completions", json=body, headers=headers)
                    text = (
                        r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else ""
                    )
                if r.status_code != 200:
                    return Reply("refused", detail=f"sealed status {r.status_code}")
                return Reply("ok", text, headers=dict(r.headers))
        except (SealgateError, httpx.HTTPError) as error:
            return Reply("refused", detail=f"{type(error).__name__}: {error}")
        except Exception as error:  # noqa: BLE001 - anything else is a crash to report
            return Reply("crashed", detail=f"{type(error).__name__}: {error}")


@dataclass
class CommandSubject:
    """A client program: env in, one JSON line ``{"status", "content"}`` out; exit 1 = refused."""

    command: str
    env: dict[str, str] = field(default_factory=dict)
    name: str = "client command"
    ehbp: bool = True
    timeout: float = 20.0

    def request(self, base_url: str, prompt: str, stream: bool) -> Reply:
        env = {
            **os.environ,
            **self.env,
            "SEALGATE_REDTEAM_URL": base_url,
            "SEALGATE_REDTEAM_PROMPT": prompt,
            "SEALGATE_REDTEAM_STREAM": "1" if stream else "0",
            "SEALGATE_REDTEAM_MODEL": MODEL,
        }
        try:
            done = subprocess.run(  # noqa: S603 - the user's own command, by design
                shlex.split(self.command),
                env=env,
                check=False,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            return Reply("crashed", detail=f"no answer within {self.timeout:.0f}s")
        if done.returncode == 1:
            return Reply("refused", detail=(done.stderr.strip().splitlines() or ["exit 1"])[-1])
        if done.returncode != 0:
            return Reply("crashed", detail=f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return Reply("crashed", detail=f"unparseable output {done.stdout[-80:]!r}")
        if int(answer.get("status", 200)) >= 300:
            return Reply("refused", detail=f"status {answer['status']}")
        return Reply("ok", str(answer.get("content", "")), headers=answer.get("headers") or {})


def classify(attack: Attack, ctx: Context) -> Result:
    """Run one client attack through the proxy and judge the subject's reply."""
    assert ctx.proxy is not None and ctx.subject is not None
    subject, proxy = ctx.subject, ctx.proxy
    if subject.ehbp and not attack.ehbp_applicable:
        return Result(Outcome.NOT_APPLICABLE, "not a defence EHBP clients claim")
    if attack.run is not None:
        return attack.run(ctx)
    proxy.reset(attack.on_request, attack.on_response)
    prompt = f"hello {SECRET}"
    reply = subject.request(proxy.url, prompt, attack.stream)
    if SECRET.encode() in bytes(proxy.wire):
        return Result(Outcome.NOT_CAUGHT, "sent the prompt in plaintext")
    if reply.status == "crashed":
        return Result(Outcome.NOT_CAUGHT, f"crashed: {short(reply.detail, 90)}")
    limit = Outcome.LIMIT if subject.ehbp and attack.ehbp_limit else Outcome.NOT_CAUGHT
    expected = f"You said: {prompt}"
    if attack.on_response is not None and attack.expect is Expect.REFUSE:
        applied = [e for e in proxy.exchanges if APPLIED in e.headers]
        if not applied:
            return Result(
                Outcome.NOT_APPLICABLE, f"nothing to tamper with ({short(reply.detail, 60)})"
            )
    if attack.expect is Expect.REFUSE:
        if reply.status == "ok":
            return Result(limit, f"accepted tampered data: {reply.text[-50:]!r}")
        return Result(Outcome.CAUGHT, f"refused: {short(reply.detail, 90)}")
    if subject.ehbp and attack.ehbp_limit and attack.on_request is not None:
        forwarded = [e for e in proxy.exchanges if e.sealed and not e.answered]
        if forwarded:
            return Result(
                Outcome.LIMIT,
                "EHBP leaves method, path and headers unprotected: the "
                f"rewritten request reached the enclave (status {forwarded[-1].status})",
            )
    if attack.expect is Expect.NO_SEND:
        forged = [
            e
            for e in proxy.exchanges
            if e.headers.get(KEY_ID) in (FORGED_KEY, GATEWAY_KEY)
            or "x-redteam-sealed-to-gateway" in e.headers
        ]
        if forged:
            return Result(
                Outcome.NOT_CAUGHT,
                f"sealed {len(forged)} request(s) to a key the gateway chose (it verified no "
                "evidence binding that key)",
            )
        if reply.status == "ok" and not reply.text.endswith(expected):
            return Result(Outcome.NOT_CAUGHT, f"accepted a wrong answer {reply.text[-40:]!r}")
        sent = sum(1 for e in proxy.exchanges if e.sealed)
        what = "answered by a verified enclave" if reply.status == "ok" else short(reply.detail, 70)
        return Result(Outcome.CAUGHT, f"{sent} sealed request(s), none to a lie; {what}")
    # "intact": delivered exactly, or nothing
    if reply.status != "ok":
        return Result(Outcome.CAUGHT, f"nothing delivered: {short(reply.detail, 80)}")
    forged_header = any(str(v).startswith("forged") for v in reply.headers.values())
    if reply.text.endswith(expected) and not forged_header:
        return Result(Outcome.CAUGHT, "the sealed request/response arrived exactly as sent")
    what = "a forged header reached the caller" if forged_header else f"got {reply.text[-40:]!r}"
    return Result(limit, what)


def run_attacks(
    ctx: Context, attacks: Iterable[Attack], targets: Iterable[Target | str]
) -> list[Row]:
    """Rows in catalogue order; attacks waiting on server deadlines run in the background."""
    wanted = {Target(t) for t in targets}
    chosen = [a for a in attacks if a.target in wanted]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        background = {a.id: pool.submit(_one, a, ctx) for a in chosen if a.slow}
        rows = {a.id: _one(a, ctx) for a in chosen if not a.slow}
        rows.update({name: future.result() for name, future in background.items()})
    return [rows[a.id] for a in chosen]


def _one(attack: Attack, ctx: Context) -> Row:
    subject = ctx.subject.name if attack.target is Target.CLIENT and ctx.subject else attack.target
    try:
        result = classify(attack, ctx) if attack.target is Target.CLIENT else _direct(attack, ctx)
    except Exception as error:  # noqa: BLE001 - a broken attack is a row, not a crash
        result = Result(Outcome.NOT_CAUGHT, f"attack error {type(error).__name__}: {error}")
    if ctx.proxy is not None and ctx.proxy.errors and attack.target is Target.CLIENT:
        result = Result(Outcome.NOT_CAUGHT, f"attack error in the proxy: {ctx.proxy.errors[0]}")
    return Row(attack, subject, result)


def _direct(attack: Attack, ctx: Context) -> Result:
    assert attack.run is not None
    return attack.run(ctx)


class _LogTap(logging.Handler):
    """Keeps every record of the ``sealgate`` loggers (and keeps them off stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def local_adversary(enclaves: int = 3) -> Iterator[tuple[Context, Any]]:
    """A demo fleet with the adversarial gateway in front and a tap on the logs.

    Yields the context (no subject yet) and the :class:`DemoFleet`.
    """
    from ..demo import DemoFleet

    tap = _LogTap()
    logger = logging.getLogger("sealgate")
    level = logger.level
    logger.addHandler(tap)
    logger.setLevel(logging.DEBUG)
    try:
        with DemoFleet(enclaves) as fleet, AdversarialProxy(fleet.gateway_url) as proxy:
            gateway_lines: list[str] = []

            def logs() -> list[str]:
                gateway_lines.extend(json.dumps(r) for r in fleet.gateway_saw(timeout=0.3))
                return tap.lines + gateway_lines

            ctx = Context(proxy, fleet.gateway_url, list(fleet.enclave_urls), deadline=25.0)
            ctx.logs = logs
            with _other_code(fleet) as document:
                ctx.other_measurement = document
                yield ctx, fleet
    finally:
        logger.removeHandler(tap)
        logger.setLevel(level)


@contextlib.contextmanager
def _other_code(fleet: Any) -> Iterator[dict[str, Any] | None]:
    """An extra enclave running *other* code (another engine configuration), signed by the
    fleet's own root: its attestation document, for the directory to lie with."""
    import socket
    import tempfile

    from cryptography.hazmat.primitives import serialization

    with tempfile.TemporaryDirectory(prefix="sealgate-redteam-") as tmp:
        key = Path(tmp) / "root.pem"
        key.write_bytes(
            fleet.root.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key.chmod(0o600)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        args = [sys.executable, "-m", "sealgate.enclave", "--port", str(port)]
        args += ["--software-root-key", str(key), "--model", "redteam-other-code"]
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [*args, "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            document = None
            for _ in range(300):
                if proc.poll() is not None:
                    break
                try:
                    response = httpx.get(url + ATTESTATION, timeout=1)
                    if response.status_code == 200:
                        document = response.json()
                        break
                except httpx.HTTPError:
                    pass
                threading.Event().wait(0.1)
            yield document
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_local(
    *,
    client_cmd: str | None = None,
    factory: Callable[[str, Policy], Any] | None = None,
    only: set[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Row]:
    """Start the demo fleet, put the adversarial gateway in front and run the catalogue."""
    attacks = [a for a in CATALOGUE if only is None or a.id in only]
    progress("starting a local fleet (3 enclaves, a gateway) and the adversarial gateway")
    with local_adversary() as (ctx, fleet):
        if client_cmd is not None:
            ctx.subject = CommandSubject(
                ADAPTERS.get(client_cmd, client_cmd),
                env={
                    "SEALGATE_REDTEAM_ROOT": fleet.root_public_key.hex(),
                    "SEALGATE_REDTEAM_MEASUREMENT": fleet.measurement(),
                },
                name=client_cmd if client_cmd in ADAPTERS else "client command",
            )
            progress(f"attacking {ctx.subject.name} through the adversarial gateway")
            return run_attacks(ctx, attacks, {Target.CLIENT})
        ctx.subject = SdkSubject(fleet.policy(), factory)
        progress("attacking the sealgate SDK, the gateway and the enclaves")
        return run_attacks(ctx, attacks, set(Target))


def run_remote(
    gateway: str | None,
    enclave: str | None,
    *,
    max_requests: int = 40,
    deadline: float = 20.0,
    only: set[str] | None = None,
) -> list[Row]:
    """Attack a deployed gateway and/or enclave over HTTP, bounded in count and time.

    Only ``gateway`` and ``enclave`` are ever connected to.
    """
    ctx = Context(
        None, gateway, [enclave] if enclave else [], max_requests=max_requests, deadline=deadline
    )
    targets = {name for name, url in ((Target.GATEWAY, gateway), (Target.ENCLAVE, enclave)) if url}
    attacks = [a for a in CATALOGUE if only is None or a.id in only]
    return run_attacks(ctx, attacks, targets)
