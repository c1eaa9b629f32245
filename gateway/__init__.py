"""sealgate.gateway"""
