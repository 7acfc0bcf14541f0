"""The estimators: thin front ends over :mod:`moestat.fitting` that validate input and return results."""
from .base import MoEModel
from .gaussian import GaussianMoE
from .multinomial import MultinomialMoE, MultinomialResults
from .glm import GLMMoE, GLMResults
from .deepseek import DeepSeekMoE

__all__ = ["DeepSeekMoE", "GLMMoE", "GLMResults", "GaussianMoE", "MoEModel", "MultinomialMoE", "MultinomialResults"]
