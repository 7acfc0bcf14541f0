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
    """Masses exp(beta_0 - max beta_0): a softmax measure is only defined up to a common factor (the
    losses take the infimum over it), and the shift keeps a diverged gate (beta_0 ~ 1e4) finite."""
    beta0, beta1 = _split_intercept(params.coef, gate_intercept)
    blocks = {"gate_slope": beta1} if beta1.shape[1] else {}
    return np.exp(beta0 - beta0.max()), blocks, "softmax"


# top-K and modified softmax are softmaxes of a linear score (of M(x) for modified softmax)
register_gate("topk")(_softmax_gate)
register_gate("modified_softmax")(_softmax_gate)


@register_gate("normalized_sigmoid")
def _sigmoid_gate(gate, params, gate_intercept):
    beta0, beta1 = _split_intercept(params.coef, gate_intercept)
    blocks = {"gate_intercept": beta0[:, None]}
    if beta1.shape[1]:
        blocks["gate_slope"] = beta1
    return 1.0 / (1.0 + np.exp(-beta0)), blocks, "sigmoid"


@register_gate("gaussian")
def _gaussian_gate(gate, params, gate_intercept):
    """GLLiM gate: mass pi_i, location c_i, scale = the covariance's upper triangle (diagonal: its diagonal)."""
    cov = np.asarray(params.cov, dtype=np.float64)
    d = cov.shape[-1]
    off = np.abs(cov - np.eye(d)[None] * cov).max() if d > 1 else 0.0
    iu = np.diag_indices(d) if off == 0.0 else np.triu_indices(d)
    scale = cov[:, iu[0], iu[1]]
    return np.asarray(params.weight, dtype=np.float64), {"loc": np.asarray(params.mean, dtype=np.float64),
                                                         "scale": scale}, "gaussian"


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


@register_expert("multinomial")
def _multinomial_expert(expert, params, intercept):
    """Multinomial-logistic experts: the free classes' slopes a (flattened) and intercepts b.

    Class 0 is the reference (its row is 0 and is no parameter).
    """
    coef = np.asarray(params.coef, dtype=np.float64)[:, 1:, :]                  # (k, C - 1, p)
    k = coef.shape[0]
    blocks = {}
    if coef.shape[2] > int(bool(intercept)):
        blocks["slope"] = coef[:, :, int(bool(intercept)):].reshape(k, -1)
    if intercept:
        blocks["intercept"] = coef[:, :, 0]
    return blocks


# --------------------------------------------------------------------------- models

def expert_blocks(expert, params, intercept) -> dict:
    name = getattr(expert, "name", type(expert).__name__)
    fn = _EXPERTS.get(name)
    if fn is None:
        raise ValueError("no atom adapter for expert family %r (have %s); register one with "
                         "moestat.montecarlo.adapters.register_expert" % (name, ", ".join(sorted(_EXPERTS))))
    return fn(expert, params, intercept)


@register_model("shared_routed")
def _shared_routed(setup, params) -> dict[str, Atoms]:
    """DeepSeekMoE: a "shared" group (masses omega) and a "routed" group (the routed gate's masses).

    The experts are a Stacked family whose first block holds the k1 shared experts.
    """
    gate, expert = setup.gate, setup.expert
    (fs, k1), (fr, _) = expert.blocks
    if k1 != gate.n_shared:
        raise ValueError("the shared block has %d experts but the gate %d" % (k1, gate.n_shared))
    rname = getattr(gate.routed, "name", "")
    fn = _GATES.get(rname)
    if fn is None:
        raise ValueError("no atom adapter for the routed gate %r (have %s)" % (rname, ", ".join(sorted(_GATES))))
    shared = Atoms(np.asarray(params.gate.shared, dtype=np.float64),
                   expert_blocks(fs, params.expert.blocks[0], setup.intercept), "shared")
    mass, gblocks, kind = fn(gate.routed, params.gate.routed, setup.uses_gate_intercept)
    routed = Atoms(mass, dict(gblocks, **expert_blocks(fr, params.expert.blocks[1], setup.intercept)), kind)
    return {"shared": shared, "routed": routed}


def model_atoms(setup, params) -> dict[str, Atoms]:
    """{group: Atoms} for canonical parameters of a model (``setup``: a ModelSetup)."""
    gname = getattr(setup.gate, "name", "")
    if gname in _MODELS:
        return _MODELS[gname](setup, params)
    fn = _GATES.get(gname)
    if fn is None:
        raise ValueError("no atom adapter for gate %r (have %s); register one with "
                         "moestat.montecarlo.adapters.register_gate" % (gname, ", ".join(sorted(_GATES))))
    mass, gblocks, kind = fn(setup.gate, params.gate, setup.uses_gate_intercept)
    blocks = dict(gblocks)
    blocks.update(expert_blocks(setup.expert, params.expert, setup.intercept))
    return {"moe": Atoms(mass, blocks, kind)}
