"""A real engine: llama.cpp directly vs through sealgate, same engine, prompts and run.

The engine is ``llama-cpp-python[server]`` (the ``engine-tests`` extra) with a
random-weight llama model written here (tests/engines/llama_server.py). For each of
direct (httpx -> engine), native mode (SecureClient's default: chunked OHTTP, padded
requests and 128-byte response buckets) and EHBP, at 1 and 4 concurrent streams, rounds
interleaved: tokens/s per stream (decode rate between the first and the last token) and
time to first token. Greedy decoding, so every mode streams the same tokens.

llama-cpp-python's server runs one completion at a time, so 4 "concurrent" streams queue
at the engine: their time to first token includes waiting for the others. The default
model is small but not tiny (hundreds of tokens/s here); ``--tiny`` uses the test suite's
width-64 model, thousands of tokens/s, a worst case for per-token overhead.

With two or more cores the engine is pinned to one core and sealgate, with the load
generator, to the rest (``--shared-cores`` turns that off): on a CPU-only machine the
engine otherwise competes with sealgate for the same cores, which a GPU engine does not.

Run: ``python bench/engine_bench.py [--rounds 5] [--tokens 128] [--tiny] [--shared-cores] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sealgate.client import SecureClient
from sealgate.client.demo import DemoFleet
from sealgate.protocol.public.modes import EHBP

from tests.engines.llama_server import (
    CHAT_MODEL,
    LlamaServer,
    missing_engine,
    write_tiny_llama,
)

PROMPTS = [
    "Describe the harbour at dawn.",
    "List three uses for a paperclip.",
    "Why is the sky blue?",
    "Write a short note to a neighbour.",
]


def _one_stream(client: httpx.Client, prompt: str, tokens: int) -> dict[str, float]:
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "temperature": 0.0,
        "stream": True,
    }
    start = time.perf_counter()
    stamps: list[float] = []
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                stamps.append(time.perf_counter())
    if len(stamps) < 2:
        raise RuntimeError(f"the engine streamed {len(stamps)} tokens; expected {tokens}")
    return {
        "ttft_ms": (stamps[0] - start) * 1000,
        "tokens_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
        "tokens": len(stamps),
    }


def _batch(clients: list[httpx.Client], tokens: int) -> list[dict[str, float]]:
    results: list[dict[str, float]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            result = _one_stream(clients[i], PROMPTS[i % len(PROMPTS)], tokens)
        except BaseException as exc:
            errors.append(exc)
            return
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _summary(samples: list[dict[str, float]]) -> dict[str, float]:
    return {
        "tokens_s": statistics.median(s["tokens_s"] for s in samples),
        "ttft_p50_ms": statistics.median(s["ttft_ms"] for s in samples),
        "streams": len(samples),
    }


def _pin(cpus: set[int] | None) -> None:
    """Run this process, and every process it starts from now on, on ``cpus``."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def run(rounds: int, tokens: int, tiny: bool, pin: bool) -> dict[str, object]:
    shape = {} if tiny else {"n_embd": 512, "n_layer": 8, "n_head": 8, "n_ff": 1536}
    everything = os.sched_getaffinity(0)
    # --pin: the engine on the first core, sealgate and the load generator on the others,
    # as an engine on its own accelerator would be; otherwise all share every core.
    engine_cpus = {min(everything)} if pin else None
    sealgate_cpus = (everything - {min(everything)}) if pin else None
    with tempfile.TemporaryDirectory(prefix="sealgate-engine-bench-") as tmp:
        model = write_tiny_llama(Path(tmp) / "model.gguf", **shape)  # type: ignore[arg-type]
        _pin(engine_cpus)
        engine = LlamaServer(model, Path(tmp) / "server.log", n_ctx=2048)
        with engine:  # started here, under the engine's pinning
            _pin(sealgate_cpus)
            results = _measure(engine, rounds, tokens)
    for by_mode in results.values():
        direct = by_mode["direct"]
        for name in ("native", "ehbp"):
            mode = by_mode[name]
            mode["tokens_s_ratio"] = mode["tokens_s"] / direct["tokens_s"]
            mode["added_ttft_p50_ms"] = mode["ttft_p50_ms"] - direct["ttft_p50_ms"]
    return {
        "model": "tiny" if tiny else "small",
        "tokens": tokens,
        "pinned": pin,
        "by_concurrency": results,
    }


def _measure(engine: LlamaServer, rounds: int, tokens: int) -> dict[str, dict[str, Any]]:
    with (
        DemoFleet(2, upstream=engine.url) as fleet,
        SecureClient(fleet.gateway_url, fleet.policy()) as native,
        SecureClient(fleet.gateway_url, fleet.policy(), mode=EHBP) as ehbp,
    ):
        native.verify()
        ehbp.verify()
        makers = {
            "direct": lambda: httpx.Client(base_url=engine.url, timeout=300),
            "native": lambda: native.httpx_client(timeout=300),
            "ehbp": lambda: ehbp.httpx_client(timeout=300),
        }
        results: dict[str, dict[str, Any]] = {}
        for concurrency in (1, 4):
            clients = {name: [make() for _ in range(concurrency)] for name, make in makers.items()}
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in makers}
            for name in makers:  # warm: connections, model in memory, prompt cache
                _batch(clients[name], 8)
            for _ in range(rounds):
                for name in makers:
                    samples[name] += _batch(clients[name], tokens)
            for group in clients.values():
                for client in group:
                    client.close()
            results[f"{concurrency}"] = {name: _summary(s) for name, s in samples.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--tiny", action="store_true", help="the test suite's width-64 model")
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="do not pin the engine to a core of its own (the default with 2+ cores)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    pin = not args.shared_cores and len(os.sched_getaffinity(0)) >= 2
    reason = missing_engine()
    if reason is not None:
        result: dict[str, object] = {"skipped": reason}
    else:
        result = run(args.rounds, args.tokens, args.tiny, pin)
    if args.json:
        print(json.dumps(result))
        return
    if "skipped" in result:
        print(f"skipped: {reason}")
        return
    where = "engine pinned to its own core" if result["pinned"] else "all on shared cores"
    print(f"model: {result['model']}, {result['tokens']} tokens per stream, greedy, {where}")
    for concurrency, by_mode in result["by_concurrency"].items():  # type: ignore[attr-defined]
        for name, r in by_mode.items():
            extra = ""
            if name != "direct":
                extra = (
                    f"  {r['tokens_s_ratio']:.3f}x tokens/s, {r['added_ttft_p50_ms']:+.2f} ms TTFT"
                )
            print(
                f"{concurrency} stream(s) {name:7} {r['tokens_s']:8.1f} tokens/s per stream  "
                f"TTFT p50 {r['ttft_p50_ms']:7.2f} ms{extra}"
            )


if __name__ == "__main__":
    main()
