"""Ready-made true models (data-generating truths) for simulation studies and tests, and the DeepSeekMoE estimator."""
from . import deepseek, multinomial_regimes
from .deepseek import DeepSeekMoE
from .truth import TrueModel

__all__ = ["DeepSeekMoE", "TrueModel", "deepseek", "multinomial_regimes"]
