"""sealgate.client"""
