"""Known models for the gate x expert cross tests: one truth per (gate, expert) pair, and error measures.

Gates with a (k, pg) ``coef`` parameter (softmax and the softmax-like gates)
get a generic truth; gates that need their own parameters or data (the joint
Gaussian gate, the shared + routed gate) are handled explicitly.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize as so

import moestat as ms
from moestat import em
from moestat import parametrization as pz
from moestat.models import TrueModel

#: gates whose truth is written below rather than generically
SPECIAL_GATES = ("gaussian", "shared_routed")

try:  # the gate families' own well-identified truths (tests/gate_cases.py of the gates branch), when present
    from gate_cases import EXPERT_TRUTH as GATE_CASE_EXPERTS, GATE_CASES
except ImportError:
    GATE_CASES, GATE_CASE_EXPERTS = {}, {}

U3 = {"law": "uniform", "low": -3.0, "high": 3.0, "d": 1}
U2 = {"law": "uniform", "low": -2.0, "high": 2.0, "d": 1}   # the range the gate cases were designed on


#: per-gate settings of the cross test, for gates whose likelihood is harder to search or whose parameters are
#: identified only weakly: {"n_init": starts per fit, "min_ratio": accepted error ratio}
GATE_OPTIONS: dict[str, dict] = {}

#: (gate, expert) pairs that fail the cross test, marked xfail and not run (they cost ~40 s each); delete an entry
#: to run it again.  Numbers measured on branch xfails with /tmp scripts mirroring the test (n_init=4, seeds
#: [s, 30000] for s = 11..14; "margin" = fitted minus true log-likelihood on the same rows).
KNOWN_HARD = {
    ("topk", "relu"): "local maxima at n = 3e4: the best of 4 default starts ends 227 (seed 11) / 33 (seed 12) below "
                      "the true log-likelihood, while EM started at the truth ends 4.9 / 2.4 above it; at n = 1e3 2-3 "
                      "of 4 starts end ~100 below (ReLU experts + re-routing; linear experts pass)",
    ("normalized_sigmoid", "relu"): "local maxima at n = 1e3: with 4 starts one subsample ends 83 below the truth "
                                    "(seed 11; seed 13: two, 76 and 685 below); 10 starts fix seeds 11-13 but cost "
                                    "45-60 s, and seed 13's n = 3e4 error is then 0.42 (ratio 1.1): weakly "
                                    "identified ReLU kinks for this gate",
    ("modified_softmax", "relu"): "error ratio near the 2.5 bar: every fit beats the truth, but n = 1e3 errors are "
                                  "heavy-tailed (0.06-1.35) and n = 3e4 errors 0.05-0.21; with 6 subsamples the "
                                  "ratio is mean 2.47/3.54/2.85/8.81, median 2.52/3.22/2.53/5.14 (seeds 11-14): "
                                  "expert 1's ReLU kink (x = -0.25) lies where its gate weight is 0.011, so it is "
                                  "barely identified at these n (pre-asymptotic, not a search failure)",
}


def gate_options(gate_name: str) -> dict:
    """Cross-test settings for a gate: starts per fit and the smallest accepted error ratio."""
    return {"n_init": 4, "min_ratio": 2.5, **GATE_OPTIONS.get(gate_name, {})}


def n_experts(gate_name: str) -> int:
    """Number of experts of the truth used for a gate."""
    if gate_name == "shared_routed":
        return 3
    case = GATE_CASES.get(gate_name)
    return case.k if case is not None else 2

# expert truths for up to 3 experts, d = 1; each expert is active where its gate weight is high
_LINEAR = dict(coef=[[1.0, 2.0], [-1.0, -1.5], [3.0, 0.5]], sigma2=[0.25, 0.16, 0.2])
_RELU = dict(coef=[[1.0, -1.5], [0.5, 2.0], [2.0, 0.3]], scale=[-2.0, 1.0, 3.0], sigma2=[0.25, 0.16, 0.2])
_COEF = [[0.0, -1.5], [0.3, 1.5], [-0.2, 0.0]]   # gate rows (intercept, slope)
_ROUTED_COEF = [[0.0, -0.75], [0.3, 0.75]]        # gentler: the routed block only sees half of the data


def expert_truth(expert_name: str, k: int):
    fam = ms.experts.get_expert(expert_name)
    if expert_name == "linear":
        return fam, ms.experts.GaussianParams(**{a: np.array(v[:k]) for a, v in _LINEAR.items()})
    if expert_name == "relu":
        return fam, ms.experts.NeuronParams(**{a: np.array(v[:k]) for a, v in _RELU.items()})
    raise KeyError(expert_name)


def gate_truth(gate_name: str, k: int):
    """(gate object, true gate params, x law) for k experts on d = 1 covariate."""
    law = U3
    if gate_name in GATE_CASES and GATE_CASES[gate_name].k == k and gate_name not in SPECIAL_GATES:
        case = GATE_CASES[gate_name]
        return case.gate, case.gate_params, U2
    if gate_name == "gaussian":
        gate = ms.gating.GaussianGate()
        p = ms.gating.GaussianGateParams(weight=np.array([0.45, 0.55, 0.3][:k]) / np.sum([0.45, 0.55, 0.3][:k]),
                                         mean=np.array([[-1.2], [1.0], [0.0]][:k]),
                                         cov=np.array([[[0.5]], [[0.6]], [[0.3]]][:k]))
        return gate, p, law
    if gate_name == "shared_routed":
        gate = ms.gating.SharedRouted(n_shared=1, routed="softmax")
        p = ms.gating.SharedRoutedParams(shared=np.array([1.0]),
                                         routed=ms.gating.SoftmaxParams(coef=np.array(_ROUTED_COEF[:k - 1])))
        return gate, p, law
    gate = ms.gating.get_gate(gate_name)
    base = gate.init_params(k, 2)
    assert hasattr(base, "coef") and np.shape(base.coef) == (k, 2), \
        "gate %r needs an explicit truth in tests/_truths.py" % gate_name
    return gate, base._replace(coef=np.array(_COEF[:k])), law


def truth(gate_name: str, expert_name: str, k: int = 2) -> TrueModel:
    gate, gp, law = gate_truth(gate_name, k)
    if gate_name in GATE_CASES and expert_name in GATE_CASE_EXPERTS and gate_name not in SPECIAL_GATES:
        fam, ep = GATE_CASE_EXPERTS[expert_name](k)        # the pair the gate's own tests use
        fam = ms.experts.get_expert(fam)
    else:
        fam, ep = expert_truth(expert_name, k)
    model = ms.GaussianMoE(k, gating=gate, expert=fam)
    return TrueModel(name="%s-%s" % (gate_name, expert_name), model=model,
                     params=em.MoEParams(gate=gp, expert=ep), x_law=law)


# ------------------------------------------------------------------ errors up to relabelling

def _perms(gate, k):
    if isinstance(gate, ms.gating.SharedRouted):   # only routed experts can swap
        k1 = gate.n_shared
        return [tuple(range(k1)) + tuple(k1 + q for q in p) for p in itertools.permutations(range(k - k1))]
    return list(itertools.permutations(range(k)))


def _permute(model, params, perm):
    """Relabel the experts with the families' own relabelling (new expert i = old ``perm[i]``).

    A plain row reordering of the gate is wrong for gates whose reference expert is part of the model
    (activation_softmax(reference="expert"): swapping two experts maps (c, b) to (-c, -b), not to a row swap);
    ``Gate.permute`` knows each family's rule and refuses relabellings the family cannot express.
    """
    perm = np.asarray(perm)
    g = jax.tree_util.tree_map(np.asarray, params.gate)
    e = jax.tree_util.tree_map(np.asarray, params.expert)
    return em.MoEParams(gate=model.gate.permute(g, perm), expert=model.expert.permute(e, perm))


def flat(tree):
    return np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in jax.tree_util.tree_leaves(tree)])


def param_error(model, est, true_params):
    """min over relabellings of the Euclidean distance between canonical parameter vectors."""
    k = model.n_experts
    t = flat(em.MoEParams(gate=model.gate.canonical(true_params.gate),
                          expert=model.expert.canonical(true_params.expert)))
    best = np.inf
    for p in _perms(model.gate, k):
        try:
            e = _permute(model, est, p)
        except ValueError:               # a relabelling the family cannot express
            continue
        e = em.MoEParams(gate=model.gate.canonical(e.gate), expert=model.expert.canonical(e.expert))
        best = min(best, float(np.linalg.norm(flat(e) - t)))
    return best


def scipy_gain(res):
    """Largest log-likelihood gain BFGS finds from the EM solution, in the model's free parameters."""
    cfg, dat = res._cfg, res._data
    P = jax.tree_util.tree_map(jnp.asarray, res.params_internal)
    masks = pz.free_masks(cfg, P, res.fixed)
    th0 = np.asarray(pz.pack(cfg, P, masks))
    negll = jax.jit(jax.value_and_grad(lambda th: -em.loglik(pz.unpack(cfg, th, P, masks), dat, cfg)))

    def fun(t):
        v, g = negll(jnp.asarray(t))
        return float(v), np.asarray(g)
    r = so.minimize(fun, th0, jac=True, method="BFGS", options=dict(gtol=1e-9, maxiter=500))
    return -r.fun - res.loglik


def monotone(res):
    """Smallest relative change of the log-likelihood between EM iterations (>= -1e-12 means monotone)."""
    tr = res.loglik_trace
    return float(np.min(np.diff(tr) / np.maximum(1.0, np.abs(tr[1:])))) if tr.size > 1 else 0.0
