"""Gating families: one module per family, all behind :class:`moestat.gating.base.Gate`."""
from .base import Gate, available, get_gate, register
from .softmax import Softmax, SoftmaxParams

__all__ = ["Gate", "Softmax", "SoftmaxParams", "available", "get_gate", "register"]
