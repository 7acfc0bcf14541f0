"""Expert families: one module per family, all behind :class:`moestat.experts.base.Expert`."""
from .base import Expert, available, get_expert, register
from .gaussian import GaussianLinear, GaussianParams

__all__ = ["Expert", "GaussianLinear", "GaussianParams", "available", "get_expert", "register"]
