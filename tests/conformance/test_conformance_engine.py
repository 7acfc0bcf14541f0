"""Conformance: engine properties of every registered family, fitted through the public estimators.

Every registered gate family is fitted with one expert family and every
expert family with one gate family (``PAIRS``: ten fitted models cover all
families, each compiled EM program costing seconds), three fits from the same
explicit start:

* fit A on n = 270 rows;
* fit B on the same rows plus 40 rows of weight 0 holding wild values
  (n = 310, the same padding bucket of 320);
* fit C with 20 of those rows (n = 290), counting XLA compilations.

Checked: EM is monotone (``loglik_trace`` never falls by more than
1e-8 |loglik|), the weight-0 rows change no estimate (to 1e-8) and no
log-likelihood, and fit C compiles nothing (a new n in a bucket reuses the
programs fit B compiled; B and C follow the same numerical path, so a
program compiled in C can only be due to n).  Data are drawn in NumPy from
the transcribed models.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import jax
import numpy as np
import pytest

import moestat as ms

from . import transcriptions as T

G, E = ms.gating, ms.experts
N_FIT, N_PAD = 270, 40          # 270 and 310 rows share the padding bucket of 320
FIT = dict(max_iter=25, tol=0.0)


@dataclass
class GateSpec:
    """A gate with its number of experts, the parameters data are drawn from and its transcribed weights."""

    gate: Any
    k: int
    params: Any
    log_weights: Callable          # transcription (params, x) -> (k, n)


@dataclass
class ExpertSpec:
    """An expert family: estimator, truth and start (for k experts), response draws from the transcription.

    ``fit_kwargs(n)`` gives extra per-row fit arguments (binomial trials); ``wild_y`` turns
    responses into other valid ones for the weight-0 rows.
    """

    estimator: Callable            # (k, gate) -> estimator
    truth: Callable                # k -> expert params
    start: Callable                # k -> expert params
    draw_y: Callable               # (rng, expert params, x, z) -> y
    fit_kwargs: Callable = field(default=lambda n: {})
    wild_y: Callable = field(default=lambda y: 3.0 * y + 1.0)


def _linear(k):
    return E.GaussianParams(coef=np.array([[1.0, 2.0], [-1.0, -1.5], [0.5, 0.0], [2.0, -1.0]])[:k],
                            sigma2=np.array([0.09, 0.16, 0.04, 0.1])[:k])


def _normal_y(mean_fn):
    def draw(rng, p, x, z):
        m = mean_fn(p, x)
        s2 = np.concatenate([np.asarray(b.sigma2) for b in p.blocks]) if hasattr(p, "blocks") else p.sigma2
        return m[z, np.arange(len(z))] + np.sqrt(np.asarray(s2)[z]) * rng.standard_normal(len(z))
    return draw


SOFTMAX2 = G.SoftmaxParams(coef=np.array([[0.0, 0.0], [0.3, 2.0]]))

GATE_SPECS: dict[str, GateSpec] = {
    "softmax": GateSpec(G.Softmax(), 2, SOFTMAX2, T.softmax_gate),
    "modified_softmax": GateSpec(G.ModifiedSoftmax("sigmoid"), 2,
                                 G.SoftmaxParams(coef=np.array([[0.0, 0.0], [-1.5, 3.0]])),
                                 partial(T.modified_softmax_gate, transform="sigmoid")),
    "normalized_sigmoid": GateSpec(G.NormalizedSigmoid(), 2,
                                   G.NormalizedSigmoidParams(coef=np.array([[1.0, 2.0], [0.0, -1.0]])),
                                   T.normalized_sigmoid_gate),
    "topk": GateSpec(G.TopK(k=1), 2, SOFTMAX2, partial(T.topk_gate, K=1)),
    "temperature_softmax": GateSpec(G.TemperatureSoftmax(temperature=0.5), 2,
                                    G.TemperatureParams(coef=np.array([[0.0, 0.0], [0.25, 1.0]]),
                                                        log_temp=np.log(0.5)), T.temperature_gate),
    "activation_softmax": GateSpec(G.ActivationSoftmax(), 2,
                                   G.ActivationParams(coef=np.array([[0.0, 0.0], [0.5, 3.0]]),
                                                      log_temp=np.log(0.5)), T.activation_gate),
    "gaussian": GateSpec(G.GaussianGate(), 2,
                         G.GaussianGateParams(weight=np.array([0.4, 0.6]), mean=np.array([[-1.0], [1.0]]),
                                              cov=np.array([[[0.3]], [[0.5]]])), T.gaussian_gate),
    "shared_routed": GateSpec(G.SharedRouted(n_shared=1, routed="softmax"), 3,
                              G.SharedRoutedParams(shared=np.array([1.0]), routed=SOFTMAX2),
                              partial(T.shared_routed_gate, routed=T.softmax_gate)),
    "expert_prototyping": GateSpec(G.ExpertPrototyping(groups=1), 2, SOFTMAX2,
                                   partial(T.prototyping_gate, groups=1)),
    "entropy_switched": GateSpec(G.EntropySwitched(k=1, threshold=0.5, q=1.5), 2, SOFTMAX2,
                                 partial(T.entropy_switched_gate, K=1, threshold=0.5, q=1.5)),
}


def _neuron(coef, scale, sigma2=(0.09, 0.16)):
    return E.NeuronParams(coef=np.array(coef), scale=np.array(scale), sigma2=np.array(sigma2))


def _poisson_y(rng, p, x, z):
    return rng.poisson(T.poisson_mean(p, x, np.zeros(len(x)))[z, np.arange(len(z))]).astype(float)


TRIALS = 5


def _binomial_y(rng, p, x, z):
    return rng.binomial(TRIALS, T.binomial_mean(p, x, "logit")[z, np.arange(len(z))]).astype(float)


def _categorical_y(rng, p, x, z):
    P = T.multinomial_mean(p, x)[z, :, np.arange(len(z))]             # (n, C)
    return (P.cumsum(axis=1) < rng.random((len(z), 1))).sum(axis=1)


def _gaussian_moe(expert=None):
    return lambda k, gate: ms.GaussianMoE(k, gating=gate, expert=expert)


MULTI = np.array([[[0.0, 0.0], [1.0, 2.0], [-1.0, 1.0]], [[0.0, 0.0], [0.5, -2.0], [1.0, -1.0]]])
STACKED = E.Stacked(((E.ReLUExpert(), 1), ("linear", 1)))

EXPERT_SPECS: dict[str, ExpertSpec] = {
    "linear": ExpertSpec(_gaussian_moe(), _linear,
                         lambda k: E.GaussianParams(coef=0.8 * _linear(k).coef, sigma2=2.0 * _linear(k).sigma2),
                         _normal_y(T.linear_mean)),
    "polynomial": ExpertSpec(_gaussian_moe(E.GaussianPolynomial(degree=2)),
                             lambda k: E.GaussianParams(coef=np.array([[1.0, 2.0, -1.0], [-1.0, 0.5, 1.0]]),
                                                        sigma2=np.array([0.09, 0.16])),
                             lambda k: E.GaussianParams(coef=np.array([[0.8, 1.5, -0.5], [-0.5, 0.0, 0.5]]),
                                                        sigma2=np.array([0.3, 0.3])),
                             _normal_y(partial(T.polynomial_mean, degree=2))),
    "relu": ExpertSpec(_gaussian_moe("relu"), lambda k: _neuron([[-1.0, 2.0], [0.0, -1.0]], [1.0, -1.0]),
                       lambda k: _neuron([[-0.8, 1.5], [0.2, -0.8]], [1.0, -1.0]),
                       _normal_y(partial(T.neuron_mean, act="relu"))),
    "gelu": ExpertSpec(_gaussian_moe("gelu"), lambda k: _neuron([[-1.0, 2.0], [0.0, -1.0]], [1.5, -1.0]),
                       lambda k: _neuron([[-0.8, 1.5], [0.2, -0.8]], [1.0, -1.0]),
                       _normal_y(partial(T.neuron_mean, act="gelu"))),
    "poisson": ExpertSpec(lambda k, gate: ms.GLMMoE(k, family="poisson", gating=gate),
                          lambda k: E.GLMParams(coef=np.array([[1.0, 0.5], [0.2, -0.8]])),
                          lambda k: E.GLMParams(coef=np.array([[0.8, 0.3], [0.4, -0.5]])), _poisson_y),
    "binomial": ExpertSpec(lambda k, gate: ms.GLMMoE(k, family="binomial", gating=gate),
                           lambda k: E.GLMParams(coef=np.array([[0.5, 1.5], [-0.5, -1.0]])),
                           lambda k: E.GLMParams(coef=np.array([[0.3, 1.0], [-0.3, -0.6]])), _binomial_y,
                           fit_kwargs=lambda n: {"trials": np.full(n, float(TRIALS))},
                           wild_y=lambda y: TRIALS - y),
    "multinomial": ExpertSpec(lambda k, gate: ms.MultinomialMoE(k, gating=gate),
                              lambda k: E.MultinomialParams(coef=MULTI),
                              lambda k: E.MultinomialParams(coef=0.7 * MULTI), _categorical_y,
                              wild_y=lambda y: (y + 1) % 3),
    "stacked": ExpertSpec(_gaussian_moe(STACKED),
                          lambda k: E.StackedParams(blocks=(_neuron([[-1.0, 2.0]], [1.0], [0.09]),
                                                            E.GaussianParams(coef=np.array([[-1.0, -1.5]]),
                                                                             sigma2=np.array([0.16])))),
                          lambda k: E.StackedParams(blocks=(_neuron([[-0.8, 1.5]], [1.0], [0.2]),
                                                            E.GaussianParams(coef=np.array([[-0.8, -1.0]]),
                                                                             sigma2=np.array([0.3])))),
                          _normal_y(lambda p, x: np.vstack([T.neuron_mean(p.blocks[0], x, "relu"),
                                                            T.linear_mean(p.blocks[1], x)]))),
}

#: each fit runs one gate family with one expert family, so that every registered family is fitted
#: once with as few compiled EM programs as possible (each costs seconds to compile)
PAIRS = [
    ("softmax", "linear"), ("modified_softmax", "polynomial"), ("normalized_sigmoid", "relu"),
    ("topk", "gelu"), ("temperature_softmax", "poisson"), ("activation_softmax", "binomial"),
    ("gaussian", "stacked"), ("expert_prototyping", "multinomial"), ("entropy_switched", "linear"),
    ("shared_routed", "linear"),
]


@dataclass
class EngineCase:
    """One fit configuration: estimator factory, truth and start parameters, data draws.

    ``polish``: also run the Newton polish (its derivatives must ignore weight-0 rows too, see
    :func:`test_standard_errors_ignore_rows_of_weight_0`).
    """

    gate: GateSpec
    expert: ExpertSpec
    polish: bool = False

    def model(self):
        return self.expert.estimator(self.gate.k, self.gate.gate)

    @property
    def truth(self):
        return ms.MoEParams(gate=self.gate.params, expert=self.expert.truth(self.gate.k))

    @property
    def start(self):
        return ms.MoEParams(gate=self.gate.params, expert=self.expert.start(self.gate.k))


def draw_data(case, n, seed):
    """(x (n, 1), y (n,)) from the case's truth, drawn in NumPy from the transcribed model."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (n, 1))
    probs = np.exp(case.gate.log_weights(case.truth.gate, x))              # (k, n)
    z = (np.cumsum(probs, axis=0) < rng.random(n)[None]).sum(axis=0)
    z = np.minimum(z, probs.shape[0] - 1)
    return x, case.expert.draw_y(rng, case.truth.expert, x, z)


class _CompileLog(logging.Handler):
    """Collects the names of the programs JAX compiles (its ``jax_log_compiles`` records)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.names: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            self.names.append(msg.split(" ")[1])


@contextmanager
def compilations():
    """Context manager yielding the list of programs compiled inside it; restores ``jax_log_compiles``."""
    handler, logger = _CompileLog(), logging.getLogger("jax")
    old = jax.config.jax_log_compiles
    jax.config.update("jax_log_compiles", True)
    logger.addHandler(handler)
    try:
        yield handler.names
    finally:
        logger.removeHandler(handler)
        jax.config.update("jax_log_compiles", old)


def assert_monotone(trace, llf, what):
    """No EM iteration lowers the log-likelihood by more than 1e-8 |llf|."""
    trace = np.asarray(trace, dtype=np.float64)
    assert trace.size >= 3, "%s: only %d EM iterations recorded" % (what, trace.size)
    drops = np.diff(trace)
    worst = float(drops.min())
    assert worst >= -1e-8 * abs(llf), "%s: EM lowered the log-likelihood by %.3g at iteration %d" % (
        what, -worst, int(np.argmin(drops)) + 1)


def run_engine_checks(case, what):
    """Fits A, B and C of the module docstring and their checks; ``what`` labels the messages."""
    x, y = draw_data(case, N_FIT + N_PAD, seed=5)
    x[N_FIT:] = 50.0 * np.sign(x[N_FIT:]) + 7.0      # wild values on the weight-0 rows
    y[N_FIT:] = case.expert.wild_y(y[N_FIT:])
    model = case.model()

    def fit(n):
        w = (np.arange(n) < N_FIT).astype(float)
        return model.fit(x[:n], y[:n], weights=w, init=case.start, polish=case.polish, **FIT,
                         **case.expert.fit_kwargs(n))

    res_a, res_b = fit(N_FIT), fit(N_FIT + N_PAD)
    # monotone EM (both fits), and the reported optimum is not below the EM path
    for res, label in ((res_a, "fit"), (res_b, "padded fit")):
        assert_monotone(res.loglik_trace, res.loglik, "%s %s" % (what, label))
        assert res.loglik >= res.loglik_trace[-1] - 1e-8 * abs(res.loglik), what
    # padding invariance: rows of weight 0 change nothing
    assert abs(res_a.loglik - res_b.loglik) <= 1e-8 * abs(res_a.loglik), (what, res_a.loglik, res_b.loglik)
    np.testing.assert_allclose(res_a.loglik_trace, res_b.loglik_trace, rtol=1e-8, atol=0, err_msg=what)
    for a, b in zip(jax.tree_util.tree_leaves(res_a.params_tree), jax.tree_util.tree_leaves(res_b.params_tree)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-8, atol=1e-8,
                                   err_msg="%s: estimates changed by rows of weight 0" % what)
    # compile once: the same fit at another n of the bucket (fewer weight-0 rows, so the same
    # numerical path as fit B) compiles no new program
    with compilations() as compiled:
        res_c = fit(N_FIT + N_PAD // 2)
    assert compiled == [], "%s: the fit at a new n of the same bucket compiled %d program(s): %s" % (
        what, len(compiled), sorted(set(compiled)))
    assert abs(res_c.loglik - res_b.loglik) <= 1e-8 * abs(res_b.loglik), what


@pytest.mark.parametrize("name", ms.gating.available())
def test_every_gate_family_has_an_engine_fit(name):
    assert name in GATE_SPECS and any(g == name for g, _ in PAIRS), (
        "gate family %r has no engine fit in %s: add a GateSpec and a pair" % (name, __name__))


@pytest.mark.parametrize("name", ms.experts.available())
def test_every_expert_family_has_an_engine_fit(name):
    assert name in EXPERT_SPECS and any(e == name for _, e in PAIRS), (
        "expert family %r has no engine fit in %s: add an ExpertSpec and a pair" % (name, __name__))


@pytest.mark.parametrize("gate, expert", [
    pytest.param(g, e, id="%s-%s" % (g, e), marks=() if (g, e) == ("softmax", "linear") else pytest.mark.slow)
    for g, e in PAIRS])
def test_engine_properties(gate, expert):
    """Monotone EM, padding invariance and compile-once for one gate family with one expert family."""
    case = EngineCase(GATE_SPECS[gate], EXPERT_SPECS[expert], polish=True)
    run_engine_checks(case, "gate %s, expert %s" % (gate, expert))


def test_standard_errors_ignore_rows_of_weight_0():
    """Observed-information standard errors with and without rows of weight 0 (softmax gate, linear experts)."""
    case = EngineCase(GATE_SPECS["softmax"], EXPERT_SPECS["linear"], polish=True)
    x, y = draw_data(case, N_FIT + N_PAD, seed=5)
    x[N_FIT:] = 50.0 * np.sign(x[N_FIT:]) + 7.0
    y[N_FIT:] = case.expert.wild_y(y[N_FIT:])
    model = case.model()
    plain = model.fit(x[:N_FIT], y[:N_FIT], init=case.start, **FIT)
    padded = model.fit(x, y, weights=(np.arange(N_FIT + N_PAD) < N_FIT).astype(float), init=case.start, **FIT)
    se = np.asarray(plain.bse)
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    np.testing.assert_allclose(np.asarray(padded.bse), se, rtol=1e-8)
