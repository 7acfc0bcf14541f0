"""Gating families: one module per family, all behind :class:`moestat.gating.base.Gate`."""
from .base import Gate, available, get_gate, register
from .gaussian import GaussianGate, GaussianGateParams
from .shared_routed import SharedRouted, SharedRoutedParams
from .softmax import Softmax, SoftmaxParams

__all__ = ["Gate", "GaussianGate", "GaussianGateParams", "SharedRouted", "SharedRoutedParams", "Softmax",
           "SoftmaxParams", "available", "get_gate", "register"]
