"""Gateway throughput and added latency vs nginx, on the same upstream, in the same run.

Starts (all on 127.0.0.1):

* an nginx "enclave stand-in" that answers every request with 1 KiB and serves the
  static health, key and attestation endpoints the gateway polls;
* nginx as a reverse proxy to it (keep-alive upstream, access log off);
* the sealgate gateway in front of it (access log off, same keep-alive);

then runs wrk against the upstream directly, nginx and the gateway, alternating,
and prints requests/s, p50/p99 latency and the ratios. Requires ``nginx`` and ``wrk``
(Debian: ``apt-get install nginx wrk``).

Run: ``python bench/gateway_bench.py [--duration 10] [--connections 32] [--workers 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sealgate.protocol.public.keyconfig import encode_key_configs
from sealgate.protocol.sealing.hpke import PrivateKey

NGINX_CONF = """
daemon off;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    upstream enclave {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{upstream};
        location = /healthz {{ default_type application/json; return 200 '{{"status":"ok","load":0}}'; }}
        location = /.well-known/ohttp-keys {{ default_type application/ohttp-keys; alias {tmp}/keys; }}
        location = /.well-known/sealgate-attestation {{ default_type application/json; return 200 '{{}}'; }}
        location / {{ default_type application/octet-stream; root {tmp}; try_files /payload =404; }}
    }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            proxy_pass http://enclave;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(
    url: str, duration: int, connections: int, threads: int, header: str | None
) -> dict[str, float]:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if header:
        args[1:1] = ["-H", header]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        match = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def wait_for(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def run(duration: int, connections: int, workers: int, rounds: int) -> dict[str, object]:
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install nginx wrk")
    tmp = Path(tempfile.mkdtemp(prefix="sealgate-bench-"))
    tmp.chmod(0o755)  # nginx workers may run as another user when started by root
    key = PrivateKey.generate().key_config(1)
    (tmp / "keys").write_bytes(encode_key_configs([key]))
    (tmp / "payload").write_bytes(os.urandom(1024))
    upstream, proxy, gateway_port = free_port(), free_port(), free_port()
    (tmp / "nginx.conf").write_text(
        NGINX_CONF.format(tmp=tmp, upstream=upstream, proxy=proxy, workers=workers)
    )
    nginx = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sealgate.gateway",
            "--enclave",
            f"http://127.0.0.1:{upstream}",
            "--port",
            str(gateway_port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{upstream}/healthz")
        wait_for(f"http://127.0.0.1:{proxy}/healthz")
        wait_for(f"http://127.0.0.1:{gateway_port}/healthz")
        header = f"Sealgate-Key-Id: {key.fingerprint}"
        check = httpx.get(
            f"http://127.0.0.1:{gateway_port}/v1/x", headers={"Sealgate-Key-Id": key.fingerprint}
        )
        assert check.status_code == 200 and len(check.content) == 1024, check.text
        threads = 2
        results: dict[str, list[dict[str, float]]] = {"direct": [], "nginx": [], "gateway": []}
        for _ in range(rounds):  # alternate so that machine noise hits both sides alike
            results["direct"].append(
                wrk(f"http://127.0.0.1:{upstream}/v1/x", duration, connections, threads, None)
            )
            results["nginx"].append(
                wrk(f"http://127.0.0.1:{proxy}/v1/x", duration, connections, threads, None)
            )
            results["gateway"].append(
                wrk(f"http://127.0.0.1:{gateway_port}/v1/x", duration, connections, threads, header)
            )
        best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in results.items()}
    finally:
        gateway.send_signal(signal.SIGTERM)
        nginx.send_signal(signal.SIGQUIT)
        gateway.wait(20)
        nginx.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)
    direct, ngx, gw = best["direct"], best["nginx"], best["gateway"]
    return {
        "connections": connections,
        "workers": workers,
        "direct": direct,
        "nginx": ngx,
        "gateway": gw,
        "throughput_ratio_gateway_to_nginx": gw["rps"] / ngx["rps"],
        "p50_added_ms_nginx": ngx["p50_ms"] - direct["p50_ms"],
        "p50_added_ms_gateway": gw["p50_ms"] - direct["p50_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="gateway and nginx workers")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.duration, args.connections, args.workers, args.rounds)
    if args.json:
        print(json.dumps(result))
        return
    for name in ("direct", "nginx", "gateway"):
        r = result[name]
        assert isinstance(r, dict)
        print(
            f"{name:8} {r['rps']:10.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  non-2xx {r['non_2xx']:.0f}"
        )
    print(f"gateway / nginx throughput: {result['throughput_ratio_gateway_to_nginx']:.2f}x")
    print(
        f"p50 added over direct: nginx {result['p50_added_ms_nginx']:.2f} ms, gateway {result['p50_added_ms_gateway']:.2f} ms"
    )


if __name__ == "__main__":
    main()
