"""Run every benchmark and write a Markdown table of ratios (``bench/results.md``).

Each figure comes from one run that measures both sides (subject and baseline).
The gateway-vs-nginx row needs ``nginx`` and ``wrk`` (``apt-get install nginx wrk``)
and is marked skipped without them; the llama.cpp rows need the ``engine-tests`` extra.

Run: ``python bench/run_all.py [--quick] [--output bench/results.md]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(script: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / script), "--json", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # 1,000 streams need fds

    rows: list[tuple[str, str, str, str]] = []  # (what, sealgate, baseline, ratio)
    protocol = _run("protocol_bench.py")
    for name, r in protocol.items():
        if name == "post-quantum wire bytes":
            rows.append(
                (
                    "native request bytes (1 KiB body): MLKEM768-X25519 vs X25519",
                    f"{r['hybrid']} B",
                    f"{r['x25519']} B",
                    f"+{r['added']} B",
                )
            )
        if "subject" not in r:  # summaries of the rows above
            continue
        rows.append(
            (
                name,
                f"{r['subject'] * 1e6:.1f} µs",
                f"{r['floor'] * 1e6:.1f} µs",
                f"{r['ratio']:.2f}x",
            )
        )

    if shutil.which("nginx") and shutil.which("wrk"):
        duration = "3" if args.quick else "10"
        gw = _run(
            "gateway_bench.py",
            "--duration",
            duration,
            "--workers",
            "2",
            "--rounds",
            "1" if args.quick else "2",
        )
        rows.append(
            (
                "gateway req/s vs nginx (1 KiB, 32 conns, 2 workers each)",
                f"{gw['gateway']['rps']:.0f}",
                f"{gw['nginx']['rps']:.0f}",
                f"{gw['throughput_ratio_gateway_to_nginx']:.2f}x",
            )
        )
        rows.append(
            (
                "p50 added latency over direct upstream",
                f"{gw['p50_added_ms_gateway']:.2f} ms",
                f"{gw['p50_added_ms_nginx']:.2f} ms (nginx)",
                "—",
            )
        )
    else:
        rows.append(("gateway req/s vs nginx", "skipped: nginx or wrk not installed", "", ""))

    e2e = _run("e2e_bench.py", "--requests", "200" if args.quick else "600")
    t = e2e["throughput"]
    s, p = t["sealed"], t["plain"]
    rows.append(
        (
            "end to end req/s: encrypted (SDK→gateway→enclave→engine) vs plaintext (httpx→engine)",
            f"{s['rps']:.0f}",
            f"{p['rps']:.0f}",
            f"{s['rps'] / p['rps']:.2f}x",
        )
    )
    rows.append(
        (
            "end to end p50 / p99 added latency",
            f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} ms",
            f"{p['p50_ms']:.2f} / {p['p99_ms']:.2f} ms",
            f"+{s['p50_ms'] - p['p50_ms']:.2f} / +{s['p99_ms'] - p['p99_ms']:.2f} ms",
        )
    )
    rows.append(
        (
            "SSE events/s (one long streamed completion)",
            f"{t['sealed_sse_events_s']:.0f}",
            f"{t['plain_sse_events_s']:.0f}",
            f"{t['sealed_sse_events_s'] / t['plain_sse_events_s']:.2f}x",
        )
    )
    m = e2e["memory"]
    rows.append(
        (
            f"gateway peak RSS with {m['streams']} concurrent idle streams",
            f"{m['peak_rss_mib']:.1f} MiB",
            f"{m['idle_rss_mib']:.1f} MiB idle",
            f"{m['per_stream_kib']:.1f} KiB/stream",
        )
    )

    modes = _run("modes_bench.py", "--requests", "90" if args.quick else "300")
    for what, label in (("per_request", "request"), ("per_event", "SSE event")):
        r = modes["protocol"][what]
        rows.append(
            (
                f"native mode vs EHBP: seal+open per {label} (padding on; target ≤ 1.2x)",
                f"{r['native'] * 1e6:.1f} µs",
                f"{r['ehbp'] * 1e6:.1f} µs (EHBP)",
                f"{r['ratio']:.2f}x (CPU time, median of runs)",
            )
        )
    n, e = modes["e2e"]["native"], modes["e2e"]["ehbp"]
    rows.append(
        (
            "native vs EHBP end to end: added p50 / p99 over the engine (one client)",
            f"+{n['added_p50_ms']:.2f} / +{n['added_p99_ms']:.2f} ms",
            f"+{e['added_p50_ms']:.2f} / +{e['added_p99_ms']:.2f} ms (EHBP)",
            f"{n['p50_ms'] / e['p50_ms']:.2f}x p50",
        )
    )
    rows.append(
        (
            "native vs EHBP end to end: SSE events/s",
            f"{n['sse_events_s']:.0f}",
            f"{e['sse_events_s']:.0f} (EHBP)",
            f"{n['sse_events_s'] / e['sse_events_s']:.2f}x",
        )
    )
    for setting, sizes in modes["wire"].items():
        rows.append(
            (
                f"wire bytes, {setting}: 1 KiB request / 1 KiB JSON response / 100-event stream",
                f"{sizes['native_request']} / {sizes['native_response']} / {sizes['native_stream']}",
                f"{sizes['ehbp_request']} / {sizes['ehbp_response']} / {sizes['ehbp_stream']} (EHBP)",
                f"{sizes['native_stream'] / sizes['ehbp_stream']:.2f}x stream",
            )
        )

    client = _run("client_bench.py", "--requests", "100" if args.quick else "300")
    for key, r in client.items():
        if key.startswith("verify_"):
            rows.append(
                (
                    f"fleet verification, {key.split('_')[1]} enclaves: cold vs cached",
                    f"{r['cold_ms']:.1f} ms",
                    f"{r['cached_ms']:.1f} ms",
                    f"{r['cold_ms'] / r['cached_ms']:.1f}x",
                )
            )
    attestation = _run("attestation_bench.py")
    for name, r in attestation.items():
        rows.append(
            (
                f"{name} evidence verification: warm vs cached (cold {r['cold_ms']:.1f} ms)",
                f"{r['warm_ms']:.2f} ms",
                f"{r['cached_ms'] * 1000:.1f} µs",
                f"{r['warm_ms'] / r['cached_ms']:.0f}x",
            )
        )
    gpu = _run("gpu_bench.py")
    rows.append(
        (
            f"nvidia-gpu verification (33 measurements): warm vs cached (cold {gpu['cold_ms']:.1f} ms)",
            f"{gpu['warm_ms']:.2f} ms",
            f"{gpu['cached_ms']:.2f} ms",
            f"{gpu['warm_ms'] / gpu['cached_ms']:.0f}x",
        )
    )

    affinity = {
        (r["affinity"], r["enclave_leaves_after_round"]): r
        for r in _run("affinity_bench.py")["runs"]
    }
    for leave, label in ((None, "stable fleet"), (2, "one of 3 enclaves leaves after turn 2")):
        on, off = affinity[(True, leave)], affinity[(False, leave)]
        rows.append(
            (
                f"turns reaching the enclave holding their prefix, cache affinity on vs off "
                f"(50 conversations x 5 turns, {label})",
                f"{on['hit_share'] * 100:.1f} %",
                f"{off['hit_share'] * 100:.1f} %",
                "—",
            )
        )

    engine = _run("engine_bench.py", "--rounds", "2" if args.quick else "5")
    if "skipped" in engine:
        rows.append(("llama.cpp through sealgate", f"skipped: {engine['skipped']}", "", ""))
    else:
        for concurrency, by_mode in engine["by_concurrency"].items():
            direct = by_mode["direct"]
            for name, label in (("native", "native mode, padded"), ("ehbp", "EHBP")):
                r = by_mode[name]
                rows.append(
                    (
                        f"llama.cpp tokens/s per stream, {concurrency} concurrent, {label} vs direct",
                        f"{r['tokens_s']:.0f}",
                        f"{direct['tokens_s']:.0f}",
                        f"{r['tokens_s_ratio']:.3f}x",
                    )
                )
                rows.append(
                    (
                        f"llama.cpp time to first token p50, {concurrency} concurrent, {label} vs direct",
                        f"{r['ttft_p50_ms']:.2f} ms",
                        f"{direct['ttft_p50_ms']:.2f} ms",
                        f"{r['added_ttft_p50_ms']:+.2f} ms",
                    )
                )

    failover = _run("failover_bench.py")
    multi, single = failover["runs"]
    rows.append(
        (
            f"one of 3 enclaves SIGKILLed every 2 s under load ({multi['kills']} kills): "
            "client-visible errors, multi-recipient N=3 vs single-recipient N=1 "
            "(all ForwardingFailed: requests in flight on the killed enclave)",
            f"{multi['churn_errors']} of {multi['churn_requests'] + multi['churn_errors']}",
            f"{single['churn_errors']} of {single['churn_requests'] + single['churn_errors']}",
            "—",
        )
    )
    rows.append(
        (
            "added p99 latency under that churn (vs the same fleet stable), N=3 vs N=1",
            f"{multi['added_p99_ms']:+.1f} ms",
            f"{single['added_p99_ms']:+.1f} ms",
            "—",
        )
    )
    rows.append(
        (
            "client -> gateway requests per answer under churn, N=3 vs N=1",
            f"{multi['client_requests_per_answer']:.3f}",
            f"{single['client_requests_per_answer']:.3f}",
            "—",
        )
    )
    wrap = failover["wrap_cost"]
    rows.append(
        (
            "sealing a 2 KiB request: wrapped to N=3 vs N=1 enclave keys (multi-recipient)",
            f"{wrap['multi_n3_us']:.0f} µs",
            f"{wrap['multi_n1_us']:.0f} µs",
            f"{wrap['multi_n3_us'] / wrap['multi_n1_us']:.2f}x",
        )
    )

    header = (
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}.\n\n"
    )
    table = "| measurement | sealgate | baseline | ratio |\n|---|---|---|---|\n"
    table += "".join(f"| {a} | {b} | {c} | {d} |\n" for a, b, c, d in rows)
    args.output.write_text("# Benchmark results\n\n" + header + table)
    print(header + table)


if __name__ == "__main__":
    main()
