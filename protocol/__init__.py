"""sealgate's wire protocol, sans-IO: bytes in, bytes or values out; no sockets, no event loop.

The folders are the trust boundary:

* :mod:`sealgate.protocol.public` — what travels or is published in the clear and anyone may
  use: key configurations, problem documents, header names and paths, routing headers,
  framing, errors. It cannot open a sealed message. The untrusted gateway imports only
  this part (``tests/gateway/test_blindness.py``).
* :mod:`sealgate.protocol.evidence` — attestation documents and what binds a key to
  hardware evidence (report data, nonce batches, GPU and software evidence). Public too,
  but only the client verifies and only the enclave produces it.
* :mod:`sealgate.protocol.sealing` — everything that seals, opens, or reads what is inside
  a seal: HPKE (X25519 and X-Wing), Oblivious HTTP and its chunked form, the multi-recipient
  extension, EHBP bodies, Binary HTTP, padding, replay refusal.

This module re-exports nothing, so importing a public module never loads sealing code.
"""
