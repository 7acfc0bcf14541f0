"""DeepSeekMoE: the four true models of the paper's synthetic experiment and the model it fits.

The model, shared experts with constant weights plus routed experts under a gate, is
:class:`moestat.DeepSeekMoE` (:mod:`moestat.estimators.deepseek`); tau and nu are **variances**.

The four settings of the paper's App. G.1 (``theory.md`` §2.5; X ~ U[-3, 3],
k1* = 1 shared and k2* = 2 routed experts; fitted with k1 = 2, k2 = 3):

======  ====================  ===================================  =================================
name    routed gate           shared expert                        routed experts
======  ====================  ===================================  =================================
thm1    softmax               kappa2 ReLU(kappa1 x + kappa0)        eta2 ReLU(eta1 x)
thm2    softmax               kappa1 x + kappa0                     eta1 x + eta0
thm3    normalized sigmoid    kappa2 ReLU(kappa1 x + kappa0)        eta2 ReLU(eta1 x)   (beta1* = 0: sparse)
thm4    normalized sigmoid    kappa2 ReLU(kappa1 x + kappa0)        eta1 x + eta0       (beta1* = 5: dense)
======  ====================  ===================================  =================================

The true parameters are stored as the paper prints them (e.g. softmax gate
rows (beta0, beta1) = (-0.5, 5), (0.5, 5); ReLU kappa = (0, 6, -8)); use
:meth:`TrueModel.canonical` for the identified coordinates the fits report
(softmax reference row 0 = 0, ReLU |scale| = 1).
"""
from __future__ import annotations

import numpy as np

from ..estimators.deepseek import DeepSeekMoE
from ..experts import GaussianParams, NeuronParams, ReLUExpert, StackedParams
from ..fitting import em
from ..gating import SharedRoutedParams, get_gate
from .truth import TrueModel

SETTINGS = ("thm1", "thm2", "thm3", "thm4")

# ------------------------------------------------------------------ the paper's true parameters

_SHARED_RELU = dict(kappa0=0.0, kappa1=6.0, kappa2=-8.0, tau=0.25)
_SHARED_LINEAR = dict(kappa0=0.0, kappa1=2.0, tau=0.2)
_ROUTED_RELU = [dict(eta1=-12.0, eta2=4.0, nu=0.4), dict(eta1=12.0, eta2=4.0, nu=0.4)]
_ROUTED_LINEAR = [dict(eta1=8.0, eta0=2.0, nu=0.4), dict(eta1=-6.0, eta0=1.0, nu=0.4)]
_GATE = {"thm1": [(-0.5, 5.0), (0.5, 5.0)], "thm2": [(-0.5, 5.0), (0.5, 5.0)],
         "thm3": [(-0.5, 0.0), (0.5, 0.0)], "thm4": [(-0.5, 5.0), (0.5, 5.0)]}
_LAYOUT = {  # routed gate, shared family, routed family
    "thm1": ("softmax", "relu", "relu"), "thm2": ("softmax", "linear", "linear"),
    "thm3": ("normalized_sigmoid", "relu", "relu"), "thm4": ("normalized_sigmoid", "relu", "linear")}
_DESCRIPTION = {
    "thm1": "Thm 1: softmax routing, shared and routed ReLU experts",
    "thm2": "Thm 2: softmax routing, shared and routed linear experts",
    "thm3": "Thm 3: normalized sigmoid routing (sparse, beta1* = 0), shared and routed ReLU experts",
    "thm4": "Thm 4: normalized sigmoid routing (dense), shared ReLU and routed linear experts"}


def _families(setting):
    gate, shared, routed = _LAYOUT[setting]
    fs = ReLUExpert() if shared == "relu" else "linear"
    fr = ReLUExpert(bias=False) if routed == "relu" else "linear"
    return gate, fs, fr


def _shared_params(kind):
    if kind == "relu":
        s = _SHARED_RELU
        return NeuronParams(coef=np.array([[s["kappa0"], s["kappa1"]]]), scale=np.array([s["kappa2"]]),
                            sigma2=np.array([s["tau"]]))
    s = _SHARED_LINEAR
    return GaussianParams(coef=np.array([[s["kappa0"], s["kappa1"]]]), sigma2=np.array([s["tau"]]))


def _routed_params(kind):
    if kind == "relu":
        r = _ROUTED_RELU
        return NeuronParams(coef=np.array([[0.0, e["eta1"]] for e in r]), scale=np.array([e["eta2"] for e in r]),
                            sigma2=np.array([e["nu"] for e in r]))
    r = _ROUTED_LINEAR
    return GaussianParams(coef=np.array([[e["eta0"], e["eta1"]] for e in r]), sigma2=np.array([e["nu"] for e in r]))


def true_model(setting: str) -> TrueModel:
    """The true model of one DeepSeekMoE setting ("thm1" ... "thm4"), with k1* = 1 shared and k2* = 2 routed experts.

    The routed gate is looked up by name, so "thm3"/"thm4" need the
    ``normalized_sigmoid`` gate to be installed (a clear error says so otherwise).
    """
    if setting not in SETTINGS:
        raise ValueError("unknown DeepSeekMoE setting %r; choose one of %s" % (setting, ", ".join(SETTINGS)))
    gate_name, fs, fr = _families(setting)
    model = DeepSeekMoE(n_shared=1, n_routed=2, shared_expert=fs, routed_expert=fr, routed_gating=gate_name)
    routed_gate = model.gate.routed
    base = routed_gate.init_params(2, 2)
    if "coef" not in base._fields or np.shape(base.coef) != (2, 2):
        raise TypeError("the %r gate has no (k, p) 'coef' parameter to hold the paper's (beta0, beta1)" % gate_name)
    gate = SharedRoutedParams(shared=np.array([1.0]), routed=base._replace(coef=np.array(_GATE[setting])))
    _, shared_kind, routed_kind = _LAYOUT[setting]
    expert = StackedParams(blocks=(_shared_params(shared_kind), _routed_params(routed_kind)))
    params = em.MoEParams(gate=gate, expert=expert)
    return TrueModel(name="deepseek_" + setting, model=model, params=params,
                     x_law={"law": "uniform", "low": -3.0, "high": 3.0, "d": 1}, description=_DESCRIPTION[setting])


def fitted_model(setting: str, n_shared: int = 2, n_routed: int = 3, **kwargs) -> DeepSeekMoE:
    """The over-specified model the paper fits in a setting (default k1 = 2 shared, k2 = 3 routed)."""
    if setting not in SETTINGS:
        raise ValueError("unknown DeepSeekMoE setting %r; choose one of %s" % (setting, ", ".join(SETTINGS)))
    gate_name, fs, fr = _families(setting)
    get_gate(gate_name)  # a clear error when the gate is not installed
    return DeepSeekMoE(n_shared=n_shared, n_routed=n_routed, shared_expert=fs, routed_expert=fr,
                       routed_gating=gate_name, **kwargs)


def overspecified_truth(truth: TrueModel, n_shared: int = 2, n_routed: int = 3) -> em.MoEParams:
    """The true model written as parameters of the over-specified model (``fitted_model``'s layout).

    The first shared and the first routed true expert are repeated to fill the
    extra slots.  Shared copies split the weight omega equally (exact).  Routed
    copies under softmax split the gate mass, intercept beta0 - log(m) (exact);
    under other gates the extra copies get beta0 = -40 and beta1 = 0, so their
    weight is ~1e-17 (exact up to that).  A starting value whose log-likelihood
    equals the truth's: EM from it, being monotone, ends at least as high.
    """
    g, e = truth.params.gate, truth.params.expert
    k1, k2 = np.shape(g.shared)[0], np.shape(g.routed.coef)[0]
    if n_shared < k1 or n_routed < k2:
        raise ValueError("the over-specified model must have at least the true numbers of experts (%d shared, %d "
                         "routed), got %d and %d" % (k1, k2, n_shared, n_routed))
    sh_idx = [0] * (n_shared - k1 + 1) + list(range(1, k1))
    ro_idx = [0] * (n_routed - k2 + 1) + list(range(1, k2))
    m1 = n_shared - k1 + 1
    shared = np.asarray(g.shared, dtype=float)[sh_idx] / np.array([m1] * m1 + [1] * (k1 - 1))
    coef = np.asarray(g.routed.coef, dtype=float)[ro_idx].copy()
    m2 = n_routed - k2 + 1
    if truth.model.gate.routed.name == "softmax":
        coef[:m2, 0] -= np.log(m2)
    else:
        coef[1:m2] = 0.0
        coef[1:m2, 0] = -40.0

    def rows(p, idx):
        return type(p)(*(np.asarray(a, dtype=float)[idx] for a in p))
    sh_p, ro_p = e.blocks
    gate = SharedRoutedParams(shared=shared, routed=g.routed._replace(coef=coef))
    return em.MoEParams(gate=gate, expert=StackedParams(blocks=(rows(sh_p, sh_idx), rows(ro_p, ro_idx))))
