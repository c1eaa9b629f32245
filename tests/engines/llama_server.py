"""A real llama.cpp server (``llama-cpp-python[server]``) with a tiny model written here.

:func:`write_tiny_llama` writes a llama-architecture GGUF file with random weights and a
byte-level BPE vocabulary; :class:`LlamaServer` runs ``python -m llama_cpp.server`` on a
free loopback port with that file. The model answers gibberish, but everything around it
- the HTTP server, its SSE stream, usage accounting, the model list, its errors - is the
engine users run. Shared by tests/engines/ and bench/engine_bench.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..servers import free_port

__all__ = [
    "CHAT_MODEL",
    "EMBEDDING_MODEL",
    "LlamaServer",
    "TinyLlama",
    "missing_engine",
    "write_tiny_llama",
]

CHAT_MODEL = "tiny-llama"
EMBEDDING_MODEL = "tiny-llama-embedding"


def missing_engine() -> str | None:
    """Why the llama.cpp tests cannot run here, or None when they can."""
    try:
        import gguf  # noqa: F401
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        return (
            f"{exc.name} is not installed: pip install -e '.[engine-tests]' "
            "(compiles llama.cpp, about 7 minutes on 2 cores)"
        )
    return None


def _byte_tokens() -> list[str]:
    """The 256 byte tokens of a byte-level BPE vocabulary, in byte order.

    Printable bytes stand for themselves; the others are shifted to code points from
    256 up, so every byte has a visible, unique token string (the GPT-2 convention that
    llama.cpp's "gpt2" tokenizer model expects).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]


@dataclass(frozen=True, slots=True)
class TinyLlama:
    """The written model's shape and its special tokens."""

    path: Path
    n_vocab: int
    bos_id: int
    eos_id: int
    context_length: int


def write_tiny_llama(
    path: Path,
    *,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 4,
    n_ff: int = 128,
    context_length: int = 8192,
    seed: int = 19,
) -> TinyLlama:
    """Write a llama-architecture GGUF with random float32 weights.

    The vocabulary is byte-level BPE (``tokenizer.ggml.model = "gpt2"``): 256 byte tokens,
    a few merged tokens (llama.cpp refuses a BPE vocabulary without merges), and control
    tokens for BOS and EOS. The output projection has zero rows for BOS, EOS, ``<`` and
    every byte outside printable ASCII, so under greedy or top-k sampling the model
    streams printable text, one token per event, until ``max_tokens``.
    """
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    space = _byte_tokens()[ord(" ")]  # "Ġ"
    merges = [f"{space} t", "h e", "i n", f"{space}t he"]
    tokens = [*_byte_tokens(), f"{space}t", "he", "in", f"{space}the", "<|bos|>", "<|eos|>"]
    types = [gguf.TokenType.NORMAL] * (len(tokens) - 2) + [gguf.TokenType.CONTROL] * 2
    bos_id, eos_id = len(tokens) - 2, len(tokens) - 1
    n_vocab = len(tokens)
    head_dim = n_embd // n_head

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("sealgate tiny llama (random weights)")
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_pooling_type(gguf.PoolingType.MEAN)  # /v1/embeddings: one vector per input
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(bos_id)
    writer.add_eos_token_id(eos_id)
    writer.add_add_bos_token(False)

    def weights(*shape: int, scale: float = 0.02) -> Any:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # numpy shapes are the reverse of ggml's ne: (rows = outputs, columns = inputs).
    writer.add_tensor("token_embd.weight", weights(n_vocab, n_embd, scale=1.0))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    output = weights(n_vocab, n_embd, scale=1.0)
    keep = np.zeros(n_vocab, dtype=bool)
    keep[0x20:0x7F] = True  # printable ASCII bytes
    # Never "<": the chat format's stop string starts with it, and a server holds back
    # text that might begin a stop string, which would merge two tokens into one event.
    keep[ord("<")] = False
    keep[256 : n_vocab - 2] = True  # the merged tokens
    output[~keep] = 0.0
    writer.add_tensor("output.weight", output)
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weights(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(n_embd, n_ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return TinyLlama(path, n_vocab, bos_id, eos_id, context_length)


@dataclass
class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 serving the chat and embedding models."""

    model: TinyLlama
    log_path: Path
    n_ctx: int = 4096
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, object]:
        common = {"model": str(self.model.path), "n_threads": 1, "verbose": True}
        return {
            "host": "127.0.0.1",
            "port": self.port,
            # The default cuts a running stream short whenever another request arrives.
            "interrupt_requests": False,
            "models": [
                {**common, "model_alias": CHAT_MODEL, "n_ctx": self.n_ctx, "chat_format": "chatml"},
                {**common, "model_alias": EMBEDDING_MODEL, "n_ctx": 512, "embedding": True},
            ],
        }

    def start(self, timeout: float = 120.0) -> LlamaServer:
        if self.proc is not None:
            raise RuntimeError("this llama.cpp server was started already")
        config_path = self.log_path.with_suffix(".json")
        config_path.write_text(json.dumps(self.config()))
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"llama.cpp server did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the engine process has used (Linux ``/proc``)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """Stop the engine at once (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
