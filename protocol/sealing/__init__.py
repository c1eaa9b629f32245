"""Sealing and opening: HPKE key schedules and private keys, Oblivious HTTP (one-shot, chunked,
multi-recipient), EHBP bodies, Binary HTTP, padding and replay refusal. The enclave and the
client use it; the gateway must never import it."""
