"""End-to-end costs, each measured against its baseline in the same run.

* encrypted (SDK -> gateway -> enclave -> demo engine) vs plaintext (httpx -> the same
  demo engine app served directly): requests/s with concurrent clients, p50/p99 latency;
* SSE events/s of a long streamed completion, both ways;
* gateway memory: peak RSS with 1,000 concurrent idle streams vs the idle gateway.

Run: ``python bench/e2e_bench.py [--requests 300] [--streams 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sealgate.client import SecureClient
from sealgate.client.demo import DemoFleet
from sealgate.enclave.engines.demo import create_demo_app
from sealgate.protocol.public.keyconfig import encode_key_configs
from sealgate.protocol.sealing.hpke import PrivateKey

from tests.servers import ServerThread, free_port, wait_healthy

CHAT = {"model": "sealgate-demo-echo", "messages": [{"role": "user", "content": "benchmark " * 20}]}
LONG = {**CHAT, "messages": [{"role": "user", "content": "token " * 2000}], "stream": True}


def _load(make_client, requests: int, threads: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        client = make_client()
        client.post("/v1/chat/completions", json=CHAT).raise_for_status()  # warm
        mine = []
        for _ in range(n):
            start = time.perf_counter()
            client.post("/v1/chat/completions", json=CHAT).raise_for_status()
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    per = requests // threads
    workers = [threading.Thread(target=worker, args=(per,)) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def _sse_rate(client: httpx.Client) -> float:
    events = 0
    start = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=LONG) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events += 1
    return events / (time.perf_counter() - start)


def throughput(requests: int, threads: int) -> dict[str, object]:
    engine = ServerThread(create_demo_app()).start()
    try:
        with DemoFleet(1) as fleet, SecureClient(fleet.gateway_url, fleet.policy()) as secure:
            secure.verify()
            sealed = _load(secure.httpx_client, requests, threads)
            plain = _load(lambda: httpx.Client(base_url=engine.url), requests, threads)
            sealed_sse = max(_sse_rate(secure.httpx_client()) for _ in range(3))
            plain_sse = max(
                _sse_rate(httpx.Client(base_url=engine.url, timeout=60)) for _ in range(3)
            )
    finally:
        engine.stop()
    return {
        "sealed": sealed,
        "plain": plain,
        "sealed_sse_events_s": sealed_sse,
        "plain_sse_events_s": plain_sse,
    }


HOLDING_UPSTREAM = """
import asyncio, sys
KEYS = bytes.fromhex(sys.argv[2])
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            path = head.split(b" ")[1]
            if path == b"/healthz":
                body = b'{"status":"ok","load":0}'
            elif path == b"/.well-known/ohttp-keys":
                body = KEYS
            elif path == b"/.well-known/sealgate-attestation":
                body = b"{}"
            else:  # a stream that starts and then idles
                writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-type: text/event-stream\\r\\ntransfer-encoding: chunked\\r\\n\\r\\n6\\r\\nhello\\n\\r\\n")
                await writer.drain()
                await asyncio.sleep(3600)
            writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: %d\\r\\n\\r\\n%s" % (len(body), body))
            await writer.drain()
    except Exception:
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def _rss_kib(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def _hold_streams(port: int, key_id: str, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nSealgate-Key-Id: {key_id}\r\n"
        "Content-Length: 2\r\n\r\n{}"
    ).encode()

    async def one() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        await reader.readuntil(b"hello\n")  # the stream is open end to end
        return writer

    for start in range(0, count, 100):
        writers += await asyncio.gather(*(one() for _ in range(min(100, count - start))))
    return writers


def gateway_memory(streams: int) -> dict[str, float]:
    key = PrivateKey.generate().key_config(1)
    upstream_port, gateway_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDING_UPSTREAM,
            str(upstream_port),
            encode_key_configs([key]).hex(),
        ]
    )
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sealgate.gateway",
            "--enclave",
            f"http://127.0.0.1:{upstream_port}",
            "--port",
            str(gateway_port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--max-connections",
            "20000",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{gateway_port}")
        idle_rss, _ = _rss_kib(gateway.pid)

        async def run() -> tuple[int, int]:
            writers = await _hold_streams(gateway_port, key.fingerprint, streams)
            await asyncio.sleep(0.5)
            measured = _rss_kib(gateway.pid)
            for writer in writers:
                writer.close()
            return measured

        _rss, peak = asyncio.run(run())
    finally:
        gateway.terminate()
        upstream.terminate()
        gateway.wait(20)
        upstream.wait(20)
    return {
        "streams": streams,
        "idle_rss_mib": idle_rss / 1024,
        "peak_rss_mib": peak / 1024,
        "per_stream_kib": (peak - idle_rss) / streams,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {
        "throughput": throughput(args.requests, args.threads),
        "memory": gateway_memory(args.streams),
    }
    if args.json:
        print(json.dumps(results))
        return
    t = results["throughput"]
    s, p = t["sealed"], t["plain"]
    print(f"encrypted {s['rps']:7.0f} req/s p50 {s['p50_ms']:6.2f} ms p99 {s['p99_ms']:6.2f} ms")
    print(f"plaintext {p['rps']:7.0f} req/s p50 {p['p50_ms']:6.2f} ms p99 {p['p99_ms']:6.2f} ms")
    print(
        f"ratio {s['rps'] / p['rps']:.2f}x req/s; added p50 {s['p50_ms'] - p['p50_ms']:.2f} ms, p99 {s['p99_ms'] - p['p99_ms']:.2f} ms"
    )
    print(
        f"SSE events/s: encrypted {t['sealed_sse_events_s']:.0f} vs plaintext {t['plain_sse_events_s']:.0f} "
        f"({t['sealed_sse_events_s'] / t['plain_sse_events_s']:.2f}x)"
    )
    m = results["memory"]
    print(
        f"gateway RSS: idle {m['idle_rss_mib']:.1f} MiB, with {m['streams']} idle streams {m['peak_rss_mib']:.1f} MiB "
        f"({m['per_stream_kib']:.1f} KiB per stream)"
    )


if __name__ == "__main__":
    main()
