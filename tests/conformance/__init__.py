"""Conformance suite: every registered gate and expert family against independent NumPy transcriptions."""
