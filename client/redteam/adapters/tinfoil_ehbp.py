"""``--client-cmd`` adapter: Tinfoil's PyPI ``tinfoil-ehbp`` client.

Reads SEALGATE_REDTEAM_URL / _PROMPT / _STREAM / _MODEL; prints one JSON line
``{"status", "content"}``; exit 1 when the client refuses (raises), 2 if not installed.
"""

from __future__ import annotations

import importlib
import json
import os
import sys


def main() -> int:
    try:
        # Tinfoil's client is the program under test, not a sealgate dependency: loaded by
        # name so that sealgate never declares (or silently requires) it.
        ehbp = importlib.import_module("ehbp")
        import httpx
    except ImportError as error:
        print(f"tinfoil-ehbp is not installed: {error}", file=sys.stderr)
        return 2
    url = os.environ["SEALGATE_REDTEAM_URL"]
    stream = os.environ.get("SEALGATE_REDTEAM_STREAM") == "1"
    body = {
        "model": os.environ.get("SEALGATE_REDTEAM_MODEL", "sealgate-demo-echo"),
        "messages": [{"role": "user", "content": os.environ["SEALGATE_REDTEAM_PROMPT"]}],
        "stream": stream,
    }
    try:
        client = ehbp.Client.discover(url)
        if stream:
            with client.stream("POST", "/v1/chat/completions", json_body=body) as streamed:
                raw = b"".join(streamed.iter_bytes())
                status, headers = streamed.status_code, dict(streamed.headers)
            content = ""
            for line in raw.decode().splitlines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    choices = json.loads(line[6:]).get("choices") or []
                    if choices:
                        content += choices[0].get("delta", {}).get("content") or ""
        else:
            response = client.post("/v1/chat/completions", json_body=body)
            status, headers = response.status_code, dict(response.headers)
            content = response.json()["choices"][0]["message"]["content"] if status == 200 else ""
    except (ehbp.EHBPError, httpx.HTTPError, ValueError, KeyError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"status": status, "content": content, "headers": headers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
