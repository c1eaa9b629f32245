"""``sealgate enclave`` as a real process."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner
from sealgate.enclave import EnclaveConfig
from sealgate.enclave.cli import ENV_PREFIX, enclave
from sealgate.protocol.evidence.attestation import AttestationDocument
from sealgate.protocol.evidence.software_evidence import (
    SIGNING_CONTEXT,
    SoftwareClaims,
    decode_evidence,
)
from sealgate.protocol.public.keyconfig import decode_key_configs
from sealgate.protocol.public.modes import EHBP
from sealgate.protocol.public.paths import ATTESTATION, OHTTP_GATEWAY, OHTTP_KEYS
from sealgate.protocol.public.settings import settings_of

from ..sealed_http import sealed_request

CHAT = json.dumps(
    {"model": "sealgate-demo-echo", "messages": [{"role": "user", "content": "hi"}]}
).encode()


def test_port_zero_prints_the_bound_port(enclave_process):
    args = ["--port", "0", "--attester", "software", "--log-level", "warning"]
    started = enclave_process(args, healthy=False)
    assert started.url.startswith("http://127.0.0.1:") and not started.url.endswith(":0")
    # Printed once the socket listens: a connection made now waits until uvicorn accepts.
    health = httpx.get(started.url + "/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["platform"] == "software"


def test_max_concurrent_below_one_is_refused_up_front():
    """0 would divide by zero in /healthz's load; the CLI and the config both refuse it."""
    with pytest.raises(ValueError, match="at least 1"):
        EnclaveConfig(max_concurrent_requests=0)
    result = CliRunner().invoke(enclave, ["--max-concurrent", "0", "--attester", "software"])
    assert result.exit_code == 2 and "--max-concurrent" in result.output


def test_help_shows_an_option_and_a_variable_for_every_setting():

    help_text = " ".join(CliRunner().invoke(enclave, ["--help"], terminal_width=200).output.split())
    settings = settings_of(EnclaveConfig, ENV_PREFIX)
    assert {s.name for s in settings} == {f.name for f in dataclasses.fields(EnclaveConfig)}
    for s in settings:
        assert f"{s.names[0]} " in help_text, s.name
        assert f"env var: {s.envvar}" in help_text, s.name
    for option in ("--host", "--port", "--attester", "--upstream", "--log-level"):
        variable = f"{ENV_PREFIX}_{option.removeprefix('--').replace('-', '_').upper()}"
        assert f"env var: {variable}" in help_text


def test_settings_from_environment_variables_alone(enclave_process, http, software_root_file):
    """No option on the command line: every value below comes from a SEALGATE_ENCLAVE_*
    variable, and each shows over real HTTP."""
    root, root_file = software_root_file
    enclave = enclave_process(
        env={
            "SEALGATE_ENCLAVE_SOFTWARE_ROOT_KEY": str(root_file),
            "SEALGATE_ENCLAVE_LOG_LEVEL": "warning",
            "SEALGATE_ENCLAVE_MODELS": "sealgate-demo-echo,other-model",
            "SEALGATE_ENCLAVE_POST_QUANTUM_KEYS": "false",
            "SEALGATE_ENCLAVE_PLAINTEXT_PATHS": "GET /v1/models,POST /v1/embeddings",
            "SEALGATE_ENCLAVE_MAX_BODY_SIZE": "2000",
            "SEALGATE_ENCLAVE_MAX_FRAME_SIZE": "2000",
            "SEALGATE_ENCLAVE_NATIVE_ROUTES": "POST /v1/chat/completions",
        }
    )
    # --software-root-key and --model: the document is signed by our root and names both.
    document = AttestationDocument.from_json(http.get(enclave.url + ATTESTATION).content)
    claims_bytes, signature = decode_evidence(document.evidence)
    root.public_key().verify(signature, SIGNING_CONTEXT + claims_bytes)
    assert SoftwareClaims.from_bytes(claims_bytes).models == ("other-model", "sealgate-demo-echo")
    # --no-post-quantum-keys: one X25519 key, no hybrid one.
    keys = decode_key_configs(http.get(enclave.url + OHTTP_KEYS).content)
    assert len(keys) == 1 and not keys[0].post_quantum
    # --allow-plaintext: these two paths are forwarded in the clear, others refused.
    assert http.get(enclave.url + "/v1/models").status_code == 200
    assert http.get(enclave.url + "/v1/completions").status_code == 403
    # --max-body-size/--max-frame-size: a body above both together is too large.
    assert http.post(enclave.url + "/v1/embeddings", content=b"x" * 5000).status_code == 413
    # --native-route: only chat is forwarded; a sealed model list is refused, sealed.
    refused = sealed_request(http, "GET", enclave.url + "/v1/models", keys[0])
    assert refused.encrypted and refused.status == 404
    allowed = sealed_request(http, "POST", enclave.url + "/v1/chat/completions", keys[0], CHAT)
    assert allowed.encrypted and allowed.status == 200


def test_settings_variables_and_options_agree():
    """What a variable sets, the option sets too (the parsed config is the same)."""
    runner = CliRunner()
    by_env = runner.invoke(
        enclave,
        ["--print-measurement"],
        env={"SEALGATE_ENCLAVE_MODELS": "a,b", "SEALGATE_ENCLAVE_UPSTREAM": "http://e:1/"},
    )
    by_option = runner.invoke(
        enclave, ["--print-measurement", "--model", "a", "--model", "b", "--upstream", "http://e:1"]
    )
    assert by_env.exit_code == by_option.exit_code == 0
    assert by_env.output == by_option.output


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "sealgate-demo-echo", "--demo-token-delay", "0.01"],
        ["--upstream", "http://127.0.0.1:9/"],
    ],
    ids=["demo-with-model", "upstream"],
)
def test_print_measurement_is_what_a_software_enclave_reports(enclave_process, http, args):
    printed = subprocess.run(
        [sys.executable, "-m", "sealgate.enclave", "--print-measurement", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    measurement = printed.stdout.strip()
    assert len(bytes.fromhex(measurement)) == 48 and printed.stdout == measurement + "\n"
    enclave = enclave_process(args=[*args, "--log-level", "warning"])
    document = AttestationDocument.from_json(http.get(enclave.url + ATTESTATION).content)
    claims = SoftwareClaims.from_bytes(decode_evidence(document.evidence)[0])
    assert claims.measurement.hex() == measurement


SECRET_PROMPT = "the-secret-prompt-7f3a"
SECRET_PATH = "/v1/models/secret-inner-path-91c2"


def test_every_log_line_is_json_without_sealed_content(enclave_process, http):
    """Sealed requests of every kind through the real process at debug level: stderr is
    JSON lines only, with the access fields, and never a sealed path or prompt."""
    enclave = enclave_process(args=["--log-level", "debug"])
    keys = decode_key_configs(http.get(enclave.url + OHTTP_KEYS).content)
    key = next(k for k in keys if not k.post_quantum)
    chat = json.dumps({"messages": [{"role": "user", "content": SECRET_PROMPT}]}).encode()
    url = enclave.url + "/v1/chat/completions"
    answered = sealed_request(http, "POST", url, key, chat)
    assert answered.status == 200 and SECRET_PROMPT.encode() in answered.body
    assert sealed_request(http, "GET", enclave.url + SECRET_PATH, key).encrypted
    refused = sealed_request(http, "POST", enclave.url + SECRET_PATH, key, chat)
    assert refused.encrypted and refused.status == 405
    assert sealed_request(http, "POST", url, key, chat, mode=EHBP).status == 200
    enclave.stop()  # the shutdown lines too

    text = enclave.stderr()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "event"} <= set(line) for line in lines)
    assert SECRET_PROMPT not in text and "secret-inner-path" not in text
    requests = [line for line in lines if line["event"] == "request"]
    assert [r["mode"] for r in requests] == ["ohttp", "ohttp", "ohttp", "ehbp"]
    for record in requests:
        assert record["logger"] == "sealgate.enclave.access"
        assert {"request_id", "key_id", "status", "duration_ms", "outcome", "path"} <= set(record)
        assert record["key_id"] == key.fingerprint[:16]
    native = requests[:3]
    assert all(r["path"] == OHTTP_GATEWAY and r["status"] == 200 for r in native)
    assert [r["inner_status"] for r in native] == [200, 404, 405]  # the demo knows no such model
    assert [r["outcome"] for r in requests] == ["ok", "engine_404", "not_allowed", "ok"]
    assert len({r["request_id"] for r in requests}) == 4
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own, as JSON


#: What uvicorn[standard] added and the enclave extra leaves out (issue 18).
NOT_IN_THE_ENCLAVE = ("websockets", "watchfiles", "dotenv", "yaml")

_WITHOUT = f"""
import runpy, sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {NOT_IN_THE_ENCLAVE!r}:
            raise ModuleNotFoundError(f"{{name}} is not in the enclave extra", name=name)

sys.meta_path.insert(0, Absent())
sys.argv[0] = "sealgate-enclave"
runpy.run_module("sealgate.enclave", run_name="__main__")
"""


def test_the_enclave_serves_without_the_packages_uvicorn_standard_added(enclave_process, http):
    enclave = enclave_process(args=["--log-level", "info"], python=("-c", _WITHOUT))
    key = next(
        k for k in decode_key_configs(http.get(enclave.url + OHTTP_KEYS).content) if k.post_quantum
    )
    answer = sealed_request(http, "POST", enclave.url + "/v1/chat/completions", key, CHAT)
    assert answer.status == 200 and b"You said: hi" in answer.body
    enclave.stop()
    assert "ModuleNotFoundError" not in enclave.stderr()
