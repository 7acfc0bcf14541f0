"""Adapters: fitted parameter PyTrees -> mixing-measure atoms for the Voronoi losses.

The losses (:mod:`moestat.losses`) work on :class:`~moestat.losses.Atoms`:
masses and named parameter blocks.  An adapter knows one model family's
parameter layout.  It receives *canonical* parameters (``gate.canonical``,
``expert.canonical``: e.g. softmax reference row 0, ReLU scale |eta2| = 1), so
the truth and a fit are compared in the same identified coordinates.

Gate part (masses and gate blocks) and expert part (expert blocks) are
separate adapters, combined per model; composite models (a shared block with
input-independent weights next to a routed block) split the experts into
atom groups.  Register new families with :func:`register_gate` /
:func:`register_expert` / :func:`register_model`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..losses import Atoms

_GATES: dict[str, Callable] = {}
_EXPERTS: dict[str, Callable] = {}
_MODELS: dict[str, Callable] = {}


def register_gate(name: str):
    """Decorator: ``fn(gate, params, gate_intercept) -> (mass (k,), blocks dict, gate kind)``."""
    def deco(fn):
        _GATES[name] = fn
        return fn
    return deco


def register_expert(name: str):
    """Decorator: ``fn(expert, params, intercept) -> blocks dict``."""
    def deco(fn):
        _EXPERTS[name] = fn
        return fn
    return deco


def register_model(name: str):
    """Decorator for whole-model adapters: ``fn(setup, params) -> {group: Atoms}`` (keyed by gate name)."""
    def deco(fn):
        _MODELS[name] = fn
        return fn
    return deco


def _split_intercept(coef: np.ndarray, has_intercept: bool):
    coef = np.asarray(coef, dtype=np.float64)
    if has_intercept:
        return coef[:, 0], coef[:, 1:]
    return np.zeros(coef.shape[0]), coef


# --------------------------------------------------------------------------- gates

@register_gate("softmax")
def _softmax_gate(gate, params, gate_intercept):
    beta0, beta1 = _split_intercept(params.coef, gate_intercept)
    blocks = {"gate_slope": beta1} if beta1.shape[1] else {}
    return np.exp(beta0), blocks, "softmax"


@register_gate("normalized_sigmoid")
def _sigmoid_gate(gate, params, gate_intercept):
    beta0, beta1 = _split_intercept(params.coef, gate_intercept)
    blocks = {"gate_intercept": beta0[:, None]}
    if beta1.shape[1]:
        blocks["gate_slope"] = beta1
    return 1.0 / (1.0 + np.exp(-beta0)), blocks, "sigmoid"


# --------------------------------------------------------------------------- experts

@register_expert("linear")
def _linear_expert(expert, params, intercept):
    b, a = _split_intercept(params.coef, intercept)
    blocks = {"slope": a} if a.shape[1] else {}
    if intercept:
        blocks["intercept"] = b[:, None]
    blocks["variance"] = np.asarray(params.sigma2, dtype=np.float64)[:, None]
    return blocks


def _neuron_expert(expert, params, intercept):
    """Strongly identifiable single-neuron experts: all mean parameters form one block."""
    coef = np.asarray(params.coef, dtype=np.float64)
    if intercept and not getattr(expert, "bias", True):
        coef = coef[:, 1:]  # the bias is held at 0 and is not a parameter
    mean = np.column_stack([coef, np.asarray(params.scale, dtype=np.float64)])
    return {"expert": mean, "variance": np.asarray(params.sigma2, dtype=np.float64)[:, None]}


for _name in ("relu", "gelu", "neuron"):
    register_expert(_name)(_neuron_expert)


# --------------------------------------------------------------------------- models

def expert_blocks(expert, params, intercept) -> dict:
    name = getattr(expert, "name", type(expert).__name__)
    fn = _EXPERTS.get(name)
    if fn is None:
        raise ValueError("no atom adapter for expert family %r (have %s); register one with "
                         "moestat.montecarlo.adapters.register_expert" % (name, ", ".join(sorted(_EXPERTS))))
    return fn(expert, params, intercept)


def model_atoms(setup, params) -> dict[str, Atoms]:
    """{group: Atoms} for canonical parameters of a model (``setup``: a ModelSetup)."""
    gname = getattr(setup.gate, "name", "")
    if gname in _MODELS:
        return _MODELS[gname](setup, params)
    fn = _GATES.get(gname)
    if fn is None:
        raise ValueError("no atom adapter for gate %r (have %s); register one with "
                         "moestat.montecarlo.adapters.register_gate" % (gname, ", ".join(sorted(_GATES))))
    mass, gblocks, kind = fn(setup.gate, params.gate, setup.gate_intercept)
    blocks = dict(gblocks)
    blocks.update(expert_blocks(setup.expert, params.expert, setup.intercept))
    return {"moe": Atoms(mass, blocks, kind)}
