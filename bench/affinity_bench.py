"""Cache affinity: how many turns reach the enclave that holds their conversation's prefix.

A synthetic multi-turn workload (default 50 conversations x 5 turns, interleaved by
round) runs through a real loopback fleet (3 enclaves of one model, a gateway, the
SDK in native mode). A turn after the first "hits" when it lands on the enclave that
served the conversation's previous turn - the one whose KV cache holds the prefix.
Four runs: without and with ``cache_affinity``, on a stable fleet and with one
enclave leaving after round 2. Prints a JSON summary.

    .venv/bin/python bench/affinity_bench.py [--conversations 50] [--turns 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sealgate.client import ENCLAVE_HEADER, ExpectedMeasurement, Policy, SecureClient
from sealgate.gateway import Discovery

from tests.loopback import LoopbackFleet

MODEL = "bench-model"


def _messages(number: int, turn: int) -> list[dict[str, str]]:
    history = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": f"conversation {number}: opening question"},
    ]
    for earlier in range(turn):
        history += [
            {"role": "assistant", "content": f"answer {earlier}"},
            {"role": "user", "content": f"follow-up {earlier}"},
        ]
    return history


def _wait_unhealthy(gateway_url: str, count: int, deadline: float = 20.0) -> None:
    """Until the gateway's directory marks ``count`` enclaves healthy (bounded)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        listing = httpx.get(gateway_url + "/.well-known/sealgate-fleet", timeout=5).json()
        if sum(e["healthy"] for e in listing["enclaves"]) == count:
            return
        time.sleep(0.1)
    raise RuntimeError("the gateway did not notice the enclave leaving")


def run(conversations: int, turns: int, affinity: bool, leave_after: int | None) -> dict:
    fleet = LoopbackFleet()
    try:
        placed = [fleet.model_enclave((MODEL,)) for _ in range(3)]
        gw = fleet.gateway(Discovery(static=[s.url for s, _ in placed]))
        policy = Policy.software(fleet.root.public_key().public_bytes_raw()).with_measurements(
            ExpectedMeasurement("software", {"measurement": placed[0][1].hex()})
        )
        secure = SecureClient(gw.url, policy, cache_affinity=affinity)
        with secure, secure.httpx_client() as http:
            last: dict[int, str] = {}
            moved_at: dict[int, str] = {}
            before: dict[int, str] = {}
            on_leaver = 0
            hits = counted = 0
            hits_after = counted_after = 0
            for turn in range(turns):
                if leave_after is not None and turn == leave_after:
                    leaver = hashlib.sha256(placed[0][0].url.encode()).hexdigest()[:12]
                    on_leaver = sum(e == leaver for e in last.values())
                    before = dict(last)
                    placed[0][0].stop()
                    _wait_unhealthy(gw.url, 2)
                    secure.fleet.refresh()  # the client's periodic refresh
                for number in range(conversations):
                    reply = http.post(
                        "/v1/chat/completions",
                        json={"model": MODEL, "messages": _messages(number, turn)},
                    )
                    reply.raise_for_status()
                    enclave = reply.headers[ENCLAVE_HEADER].split(";")[0]
                    if turn > 0:
                        hit = last[number] == enclave
                        hits, counted = hits + hit, counted + 1
                        if leave_after is not None and turn >= leave_after:
                            hits_after, counted_after = hits_after + hit, counted_after + 1
                    last[number] = enclave
                    if leave_after is not None and turn == leave_after:
                        moved_at[number] = enclave
        result = {
            "affinity": affinity,
            "enclave_leaves_after_round": leave_after,
            "turns_counted": counted,
            "prefix_hits": hits,
            "hit_share": round(hits / counted, 4),
        }
        if leave_after is not None:
            result["hit_share_from_leave_on"] = round(hits_after / counted_after, 4)
            # Minimal movement: with affinity, exactly the leaver's conversations move.
            result["conversations_on_leaver"] = on_leaver
            result["conversations_moved_when_it_left"] = sum(
                1 for n, e in before.items() if moved_at[n] != e
            )
        return result
    finally:
        fleet.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="one line of JSON (for run_all)")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results = [
        run(args.conversations, args.turns, affinity, leave)
        for leave in (None, 2)
        for affinity in (False, True)
    ]
    summary = {"enclaves": 3, "conversations": args.conversations, "turns": args.turns}
    print(json.dumps({**summary, "runs": results}, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
