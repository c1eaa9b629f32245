"""Protocol costs as ratios to cryptographic floors measured in the same run.

* request seal / open vs a bare X25519 key generation + exchange (the KEM's floor);
* per-frame seal / open vs a bare AES-256-GCM seal / open of the same bytes.

Run: ``python bench/protocol_bench.py`` (add ``--json`` for machine-readable output).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare, fmt_us
from sealgate.protocol import EHBP, PrivateKey, RequestDecoder, RequestEncoder


def run() -> dict[str, dict[str, float]]:
    key = PrivateKey.generate()
    config = key.key_config()
    peer = X25519PrivateKey.generate().public_key()
    body = os.urandom(1024)

    def x25519_floor() -> None:
        X25519PrivateKey.generate().exchange(peer)

    def seal() -> None:
        RequestEncoder(config, EHBP).finish(body)

    encoder = RequestEncoder(config, EHBP)
    wire = encoder.finish(body)

    def open_() -> None:
        decoder = RequestDecoder(EHBP, encoder.enc, [key])
        decoder.push(wire)
        decoder.finish()

    static = X25519PrivateKey.generate()

    def x25519_exchange_floor() -> None:
        static.exchange(peer)

    results: dict[str, dict[str, float]] = {}
    s, b = compare(seal, x25519_floor, number=300)
    results["EHBP request seal (1 KiB) vs X25519 keygen+exchange"] = {"subject": s, "floor": b}
    s, b = compare(open_, x25519_exchange_floor, number=300)
    results["EHBP request open (1 KiB) vs one X25519 exchange"] = {"subject": s, "floor": b}

    decoder = RequestDecoder(EHBP, encoder.enc, [key])
    decoder.push(wire)
    response = decoder.response_encoder()
    aead = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    for size in (64, 1024, 16 * 1024):
        frame = os.urandom(size)
        s, b = compare(
            lambda f=frame: response.push(f),
            lambda f=frame: aead.encrypt(nonce, f, b""),
            number=3000,
        )
        results[f"frame seal ({size} B) vs AES-256-GCM seal"] = {"subject": s, "floor": b}

    req = RequestEncoder(config, EHBP)
    rdec_source = RequestDecoder(EHBP, req.enc, [key])
    rdec_source.push(req.finish())
    renc = rdec_source.response_encoder()
    frames = [renc.push(os.urandom(1024)) for _ in range(20000)]
    ct = aead.encrypt(nonce, os.urandom(1024), b"")
    rdec = req.response_decoder(renc.nonce.hex())
    it = iter(frames)
    s, b = compare(lambda: rdec.push(next(it)), lambda: aead.decrypt(nonce, ct, b""), number=3000)
    results["frame open (1024 B) vs AES-256-GCM open"] = {"subject": s, "floor": b}
    return results


def main() -> None:
    results = run()
    if "--json" in sys.argv:
        print(
            json.dumps({k: {**v, "ratio": v["subject"] / v["floor"]} for k, v in results.items()})
        )
        return
    print(f"{'measurement':55} {'sealgate':>11} {'floor':>11}  ratio")
    for name, r in results.items():
        ratio = r["subject"] / r["floor"]
        print(f"{name:55} {fmt_us(r['subject'])} {fmt_us(r['floor'])}  {ratio:.2f}x")


if __name__ == "__main__":
    main()
