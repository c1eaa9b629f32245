"""Hardware evidence verification time: cold (first verification, roots not yet loaded),
warm (full re-verification) and cached (the client's per-document cache hit).

Uses the real captures in ../shared/vectors (SEV-SNP Genoa report, TDX v4 quote).
Run: ``python bench/attestation_bench.py``
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

from sealgate.client.policy import SnpPolicy, TdxPolicy
from sealgate.client.verification import Verification
from sealgate.client.verify.sev_snp import verify_snp
from sealgate.client.verify.tdx import Collateral, verify_tdx

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def _time(fn, number: int) -> float:
    samples = []
    for _ in range(number):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run() -> dict[str, dict[str, float]]:
    if not VECTORS.is_dir():
        sys.exit(f"vectors not found at {VECTORS}")
    bundle = json.loads(
        (VECTORS / "sev-snp-tinfoil-bundle" / "attestation-bundle.json").read_text()
    )
    report = gzip.decompress(base64.b64decode(bundle["enclaveAttestationReport"]["body"]))
    vcek = base64.b64decode(bundle["vcek"])
    snp_when = dt.datetime(2026, 1, 22, tzinfo=dt.UTC).timestamp()
    quote = (VECTORS / "tdx-quote-v4" / "quote.bin").read_bytes()
    collateral = Collateral.from_directory(VECTORS / "tdx-quote-v4" / "collateral", "90c06f000000")
    tdx_when = dt.datetime(2026, 1, 20, tzinfo=dt.UTC).timestamp()

    cases = {
        "sev-snp": lambda: verify_snp(report, vcek, SnpPolicy(), Verification("bench"), snp_when),
        "tdx": lambda: verify_tdx(quote, collateral, TdxPolicy(), Verification("bench"), tdx_when),
    }
    results = {}
    for name, fn in cases.items():
        start = time.perf_counter()
        fn()  # cold: shipped roots parsed on first use
        cold = time.perf_counter() - start
        warm = _time(fn, 30)
        evidence = report if name == "sev-snp" else quote
        cache = {hashlib.sha256(evidence).hexdigest(): object()}
        cached = _time(lambda e=evidence, c=cache: c.get(hashlib.sha256(e).hexdigest()), 1000)
        results[name] = {"cold_ms": cold * 1000, "warm_ms": warm * 1000, "cached_ms": cached * 1000}
    return results


def main() -> None:
    results = run()
    if "--json" in sys.argv:
        print(json.dumps(results))
        return
    for name, r in results.items():
        print(
            f"{name:8} cold {r['cold_ms']:7.2f} ms   warm {r['warm_ms']:6.2f} ms   cached {r['cached_ms'] * 1000:6.1f} µs"
            f"   (warm/cached {r['warm_ms'] / r['cached_ms']:.0f}x)"
        )


if __name__ == "__main__":
    main()
