"""The native mode (chunked OHTTP + Binary HTTP) against EHBP, measured in one run.

CPU time (``time.thread_time``), native and EHBP alternating, medians of several runs:
wall-clock numbers swing on a shared machine.

* per request: client seal + enclave open + enclave seal of the response + client open,
  a 1 KiB JSON request and a 1 KiB JSON response, padding on (the defaults);
* per SSE event: enclave seal (with padding) + client open of one ~150-byte event;
* end to end on the same one-enclave demo fleet, the SDK in each mode, interleaved:
  requests/s, p50/p99 latency (and what each adds over the engine alone), SSE events/s;
* wire bytes of one request and one 100-event streamed completion, padding on and off
  (computed from the protocol objects, so exact).

Target (issue 11): native <= 1.2x EHBP per request and per event.

Run: ``python bench/modes_bench.py [--requests 300] [--json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _timing import paired
from sealgate.client import SecureClient
from sealgate.client.demo import DemoFleet
from sealgate.client.native import OHTTP
from sealgate.enclave.engines.demo import create_demo_app
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.sealing.bhttp import MessageDecoder, Request, StreamEncoder
from sealgate.protocol.sealing.ehbp_request import RequestDecoder, RequestEncoder
from sealgate.protocol.sealing.hpke import PrivateKey
from sealgate.protocol.sealing.ohttp import ChunkedRequestOpener, ChunkedRequestSealer
from sealgate.protocol.sealing.padding import (
    DEFAULT_CHUNK_BUCKET,
    DEFAULT_REQUEST_BUCKET,
    SsePadder,
    json_padding,
    padded_field,
    padding_to,
    strip_sse_padding,
)
from sealgate.protocol.sealing.replay import http_date

from tests.servers import ServerThread

KEY = PrivateKey.generate()
CONFIG = KEY.key_config(1)
REQUEST_BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 940}]})
RESPONSE_BODY = json.dumps({"choices": [{"message": {"content": "y" * 980}}]}).encode()
EVENT = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":" token"},"finish_reason":null}]}\n\n'
)
HEADERS = ((b"content-type", b"application/json"), (b"authorization", b"Bearer sk-xxxxxxxx"))


def _lookup(key_id: int):  # type: ignore[no-untyped-def]
    return (CONFIG, KEY) if key_id == CONFIG.key_id else None


# -- native mode, sans-IO ----------------------------------------------------------------
def native_request_wire(body: bytes, bucket: int) -> tuple[bytes, ChunkedRequestSealer]:
    headers = (*HEADERS, (b"date", http_date(time.time()).encode()))
    message = Request(b"POST", b"https", b"", b"/v1/chat/completions", headers, body).to_bytes()
    message += bytes(padding_to(len(message), bucket))
    sealer = ChunkedRequestSealer(CONFIG)
    return sealer.header + sealer.seal_final(message), sealer


def native_response_head(bucket: int, sse: bool) -> tuple[StreamEncoder, bytes]:
    kind = b"text/event-stream" if sse else b"application/json"
    headers = [(b"content-type", kind)]
    size = len(StreamEncoder().response_head(200, headers))
    padding = padded_field(size, bucket) if bucket else None
    encoder = StreamEncoder()
    head = encoder.response_head(200, headers + ([padding] if padding else []))
    return encoder, head


def native_round_trip(bucket: int = DEFAULT_REQUEST_BUCKET, chunk: int = DEFAULT_CHUNK_BUCKET):
    """One request and its JSON response, both ways; returns the wire sizes."""
    wire, sealer = native_request_wire(REQUEST_BODY.encode(), bucket)
    opener = ChunkedRequestOpener(_lookup)
    decoder = MessageDecoder(request=True)
    for plaintext in opener.push(wire):
        decoder.push(plaintext)
    decoder.push(opener.finish())
    decoder.finish()
    response = opener.response_sealer()
    encoder, head = native_response_head(chunk, sse=False)
    tail = encoder.data(RESPONSE_BODY) + encoder.end()
    tail += bytes(padding_to(len(tail), chunk)) if chunk else b""
    out = response.start() + response.seal(head) + response.seal_final(tail)
    ropener, rdecoder = sealer.response_opener(), MessageDecoder(request=False)
    for plaintext in ropener.push(out):
        rdecoder.push(plaintext)
    rdecoder.push(ropener.finish())
    rdecoder.finish()
    return len(wire), len(out)


def native_stream(events: int, chunk: int = DEFAULT_CHUNK_BUCKET):
    """Seal and open a completion of ``events`` SSE events; returns the response wire size."""
    wire, sealer = native_request_wire(b"{}", DEFAULT_REQUEST_BUCKET)
    opener = ChunkedRequestOpener(_lookup)
    opener.push(wire)
    opener.finish()
    response = opener.response_sealer()
    encoder, head = native_response_head(chunk, sse=True)
    padder = SsePadder(chunk) if chunk else None
    ropener, rdecoder = sealer.response_opener(), MessageDecoder(request=False)
    total = 0

    def send(data: bytes) -> None:
        nonlocal total
        total += len(data)
        for plaintext in ropener.push(data):
            for event in rdecoder.push(plaintext):
                piece = getattr(event, "data", None)
                if piece is not None:
                    strip_sse_padding(piece)

    send(response.start() + response.seal(head))
    for _ in range(events):
        pieces = padder.push(EVENT) if padder else [EVENT]
        for piece in pieces:
            send(response.seal(encoder.data(piece)))
    tail = encoder.end()
    send(response.seal_final(tail + (bytes(padding_to(len(tail), chunk)) if chunk else b"")))
    rdecoder.push(ropener.finish())
    rdecoder.finish()
    return total


def native_event_cost():
    """A callable that seals and opens one padded SSE event on a long-lived stream."""
    wire, sealer = native_request_wire(b"{}", DEFAULT_REQUEST_BUCKET)
    opener = ChunkedRequestOpener(_lookup)
    opener.push(wire)
    opener.finish()
    response = opener.response_sealer()
    encoder, head = native_response_head(DEFAULT_CHUNK_BUCKET, sse=True)
    ropener, rdecoder = sealer.response_opener(), MessageDecoder(request=False)
    for plaintext in ropener.push(response.start() + response.seal(head)):
        rdecoder.push(plaintext)
    padder = SsePadder(DEFAULT_CHUNK_BUCKET)

    def one() -> None:
        for piece in padder.push(EVENT):
            for plaintext in ropener.push(response.seal(encoder.data(piece))):
                for event in rdecoder.push(plaintext):
                    strip_sse_padding(event.data)  # type: ignore[attr-defined]

    return one


# -- EHBP, sans-IO -------------------------------------------------------------------------
def ehbp_round_trip(bucket: int = DEFAULT_REQUEST_BUCKET, chunk: int = DEFAULT_CHUNK_BUCKET):
    body = REQUEST_BODY.encode()
    body += json_padding(len(body), bucket) if bucket else b""
    request = RequestEncoder(CONFIG, EHBP)
    wire = request.finish(body)
    decoder = RequestDecoder(EHBP, request.enc, [KEY])
    decoder.push(wire)
    decoder.finish()
    response = decoder.response_encoder()
    out_body = RESPONSE_BODY + (json_padding(len(RESPONSE_BODY), chunk) if chunk else b"")
    out = response.finish(out_body)
    rdecoder = request.response_decoder(response.nonce.hex())
    rdecoder.push(out)
    rdecoder.finish()
    return len(wire), len(out)


def ehbp_stream(events: int, chunk: int = DEFAULT_CHUNK_BUCKET) -> int:
    request = RequestEncoder(CONFIG, EHBP)
    decoder = RequestDecoder(EHBP, request.enc, [KEY])
    decoder.push(request.finish(b"{}"))
    response = decoder.response_encoder()
    rdecoder = request.response_decoder(response.nonce.hex())
    padder = SsePadder(chunk, length_prefixed=False) if chunk else None
    total = 0
    for _ in range(events):
        for piece in padder.push(EVENT) if padder else [EVENT]:
            data = response.push(piece)
            total += len(data)
            rdecoder.push(data)
    rdecoder.finish()
    return total


def ehbp_event_cost():
    request = RequestEncoder(CONFIG, EHBP)
    decoder = RequestDecoder(EHBP, request.enc, [KEY])
    decoder.push(request.finish(b"{}"))
    response = decoder.response_encoder()
    rdecoder = request.response_decoder(response.nonce.hex())
    padder = SsePadder(DEFAULT_CHUNK_BUCKET, length_prefixed=False)

    def one() -> None:
        for piece in padder.push(EVENT):
            rdecoder.push(response.push(piece))

    return one


def protocol(runs: int = 5) -> dict[str, dict[str, float]]:
    """Per-call CPU time (this thread's), native and EHBP timed in alternation.

    Each run gives medians over many alternating batches (:func:`_timing.paired`);
    the result is the median over ``runs`` runs, of the times and of the ratio.
    """
    out: dict[str, dict[str, float]] = {}
    for what, subject, baseline, pairs, batch in (
        ("per_request", native_round_trip, ehbp_round_trip, 400, 1),
        ("per_event", native_event_cost(), ehbp_event_cost(), 1000, 20),
    ):
        samples = [
            paired(subject, baseline, pairs=pairs, batch=batch, clock=time.thread_time)
            for _ in range(runs)
        ]
        out[what] = {
            "native": statistics.median(n for n, _ in samples),
            "ehbp": statistics.median(e for _, e in samples),
            "ratio": statistics.median(n / e for n, e in samples),
            "ratio_min": min(n / e for n, e in samples),
            "ratio_max": max(n / e for n, e in samples),
        }
    return out


def wire_bytes(events: int = 100) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, bucket, chunk in (
        ("padding on", DEFAULT_REQUEST_BUCKET, DEFAULT_CHUNK_BUCKET),
        ("padding off", 0, 0),
    ):
        nreq, nres = native_round_trip(bucket, chunk)
        ereq, eres = ehbp_round_trip(bucket, chunk)
        out[name] = {
            "native_request": nreq,
            "ehbp_request": ereq,
            "native_response": nres,
            "ehbp_response": eres,
            "native_stream": native_stream(events, chunk),
            "ehbp_stream": ehbp_stream(events, chunk),
        }
    return out


# -- end to end ----------------------------------------------------------------------------
CHAT = {"model": "sealgate-demo-echo", "messages": [{"role": "user", "content": "benchmark " * 20}]}
LONG = {**CHAT, "messages": [{"role": "user", "content": "token " * 2000}], "stream": True}


def _latencies(client: httpx.Client, n: int) -> list[float]:
    client.post("/v1/chat/completions", json=CHAT).raise_for_status()  # warm
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.post("/v1/chat/completions", json=CHAT).raise_for_status()
        out.append(time.perf_counter() - start)
    return out


def _summary(latencies: list[float]) -> dict[str, float]:
    latencies = sorted(latencies)
    return {
        "rps": len(latencies) / sum(latencies),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
    }


def _sse_rate(client: httpx.Client) -> float:
    events = 0
    start = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=LONG) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events += 1
    return events / (time.perf_counter() - start)


def end_to_end(requests: int, rounds: int = 3) -> dict[str, dict[str, float]]:
    engine = ServerThread(create_demo_app()).start()
    samples: dict[str, list[float]] = {"native": [], "ehbp": [], "engine": []}
    sse: dict[str, float] = {"native": 0.0, "ehbp": 0.0, "engine": 0.0}
    try:
        with (
            DemoFleet(1) as fleet,
            SecureClient(fleet.gateway_url, fleet.policy(), mode=OHTTP) as native,
            SecureClient(fleet.gateway_url, fleet.policy(), mode=EHBP) as ehbp,
        ):
            clients = {
                "native": native.httpx_client(),
                "ehbp": ehbp.httpx_client(),
                "engine": httpx.Client(base_url=engine.url, timeout=60),
            }
            for _ in range(rounds):  # interleaved, so drift hits every side alike
                for name, client in clients.items():
                    samples[name] += _latencies(client, requests // rounds)
                    sse[name] = max(sse[name], _sse_rate(client))
            for client in clients.values():
                client.close()
    finally:
        engine.stop()
    results = {
        name: {**_summary(values), "sse_events_s": sse[name]} for name, values in samples.items()
    }
    for name in ("native", "ehbp"):
        results[name]["added_p50_ms"] = results[name]["p50_ms"] - results["engine"]["p50_ms"]
        results[name]["added_p99_ms"] = results[name]["p99_ms"] - results["engine"]["p99_ms"]
    return results


def run(requests: int) -> dict[str, object]:
    return {"protocol": protocol(), "wire": wire_bytes(), "e2e": end_to_end(requests)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.requests)
    if args.json:
        print(json.dumps(results))
        return
    p = results["protocol"]
    for what in ("per_request", "per_event"):
        r = p[what]  # type: ignore[index]
        print(
            f"{what:12} native {r['native'] * 1e6:8.1f} µs  EHBP {r['ehbp'] * 1e6:8.1f} µs  "
            f"{r['ratio']:.2f}x (runs {r['ratio_min']:.2f}-{r['ratio_max']:.2f}x, CPU time)"
        )
    e2e = results["e2e"]
    for name in ("native", "ehbp", "engine"):
        r = e2e[name]  # type: ignore[index]
        extra = (
            f" added p50 {r['added_p50_ms']:.2f} ms p99 {r['added_p99_ms']:.2f} ms"
            if "added_p50_ms" in r
            else ""
        )
        print(
            f"{name:7} {r['rps']:7.0f} req/s (1 client)  p50 {r['p50_ms']:.2f} ms  "
            f"p99 {r['p99_ms']:.2f} ms  SSE {r['sse_events_s']:.0f} events/s{extra}"
        )
    for name, sizes in results["wire"].items():  # type: ignore[union-attr]
        print(name, sizes)


if __name__ == "__main__":
    main()
