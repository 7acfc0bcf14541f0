"""Expert families: one module per family, all behind :class:`moestat.experts.base.Expert`.

Pass a registered name or an expert object as ``expert=`` to an estimator.

Examples
--------
>>> import moestat as ms
>>> {"linear", "multinomial", "relu"} <= set(ms.experts.available())
True
"""
from .base import Expert, available, get_expert, register
from .gaussian import GaussianLinear, GaussianParams
from .glm import BinomialGLM, GLMExpert, GLMParams, PoissonGLM
from .multinomial import MultinomialLogistic, MultinomialParams
from .neuron import GaussianNeuron, GELUExpert, NeuronParams, ReLUExpert
from .polynomial import GaussianPolynomial
from .stacked import Stacked, StackedParams

__all__ = ["BinomialGLM", "Expert", "GELUExpert", "GLMExpert", "GLMParams", "GaussianLinear", "GaussianNeuron",
           "GaussianParams", "GaussianPolynomial", "MultinomialLogistic", "MultinomialParams", "NeuronParams",
           "PoissonGLM", "ReLUExpert", "Stacked", "StackedParams", "available", "get_expert", "register"]


def _register_every_family() -> None:
    """Import every public module of the package, so that a family in a new file registers itself."""
    import importlib
    import pkgutil
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module("%s.%s" % (__name__, mod.name))


_register_every_family()
