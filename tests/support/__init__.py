"""Helpers the tests share: toy encoders and bundles, tiny HF models, corpus fixtures."""
