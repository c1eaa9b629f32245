"""Client costs, as ratios measured in one run.

* fleet verification: cold (nothing cached) vs cached, for N enclaves behind a gateway;
* per request: a sealed chat completion through the client SDK -> gateway -> enclave ->
  demo engine, vs a plaintext httpx request to the same demo engine served directly.

Run: ``python bench/client_bench.py [--enclaves 3 10] [--requests 300]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sealgate.client import Policy, SecureClient
from sealgate.client.fleet import Fleet
from sealgate.enclave.engines.demo import create_demo_app
from sealgate.gateway import Discovery

from tests.loopback import LoopbackFleet
from tests.servers import ServerThread

BODY = {"model": "sealgate-demo-echo", "messages": [{"role": "user", "content": "benchmark " * 50}]}


def verification_times(n: int, rounds: int = 5) -> dict[str, float]:
    lb = LoopbackFleet()
    try:
        servers = [lb.enclave() for _ in range(n)]
        gw = lb.gateway(Discovery(static=[s.url for s in servers]))
        policy = Policy.software(lb.root.public_key().public_bytes_raw(), lb.measurement)
        cold, cached = [], []
        for _ in range(rounds):
            fleet = Fleet(gw.url, policy)
            start = time.perf_counter()
            fleet.refresh()
            cold.append(time.perf_counter() - start)
            assert len(fleet.enclaves) == n
            start = time.perf_counter()
            fleet.refresh()
            cached.append(time.perf_counter() - start)
            fleet.close()
        return {
            "cold_ms": statistics.median(cold) * 1000,
            "cached_ms": statistics.median(cached) * 1000,
        }
    finally:
        lb.close()


def request_latency(requests: int) -> dict[str, float]:
    lb = LoopbackFleet()
    engine = ServerThread(create_demo_app()).start()
    try:
        server = lb.enclave()
        gw = lb.gateway(Discovery(static=[server.url]))
        policy = Policy.software(lb.root.public_key().public_bytes_raw(), lb.measurement)
        sealed_times, plain_times = [], []
        with (
            SecureClient(gw.url, policy) as secure,
            secure.httpx_client() as sealed,
            httpx.Client(base_url=engine.url) as plain,
        ):
            for client in (sealed, plain):  # warm up connections and the fleet
                client.post("/v1/chat/completions", json=BODY).raise_for_status()
            for _ in range(requests):  # interleaved: noise hits both sides alike
                start = time.perf_counter()
                sealed.post("/v1/chat/completions", json=BODY).raise_for_status()
                sealed_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                plain.post("/v1/chat/completions", json=BODY).raise_for_status()
                plain_times.append(time.perf_counter() - start)
        return {
            "sealed_p50_ms": statistics.median(sealed_times) * 1000,
            "plain_p50_ms": statistics.median(plain_times) * 1000,
        }
    finally:
        engine.stop()
        lb.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enclaves", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, object] = {}
    for n in args.enclaves:
        results[f"verify_{n}"] = verification_times(n)
    results["request"] = request_latency(args.requests)
    if args.json:
        print(json.dumps(results))
        return
    for n in args.enclaves:
        r = results[f"verify_{n}"]
        assert isinstance(r, dict)
        print(
            f"fleet of {n:2d}: cold verification {r['cold_ms']:7.1f} ms, cached {r['cached_ms']:6.1f} ms "
            f"({r['cold_ms'] / r['cached_ms']:.1f}x)"
        )
    r = results["request"]
    assert isinstance(r, dict)
    print(
        f"request p50: sealed via gateway {r['sealed_p50_ms']:.2f} ms vs plaintext to engine "
        f"{r['plain_p50_ms']:.2f} ms ({r['sealed_p50_ms'] / r['plain_p50_ms']:.2f}x)"
    )


if __name__ == "__main__":
    main()
