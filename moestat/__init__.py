"""moestat: statistical mixture-of-experts models on JAX.

Maximum-likelihood (EM) estimation of Gaussian and multinomial-logistic
experts under softmax and other gates, inference, model selection, and a Monte
Carlo harness for convergence-rate studies.  Importing moestat switches JAX to
float64 (see :mod:`moestat._config`); JAX itself is imported with the first
estimator, so ``import moestat`` is cheap.
"""
import importlib

from . import _config

_config.apply()  # float64 and the compile cache, before JAX is imported (it loads with the first fit)

from .exceptions import ConvergenceWarning, DegenerateFitWarning, InferenceWarning, MoEWarning, RestartWarning

__version__ = "0.1.0"

#: public name -> module that defines it; imported on first use (PEP 562), so that
#: ``import moestat`` imports neither JAX nor pandas.
_LAZY = {
    "MoEParams": "moestat.fitting.em",
    "GaussianMoE": "moestat.estimators.gaussian",
    "MultinomialMoE": "moestat.estimators.multinomial", "MultinomialResults": "moestat.estimators.multinomial",
    "GLMMoE": "moestat.estimators.glm", "GLMResults": "moestat.estimators.glm",
    "DeepSeekMoE": "moestat.estimators.deepseek",
    "MoEResults": "moestat.inference.results",
    "load": "moestat.inference.persistence",
    "bootstrap": "moestat.inference.bootstrap", "bootstrap_lrt": "moestat.inference.bootstrap",
    "select_k": "moestat.inference.selection",
    "simulate": "moestat.sampling",
}
_SUBMODULES = ("datasets", "diagnostics", "estimators", "experts", "exceptions", "fitting", "gating", "inference",
               "losses", "montecarlo", "plot", "routing", "sampling", "sklearn", "truths")

__all__ = [
    "ConvergenceWarning", "DeepSeekMoE", "DegenerateFitWarning", "GaussianMoE", "MoEParams", "MoEResults",
    "MoEWarning", "MultinomialMoE", "MultinomialResults", "GLMMoE", "GLMResults",
    "datasets", "experts", "gating", "truths", "plot", "simulate",
    "InferenceWarning", "bootstrap", "bootstrap_lrt", "select_k",
    "RestartWarning", "load", "diagnostics",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module("moestat." + name)
    else:
        raise AttributeError("module 'moestat' has no attribute %r" % name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
