"""moestat: statistical mixture-of-experts models on JAX.

Maximum-likelihood (EM) estimation of Gaussian and multinomial-logistic
experts under softmax and other gates, inference, model selection, and a Monte
Carlo harness for convergence-rate studies.  Importing moestat switches JAX to
float64 (see :mod:`moestat._jax`).
"""
from . import _jax  # noqa: F401  (float64 on import)
from . import datasets, experts, gating
from . import diagnostics  # router diagnostics (load balance, saturation, entropy)
from .fitting.em import MoEParams
from .exceptions import ConvergenceWarning, DegenerateFitWarning, InferenceWarning, MoEWarning, RestartWarning
from .estimators.gaussian import GaussianMoE
from .estimators.multinomial import MultinomialMoE, MultinomialResults
from .estimators.glm import GLMMoE, GLMResults
from .inference.results import MoEResults
from .inference.persistence import load
from .inference.bootstrap import bootstrap, bootstrap_lrt
from .inference.selection import select_k
from .sampling import simulate
from . import truths
from .estimators.deepseek import DeepSeekMoE
from . import plot  # matplotlib is imported by the plotting functions, not here

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning", "DeepSeekMoE", "DegenerateFitWarning", "GaussianMoE", "MoEParams", "MoEResults",
    "MoEWarning", "MultinomialMoE", "MultinomialResults", "GLMMoE", "GLMResults",
    "datasets", "experts", "gating", "truths", "plot", "simulate",
    "InferenceWarning", "bootstrap", "bootstrap_lrt", "select_k",
    "RestartWarning", "load",
]
__all__ += ["diagnostics"]
