"""Failover under churn: multi-recipient (N=3) vs single-recipient requests.

A demo fleet of three enclave processes and a gateway (``client.demo.DemoFleet``);
``--workers`` client threads send chat requests for ``--baseline`` seconds on a stable
fleet, then for ``--duration`` seconds while one enclave is SIGKILLed every
``--kill-every`` seconds (the previously killed one restarts, with fresh keys). The
SDK runs with ``max_retries=0`` for openai, so every recovery is sealgate's own: with
N=3 the gateway fails over inside the fleet, with N=1 the client re-seals after a 503.
Reported per mode: client-visible errors, p50/p99 latency stable vs under churn (added
p99), and the client -> gateway requests per answered request (round trips).

Then, in-process: the cost of sealing one request wrapped to N=3 vs N=1 keys.

    .venv/bin/python bench/failover_bench.py [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sealgate.client import SecureClient
from sealgate.client.demo import DemoFleet
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.multi_recipient import MultiRequestSealer
from sealgate.protocol.sealing.ohttp import ChunkedRequestSealer
from sealgate.protocol.sealing.xwing import HybridPrivateKey

from tests.gateway.test_blindness import Tap

MODEL = "sealgate-demo-echo"
PATH = b"POST /.well-known/ohttp-gateway"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_mode(recipients: int, workers: int, baseline: float, duration: float, every: float) -> dict:
    with DemoFleet(3) as demo:
        tap = Tap(demo.gateway_port)
        try:
            url = f"http://127.0.0.1:{tap.port}"
            with SecureClient(
                url, demo.policy(), recipients=recipients, refresh_interval=1.0
            ) as secure:
                secure.verify()
                client = secure.openai(max_retries=0)
                phase = ["stable"]
                samples: dict[str, list[float]] = {"stable": [], "churn": []}
                errors: dict[str, list[str]] = {"stable": [], "churn": []}
                stop = threading.Event()

                def worker(n: int) -> None:
                    i = 0
                    while not stop.is_set():
                        i += 1
                        started = time.perf_counter()
                        current = phase[0]
                        try:
                            client.chat.completions.create(
                                model=MODEL,
                                messages=[{"role": "user", "content": f"w{n} r{i}"}],
                            )
                        except Exception as exc:
                            errors[current].append(type(exc.__cause__ or exc).__name__)
                            continue
                        samples[current].append(time.perf_counter() - started)

                threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
                for thread in threads:
                    thread.start()
                time.sleep(baseline)
                tap.seen.clear()
                phase[0] = "churn"
                end = time.monotonic() + duration
                killed: int | None = None
                kills = 0
                victim = 0
                while time.monotonic() < end:
                    demo.kill_enclave(victim)
                    kills += 1
                    if killed is not None:
                        demo.restart_enclave(killed)
                    killed, victim = victim, (victim + 1) % 3
                    time.sleep(max(0.0, min(every, end - time.monotonic())))
                stop.set()
                for thread in threads:
                    thread.join(60)
                posts = bytes(tap.seen).count(PATH)
        finally:
            tap.close()
    stable, churn = samples["stable"], samples["churn"]
    answered = len(churn)
    return {
        "recipients": recipients,
        "kills": kills,
        "stable_requests": len(stable),
        "stable_p50_ms": round(_pct(stable, 0.5) * 1000, 2),
        "stable_p99_ms": round(_pct(stable, 0.99) * 1000, 2),
        "churn_requests": answered,
        "churn_errors": len(errors["churn"]),
        "churn_error_types": sorted(set(errors["churn"])),
        "churn_p50_ms": round(_pct(churn, 0.5) * 1000, 2),
        "churn_p99_ms": round(_pct(churn, 0.99) * 1000, 2),
        "added_p99_ms": round((_pct(churn, 0.99) - _pct(stable, 0.99)) * 1000, 2),
        "client_requests_per_answer": round(posts / max(1, answered + len(errors["churn"])), 3),
    }


def wrap_cost(iterations: int) -> dict:
    """Microseconds to seal a 2 KiB request to N keys (header + body), N = 1 and 3."""
    classic = [PrivateKey.generate().key_config(key_id=i) for i in range(3)]
    hybrid = [HybridPrivateKey.generate().key_config(key_id=i) for i in range(3)]
    body = bytes(2048)
    out: dict[str, float] = {}

    def single(configs: list) -> None:
        sealer = ChunkedRequestSealer(configs[0])
        sealer.header + sealer.seal_final(body)

    def multi(configs: list, n: int) -> None:
        sealer = MultiRequestSealer(configs[:n])
        sealer.header + sealer.seal_final(body)

    for name, fn in (
        ("chunked_ohttp_n1_us", lambda: single(classic)),
        ("multi_n1_us", lambda: multi(classic, 1)),
        ("multi_n3_us", lambda: multi(classic, 3)),
        ("xwing_chunked_ohttp_n1_us", lambda: single(hybrid)),
        ("xwing_multi_n1_us", lambda: multi(hybrid, 1)),
        ("xwing_multi_n3_us", lambda: multi(hybrid, 3)),
    ):
        fn()
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(iterations):
                fn()
            runs.append((time.perf_counter() - started) / iterations * 1e6)
        out[name] = round(statistics.median(runs), 1)
    out["multi_n3_header_bytes"] = len(MultiRequestSealer(classic).header)
    out["multi_n1_header_bytes"] = len(MultiRequestSealer(classic[:1]).header)
    out["xwing_multi_n3_header_bytes"] = len(MultiRequestSealer(hybrid).header)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [
        run_mode(n, args.workers, args.baseline, args.duration, args.kill_every) for n in (3, 1)
    ]
    result = {"runs": runs, "wrap_cost": wrap_cost(args.iterations)}
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
