"""sealgate.enclave"""
