"""Known (true) models of published experiments, and the DeepSeekMoE estimator."""
from . import deepseek
from .deepseek import DeepSeekMoE
from .truth import TrueModel

__all__ = ["DeepSeekMoE", "TrueModel", "deepseek"]
