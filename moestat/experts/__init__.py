"""Expert families: one module per family, all behind :class:`moestat.experts.base.Expert`."""
from .base import Expert, available, get_expert, register
from .gaussian import GaussianLinear, GaussianParams
from .multinomial import MultinomialLogistic, MultinomialParams

__all__ = ["Expert", "GaussianLinear", "GaussianParams", "MultinomialLogistic", "MultinomialParams",
           "available", "get_expert", "register"]
