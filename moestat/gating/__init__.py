"""Gating families: one module per family, all behind :class:`moestat.gating.base.Gate`.

Pass a registered name or a gate object as ``gating=`` to an estimator.

Examples
--------
>>> import moestat as ms
>>> "softmax" in ms.gating.available(), ms.gating.TopK(k=2).name
(True, 'topk')
"""
from .base import Gate, available, get_gate, register
from .gaussian import GaussianGate, GaussianGateParams
from .shared_routed import SharedRouted, SharedRoutedParams
from .softmax import Softmax, SoftmaxParams
from .modified_softmax import ModifiedSoftmax
from .normalized_sigmoid import NormalizedSigmoid, NormalizedSigmoidParams
from .topk import TopK
from .temperature import TemperatureParams, TemperatureSchedule, TemperatureSoftmax
from .activation import ActivationParams, ActivationSoftmax
from .prototyping import ExpertPrototyping  # M6-T expert prototyping
from .entropy_switched import EntropySwitched  # DynMoLE-style entropy-switched routing

__all__ = ["ActivationParams", "ActivationSoftmax", "Gate", "GaussianGate", "GaussianGateParams", "ModifiedSoftmax",
           "NormalizedSigmoid", "NormalizedSigmoidParams", "SharedRouted", "SharedRoutedParams", "Softmax",
           "SoftmaxParams", "TemperatureParams", "TemperatureSchedule", "TemperatureSoftmax", "TopK", "available",
           "get_gate", "register"]
__all__ += ["EntropySwitched", "ExpertPrototyping"]


def _register_every_family() -> None:
    """Import every public module of the package, so that a family in a new file registers itself."""
    import importlib
    import pkgutil
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module("%s.%s" % (__name__, mod.name))


_register_every_family()
