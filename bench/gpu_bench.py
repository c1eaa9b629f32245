"""NVIDIA GPU verification cost over the real 2023 Hopper capture (33 golden measurements).

* cold: nothing verified yet (NVIDIA roots unloaded, device chain and both RIMs unverified);
* warm: roots loaded, but the device chain and both RIMs verified again (XML-DSig included);
* cached: the chain and RIMs already verified (a fleet's GPUs share RIMs, a GPU keeps its
  chain): SPDM parse, report signature, FWID, opaque data and measurement matching only.

Also the cost per 8-GPU document in the cached case. Run: ``python bench/gpu_bench.py [--json]``
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

from sealgate.client.policy import GpuPolicy
from sealgate.client.verification import Verification
from sealgate.client.verify.nvidia import GpuEvidence, verify_gpu
from sealgate.client.verify.nvidia import gpu as gpu_module

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "nvidia-gpu"
WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp()


def _median(fn, number: int) -> float:
    samples = []
    for _ in range(number):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _clear(roots: bool) -> None:
    gpu_module._device_path.cache_clear()
    gpu_module._rim_path.cache_clear()
    gpu_module._verified_rim.cache_clear()
    if roots:
        gpu_module._root.cache_clear()


def run() -> dict[str, float]:
    if not VECTORS.is_dir():
        sys.exit(f"vectors not found at {VECTORS}")
    report = bytes.fromhex(
        "".join((VECTORS / "evidence_2023/attestationReport.txt").read_text().split())
    )
    chain = (VECTORS / "evidence_2023/gpuAkCertChain.txt").read_bytes()
    rims = [
        (VECTORS / "rims/Driver_RIM_test_no_gpu.swidtag").read_bytes(),
        (VECTORS / "rims/1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes(),
    ]
    evidence = GpuEvidence(report, chain)

    def verify() -> None:
        record = Verification("bench", "nvidia-gpu")
        verify_gpu(evidence, rims, GpuPolicy(), record, WHEN, expected_nonce=report[4:36])
        assert record.ok

    _clear(roots=True)
    start = time.perf_counter()
    verify()
    cold = time.perf_counter() - start

    def warm_once() -> None:
        _clear(roots=False)
        verify()

    warm = _median(warm_once, 20)
    verify()  # fill the caches
    cached = _median(verify, 50)
    return {
        "cold_ms": cold * 1000,
        "warm_ms": warm * 1000,
        "cached_ms": cached * 1000,
        "cached_8_gpus_ms": cached * 8 * 1000,
    }


def main() -> None:
    results = run()
    if "--json" in sys.argv:
        print(json.dumps(results))
        return
    print(
        f"nvidia-gpu cold {results['cold_ms']:7.2f} ms   warm {results['warm_ms']:6.2f} ms   "
        f"cached {results['cached_ms']:6.2f} ms   (8 GPUs cached {results['cached_8_gpus_ms']:.1f} ms)"
    )


if __name__ == "__main__":
    main()
