"""Fresh-nonce verifications per second for strict clients while one client floods nonces.

Both modes run in the same process, one after the other, against a fresh enclave with
the default report limits (10 reports/s, burst 20, 2 at once) and an attester that
takes ``--report-ms`` per report, like a hardware round trip:

* before: ``batch_window=0, batch_size=1`` — one report per nonce, as before batching;
* after: the default batching (5 ms window, up to 256 nonces per report).

A flood of ``--flood`` concurrent tasks asks for nonces directly at the enclave as
fast as it answers; ``--strict`` client threads loop: fresh nonce, then full
verification (``verify_document`` with ``require_fresh_nonce``). Counting starts after
``--warmup`` seconds, so the token bucket's initial burst is not measured.

Run: ``python bench/nonce_bench.py [--seconds 3] [--flood 32] [--strict 5] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealgate.client import Policy, VerificationError, verify_document
from sealgate.enclave import EnclaveConfig, create_app
from sealgate.enclave.attesters import Evidence, SoftwareAttester, measure_software
from sealgate.enclave.engines import demo_engine
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.public.errors import ProtocolError

from tests.servers import ServerThread

PATH = "/.well-known/sealgate-attestation"
MODES = {
    "before": {"attestation_batch_window": 0.0, "attestation_batch_size": 1},
    "after": {},
}


class HardwareLikeAttester:
    """A software attester that takes ``seconds`` per report and counts them."""

    def __init__(self, inner: SoftwareAttester, seconds: float) -> None:
        self.inner, self.seconds, self.platform, self.calls = inner, seconds, inner.platform, 0

    def attest(self, report_data: bytes) -> Evidence:
        self.calls += 1
        time.sleep(self.seconds)
        return self.inner.attest(report_data)

    def describe(self) -> dict[str, str]:
        return self.inner.describe()


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counting = False
        self.values = {"verified": 0, "refused": 0, "flood_ok": 0, "flood_429": 0}

    def add(self, name: str) -> None:
        if self.counting:
            with self.lock:
                self.values[name] += 1


def _flood(url: str, tasks: int, stop: threading.Event, counters: Counters) -> None:
    async def main() -> None:
        limits = httpx.Limits(max_connections=tasks)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:

            async def one() -> None:
                while not stop.is_set():
                    response = await client.get(url + PATH, params={"nonce": os.urandom(32).hex()})
                    counters.add("flood_ok" if response.status_code == 200 else "flood_429")

            await asyncio.gather(*(one() for _ in range(tasks)))

    asyncio.run(main())


def _strict(url: str, policy: Policy, stop: threading.Event, counters: Counters) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            nonce = os.urandom(32)
            response = client.get(url + PATH, params={"nonce": nonce.hex()})
            try:
                response.raise_for_status()
                document = AttestationDocument.from_json(response.content)
                verify_document(document, policy, nonce=nonce)
            except (httpx.HTTPError, ProtocolError, VerificationError):
                counters.add("refused")
            else:
                counters.add("verified")


def run_mode(
    mode: str, *, seconds: float, warmup: float, flood: int, strict: int, report_ms: float
) -> dict[str, float]:
    root = Ed25519PrivateKey.generate()
    measurement = measure_software(demo_engine().description)
    attester = HardwareLikeAttester(SoftwareAttester(root, measurement), report_ms / 1000)
    built = create_app(attester, demo_engine(), EnclaveConfig(**MODES[mode]))  # type: ignore[arg-type]
    policy = Policy.software(
        root.public_key().public_bytes_raw(), measurement, require_fresh_nonce=True
    )
    counters, stop = Counters(), threading.Event()
    with ServerThread(built.app) as server:
        threads = [threading.Thread(target=_flood, args=(server.url, flood, stop, counters))]
        threads += [
            threading.Thread(target=_strict, args=(server.url, policy, stop, counters))
            for _ in range(strict)
        ]
        for thread in threads:
            thread.start()
        time.sleep(warmup)
        calls_before = attester.calls
        counters.counting = True
        time.sleep(seconds)
        counters.counting = False
        calls = attester.calls - calls_before
        stop.set()
        for thread in threads:
            thread.join(60)
    v = counters.values
    return {
        "verified_per_s": v["verified"] / seconds,
        "strict_refused_per_s": v["refused"] / seconds,
        "strict_success": v["verified"] / max(v["verified"] + v["refused"], 1),
        "flood_served_per_s": v["flood_ok"] / seconds,
        "flood_429_per_s": v["flood_429"] / seconds,
        "reports_per_s": calls / seconds,
        "nonces_per_report": (v["verified"] + v["flood_ok"]) / max(calls, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per mode")
    parser.add_argument("--warmup", type=float, default=2.5, help="seconds before counting")
    parser.add_argument("--flood", type=int, default=32, help="concurrent flood tasks")
    parser.add_argument("--strict", type=int, default=5, help="strict client threads")
    parser.add_argument("--report-ms", type=float, default=5.0, help="attester time per report")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    options = {
        "seconds": args.seconds,
        "warmup": args.warmup,
        "flood": args.flood,
        "strict": args.strict,
        "report_ms": args.report_ms,
    }
    results = {mode: run_mode(mode, **options) for mode in MODES}
    before, after = results["before"]["verified_per_s"], results["after"]["verified_per_s"]
    results["ratio"] = {"verified_after_over_before": after / before if before else float("inf")}
    if args.json:
        print(json.dumps(results))
        return
    print(
        f"flood: {args.flood} concurrent tasks; {args.strict} strict clients; "
        f"{args.report_ms:g} ms per report; {args.seconds:g} s measured per mode"
    )
    for mode in MODES:
        r = results[mode]
        print(
            f"{mode:6}  strict verified {r['verified_per_s']:6.1f}/s  refused "
            f"{r['strict_refused_per_s']:6.1f}/s ({r['strict_success']:4.0%} ok)"
            f" | flood served {r['flood_served_per_s']:6.1f}/s"
            f"  429 {r['flood_429_per_s']:6.1f}/s | reports {r['reports_per_s']:5.1f}/s"
            f"  nonces/report {r['nonces_per_report']:6.1f}"
        )
    ratio = results["ratio"]["verified_after_over_before"]
    print(f"fresh-nonce verifications/s under the flood, after / before: {ratio:.1f}x")


if __name__ == "__main__":
    main()
