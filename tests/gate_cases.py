"""True models for the gate tests: one case per gate family, experts from a per-family table.

``EXPERT_TRUTH`` maps an expert family name to a function (k) -> (expert
object, expert parameters); add an entry (e.g. "relu") to run every gate test
with that expert family too.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import moestat as ms
from moestat.fitting import em
from moestat.data.design import make_data

G = ms.gating


def _linear(k):
    coef = np.array([[1.0, 2.0], [-1.0, -1.5], [0.5, 0.0]])[:k]
    sigma2 = np.array([0.09, 0.16, 0.04])[:k]
    return "linear", ms.experts.GaussianParams(coef=coef, sigma2=sigma2)


EXPERT_TRUTH: dict[str, Callable] = {"linear": _linear}
EXPERTS = list(EXPERT_TRUTH)
# every test uses 4 starts and n in {N_SMALL, N_BIG} (two size buckets), so the compiled programs are shared
N_INIT, N_SMALL, N_BIG = 4, 300, 30000


@dataclass
class GateCase:
    gate: Any
    k: int
    gate_params: Any


_S2 = np.sqrt(2.0)
GATE_CASES = {
    "modified_softmax": GateCase(G.ModifiedSoftmax("sigmoid"), 2,
                                 G.SoftmaxParams(coef=np.array([[0.0, 0.0], [-3.0, 6.0]]))),
    "normalized_sigmoid": GateCase(G.NormalizedSigmoid(), 2,
                                   G.NormalizedSigmoidParams(coef=np.array([[1.0, 2.0], [0.0, -1.0]]))),
    "topk": GateCase(G.TopK(k=2), 3, G.SoftmaxParams(coef=np.array([[0.0, 0.0], [1.0, 2.0], [0.3, -2.0]]))),
    "temperature_softmax": GateCase(G.TemperatureSoftmax(temperature=0.5), 2,
                                    G.TemperatureParams(coef=np.array([[0.0, 0.0], [0.5, 1.5]]),
                                                        log_temp=np.log(0.5))),
    "temperature_estimated": GateCase(G.TemperatureSoftmax(temperature=1.0, estimate_temperature=True), 2,
                                      G.TemperatureParams(coef=np.array([[0.0, 0.0], [0.5, _S2]]),
                                                          log_temp=np.log(0.5))),
    "activation_softmax": GateCase(G.ActivationSoftmax(), 2,
                                   G.ActivationParams(coef=np.array([[0.0, 0.0], [0.5, 3.0]]),
                                                      log_temp=np.log(0.5))),
}


def truth(case: GateCase, expert_name: str):
    """(model, true MoEParams) for a gate case and an expert family."""
    expert, eparams = EXPERT_TRUTH[expert_name](case.k)
    model = ms.GaussianMoE(case.k, gating=case.gate, expert=expert)
    return model, ms.MoEParams(gate=case.gate_params, expert=eparams)


def simulate_data(model, params, n, seed):
    x = np.random.default_rng(seed).uniform(-2.0, 2.0, n)
    y = ms.simulate(model, params, x, seed=seed)
    return x, y


def device_data(model, x, y, N=None):
    d = model.design(x, y)
    return d, make_data(d.X, d.Xg, d.y, d.w, N)


def loglik_at(model, params, x, y):
    """Log-likelihood of ``params`` on (x, y), computed by the EM kernel."""
    _, dat = device_data(model, x, y)
    P = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float64), params)
    return float(em.loglik(P, dat, model.config()))


def identified_vector(model, params, perm=None):
    """Expert coefficients, sigmas and the gate's free canonical entries (experts reordered by perm)."""
    gate, expert = model.gate, params.expert
    k = np.asarray(expert.coef).shape[0]
    perm = np.arange(k) if perm is None else np.asarray(perm)
    g = gate.permute(jax.tree_util.tree_map(np.asarray, params.gate), perm)   # each family's relabelling rule
    g = jax.tree_util.tree_map(np.asarray, gate.canonical(g))
    mask = jax.tree_util.tree_map(np.asarray, gate.free_mask(g))
    gv = np.concatenate([np.ravel(a)[np.ravel(m)] for a, m in zip(jax.tree_util.tree_leaves(g),
                                                                  jax.tree_util.tree_leaves(mask))])
    if isinstance(gate, G.TemperatureSoftmax) and gate.estimate_temperature:  # tau is derived, not in the mask
        gv = np.append(gv, np.exp(np.asarray(g.log_temp)))
    ev = np.concatenate([np.ravel(np.asarray(a)[perm]) for a in jax.tree_util.tree_leaves(expert)])
    return np.concatenate([ev, gv])


def aligned_error(model, fitted, true):
    """Euclidean parameter error after the expert relabelling closest to the truth."""
    t = identified_vector(model, true)
    k = np.asarray(true.expert.coef).shape[0]
    best = np.inf
    for perm in itertools.permutations(range(k)):
        try:
            f = identified_vector(model, fitted, perm)
        except ValueError:              # a relabelling the family cannot express
            continue
        best = min(best, float(np.linalg.norm(f - t)))
    return best
