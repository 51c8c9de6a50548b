"""Dual-encoder retrieval: built-in parallel text."""
