"""The examples in the docstrings of the public API run (doctest), and every public name has one.

Public API: ``moestat.__all__`` (classes with their public methods and
properties), the results methods, :mod:`moestat.plot`, :mod:`moestat.losses`
and the harness (:mod:`moestat.montecarlo`).  Each must have a numpydoc
docstring with an ``Examples`` section holding at least one ``>>>`` line.
"""
from __future__ import annotations

import doctest
import importlib
import inspect

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import moestat as ms  # noqa: E402

pytestmark = pytest.mark.slow   # skipped by the fast tier (pytest -m "not slow"); CI runs it

MODULES = ["moestat", "moestat.inference.results", "moestat.estimators.gaussian", "moestat.estimators.deepseek", "moestat.exceptions", "moestat.estimators.multinomial", "moestat.fitting.em",
           "moestat.inference.bootstrap", "moestat.inference.selection", "moestat.sampling", "moestat.plot", "moestat.losses",
           "moestat.datasets", "moestat.gating", "moestat.experts", "moestat.truths", "moestat.truths.deepseek",
           "moestat.montecarlo", "moestat.montecarlo.spec", "moestat.montecarlo.targets", "moestat.montecarlo.store", "moestat.montecarlo.runner",
           "moestat.diagnostics", "moestat.estimators.glm", "moestat.routing"]
LOSSES = ["Atoms", "DensityDistance", "LossValue", "VoronoiResult", "VoronoiRule", "conditional_distance",
          "regression_distance",
          "gauss_legendre_nodes", "rbar", "rule_D1", "rule_D2", "rule_D3_routed", "rule_D4_routed",
          "rule_gaussian_gate", "theory_loss", "voronoi_loss"]


def _public_objects():
    import moestat.losses as losses
    import moestat.montecarlo as mc
    out = []
    for name in ms.__all__:
        obj = getattr(ms, name)
        out.append(("moestat." + name, obj))
        if inspect.isclass(obj) and not issubclass(obj, Warning):
            for m, v in vars(obj).items():
                if not m.startswith("_") and (inspect.isfunction(v) or isinstance(v, property)):
                    out.append(("moestat.%s.%s" % (name, m), v))
    out += [("moestat.plot." + n, getattr(ms.plot, n)) for n in ms.plot.__all__]
    out += [("moestat.losses." + n, getattr(losses, n)) for n in LOSSES]
    out += [("moestat.montecarlo." + n, getattr(mc, n)) for n in mc.__all__]
    return out


def test_every_public_name_has_a_runnable_example():
    missing = []
    for name, obj in _public_objects():
        doc = inspect.getdoc(obj) or ""
        if "Examples\n--------" not in doc or ">>>" not in doc.split("Examples\n--------", 1)[1]:
            missing.append(name)
    assert not missing, "no Examples section with >>> in: %s" % ", ".join(missing)


def test_callables_document_their_parameters():
    missing = []
    for name, obj in _public_objects():
        if inspect.isfunction(obj) or (inspect.isclass(obj) and not issubclass(obj, Exception)):
            params = [p for p in inspect.signature(obj).parameters if p not in ("self", "args", "kwargs")]
            doc = inspect.getdoc(obj) or ""
            if params and "Parameters\n----------" not in doc:
                missing.append(name)
    assert not missing, "no Parameters section in: %s" % ", ".join(missing)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=True)
    assert result.failed == 0, "%d of %d examples failed in %s" % (result.failed, result.attempted, module)
