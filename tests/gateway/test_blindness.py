"""The gateway is blind: by its import graph, and by every byte it receives, sends and logs."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

from sealgate.gateway import Discovery
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.public.logs import JsonLines

from ..sealed_http import sealed_request

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
#: The blindness rule: of sealgate, the gateway's code uses only itself and the public half of
#: the protocol (``protocol/public/``: nothing there can open a sealed message).
GATEWAY_MAY_USE = ("sealgate.gateway", "sealgate.protocol.public")
#: Parent packages Python loads on the way; their ``__init__`` modules import nothing.
PARENTS = {"sealgate", "sealgate.protocol"}
#: Third-party code that can decrypt or derive a shared secret, which the gateway must not load.
DECRYPTING_LIBRARIES = (
    "pyhpke",
    "cryptography.hazmat.primitives.ciphers.aead",
    "cryptography.hazmat.primitives.asymmetric.x25519",
)


def _imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, relative imports resolved against ``package``."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _breaks_the_rule(module: str) -> bool:
    if module.startswith(DECRYPTING_LIBRARIES):
        return True
    return (
        module.startswith("sealgate.")
        and module not in PARENTS
        and not module.startswith(GATEWAY_MAY_USE)
    )


def test_gateway_source_imports_only_the_public_protocol():
    for path in GATEWAY.rglob("*.py"):
        package = ".".join(["sealgate", *path.relative_to(GATEWAY.parent).parent.parts])
        bad = sorted(m for m in _imports(path, package) if _breaks_the_rule(m))
        assert not bad, f"{path.name} imports {bad}"


def test_the_rule_catches_what_it_should():
    assert _breaks_the_rule("sealgate.protocol.sealing.ohttp")
    assert _breaks_the_rule("sealgate.protocol.evidence.attestation")
    assert _breaks_the_rule("sealgate.client.fleet")
    assert _breaks_the_rule("pyhpke.context")
    assert not _breaks_the_rule("sealgate.protocol.public.keyconfig")
    assert not _breaks_the_rule("sealgate.protocol")


def test_importing_and_running_the_gateway_loads_no_decryption_code():
    code = (
        "import sys, asyncio\n"
        "import sealgate.gateway, sealgate.gateway.cli, sealgate.gateway.run\n"
        "from sealgate.gateway import Gateway, GatewayConfig, Discovery\n"
        "g = Gateway(GatewayConfig(), Discovery(static=['http://127.0.0.1:9']))\n"
        "g.local.answer(b'/.well-known/sealgate-fleet', b'GET')\n"
        f"allowed, parents, libs = {GATEWAY_MAY_USE!r}, {PARENTS!r}, {DECRYPTING_LIBRARIES!r}\n"
        "bad = [m for m in sys.modules if m.startswith(libs) or (m.startswith('sealgate.')\n"
        "       and m not in parents and not m.startswith(allowed))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class Tap:
    """A TCP relay that records every byte in both directions."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.seen = bytearray()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> asyncio.AbstractServer:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.seen += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _stop(self) -> None:
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def test_no_secret_crosses_or_is_logged_by_the_gateway(fleet, http, caplog):
    secret_prompt = "the launch code is 7-ALPHA-TANGO-93"
    enclave = fleet.enclave()
    behind = Tap(enclave.port)  # everything between gateway and enclave
    gw = fleet.gateway(Discovery(static=[f"http://127.0.0.1:{behind.port}"]))
    front = Tap(gw.port)  # everything between client and gateway
    caplog.set_level(logging.DEBUG)
    try:
        fleet_doc = http.get(f"http://127.0.0.1:{front.port}/.well-known/sealgate-fleet").json()
        key = AttestationDocument.from_dict(fleet_doc["enclaves"][0]["attestation"]).keys[0]
        for stream in (False, True):
            body = json.dumps(
                {"messages": [{"role": "user", "content": secret_prompt}], "stream": stream}
            ).encode()
            result = sealed_request(
                http, "POST", f"http://127.0.0.1:{front.port}/v1/chat/completions", key, body
            )
            assert result.status == 200
            if stream:
                events = [
                    json.loads(line[6:])
                    for line in result.body.decode().splitlines()
                    if line.startswith("data: {")
                ]
                answer = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
            else:
                answer = json.loads(result.body)["choices"][0]["message"]["content"]
            assert secret_prompt in answer  # the demo model quotes the prompt back
        http.get(f"http://127.0.0.1:{front.port}/metrics")
    finally:
        front.close()
        behind.close()
    # The lines exactly as the gateway writes them: the message and every structured field.
    logs = "\n".join(
        JsonLines().format(r) for r in caplog.records if r.name.startswith("sealgate.gateway")
    )
    assert "sealgate.gateway" in "".join(r.name for r in caplog.records)  # the access log ran
    secret_answer_part = "You said: " + secret_prompt
    for haystack in (bytes(front.seen), bytes(behind.seen), logs.encode()):
        assert b"7-ALPHA-TANGO-93" not in haystack
        assert secret_answer_part.encode() not in haystack
        assert b"launch code" not in haystack
    assert len(front.seen) > 1000 and len(behind.seen) > 1000  # the taps did see the traffic
