"""Attestation evidence: the documents an enclave publishes and what binds its keys to them.
Public (no decryption), produced by the enclave and verified by the client."""
