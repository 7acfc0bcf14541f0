"""Conformance: engine properties of every registered family, fitted through the public estimators.

For each gate family (with linear Gaussian experts) and each expert family
(under the softmax gate), two fits from the same explicit start:

* fit A on n = 270 rows;
* fit B on the same rows plus 40 rows of weight 0 holding wild values
  (n = 310, the same padding bucket of 320);
* fit C with 20 of those rows (n = 290), counting XLA compilations.

Checked: EM is monotone (``loglik_trace`` never falls by more than
1e-8 |loglik|), the weight-0 rows change no estimate (to 1e-8) and no
log-likelihood, and fit C compiles nothing (a new n in a bucket reuses the
programs fit B compiled; B and C follow the same numerical path, so a
program compiled in C can only be due to n).  Data are drawn in NumPy from the transcribed models.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
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
class EngineCase:
    """An estimator, the parameters the data are drawn from, and the start of both fits.

    ``gate_probs(params, x)`` and ``draw_y(rng, expert params, x, z)`` are transcriptions;
    ``fit_kwargs(n)`` gives extra per-row fit arguments (binomial trials); ``wild_y`` turns
    responses into other valid ones for the weight-0 rows; ``polish`` runs the Newton polish too.
    """

    model: Callable[[], Any]
    truth: Any
    start: Any
    gate_probs: Callable
    draw_y: Callable
    fit_kwargs: Callable = field(default=lambda n: {})
    wild_y: Callable = field(default=lambda y: 3.0 * y + 1.0)
    polish: bool = False


def _linear(k):
    return E.GaussianParams(coef=np.array([[1.0, 2.0], [-1.0, -1.5], [0.5, 0.0], [2.0, -1.0]])[:k],
                            sigma2=np.array([0.09, 0.16, 0.04, 0.1])[:k])


def _normal_y(mean_fn):
    def draw(rng, p, x, z, var=None):
        m = mean_fn(p, x)
        s2 = np.concatenate([np.asarray(b.sigma2) for b in p.blocks]) if hasattr(p, "blocks") else p.sigma2
        return m[z, np.arange(len(z))] + np.sqrt(np.asarray(s2)[z]) * rng.standard_normal(len(z))
    return draw


def _shrunk(params, factor=0.8):
    """A start near the truth: every array scaled towards 0 (variances and weights kept positive)."""
    def f(a):
        a = np.asarray(a, dtype=np.float64)
        return a if a.ndim == 0 else a * factor if np.all(a == 0) or np.any(a < 0) else a * (1.1 if a.ndim else 1)
    return jax.tree_util.tree_map(f, params)


def _softmax_gate_probs(p, x):
    return np.exp(T.softmax_gate(p, x))


def _gate_case(gate, k, gate_params, gate_fn):
    truth = ms.MoEParams(gate=gate_params, expert=_linear(k))
    start = ms.MoEParams(gate=gate_params, expert=E.GaussianParams(coef=0.8 * _linear(k).coef,
                                                                   sigma2=2.0 * _linear(k).sigma2))
    return EngineCase(lambda: ms.GaussianMoE(k, gating=gate), truth, start,
                      lambda p, x: np.exp(gate_fn(p, x)), _normal_y(T.linear_mean))


SOFTMAX2 = G.SoftmaxParams(coef=np.array([[0.0, 0.0], [0.3, 2.0]]))

GATE_ENGINE: dict[str, EngineCase] = {
    "softmax": _gate_case(G.Softmax(), 2, SOFTMAX2, T.softmax_gate),
    "modified_softmax": _gate_case(G.ModifiedSoftmax("sigmoid"), 2,
                                   G.SoftmaxParams(coef=np.array([[0.0, 0.0], [-1.5, 3.0]])),
                                   lambda p, x: T.modified_softmax_gate(p, x, "sigmoid")),
    "normalized_sigmoid": _gate_case(G.NormalizedSigmoid(), 2,
                                     G.NormalizedSigmoidParams(coef=np.array([[1.0, 2.0], [0.0, -1.0]])),
                                     T.normalized_sigmoid_gate),
    "topk": _gate_case(G.TopK(k=2), 3, G.SoftmaxParams(coef=np.array([[0.0, 0.0], [1.0, 2.0], [0.3, -2.0]])),
                       lambda p, x: T.topk_gate(p, x, 2)),
    "temperature_softmax": _gate_case(G.TemperatureSoftmax(temperature=0.5), 2,
                                      G.TemperatureParams(coef=np.array([[0.0, 0.0], [0.25, 1.0]]),
                                                          log_temp=np.log(0.5)), T.temperature_gate),
    "activation_softmax": _gate_case(G.ActivationSoftmax(), 2,
                                     G.ActivationParams(coef=np.array([[0.0, 0.0], [0.5, 3.0]]),
                                                        log_temp=np.log(0.5)), T.activation_gate),
    "gaussian": _gate_case(G.GaussianGate(), 2,
                           G.GaussianGateParams(weight=np.array([0.4, 0.6]), mean=np.array([[-1.0], [1.0]]),
                                                cov=np.array([[[0.3]], [[0.5]]])), T.gaussian_gate),
    "shared_routed": _gate_case(G.SharedRouted(n_shared=1, routed="softmax"), 3,
                                G.SharedRoutedParams(shared=np.array([1.0]), routed=SOFTMAX2),
                                lambda p, x: T.shared_routed_gate(p, x, T.softmax_gate)),
    "expert_prototyping": _gate_case(G.ExpertPrototyping(groups=2), 4,
                                     G.SoftmaxParams(coef=np.array([[0.0, 0.0], [0.5, 2.0], [0.0, 0.0],
                                                                    [-0.5, -2.0]])),
                                     lambda p, x: T.prototyping_gate(p, x, 2)),
    "entropy_switched": _gate_case(G.EntropySwitched(k=1, threshold=0.5, q=1.5), 3,
                                   G.SoftmaxParams(coef=np.array([[0.0, 0.0], [1.0, 2.0], [0.3, -2.0]])),
                                   lambda p, x: T.entropy_switched_gate(p, x, 1, 0.5, 1.5)),
}


def _expert_case(model, expert_params, start_expert, draw_y, **kw):
    return EngineCase(model, ms.MoEParams(gate=SOFTMAX2, expert=expert_params),
                      ms.MoEParams(gate=SOFTMAX2, expert=start_expert), _softmax_gate_probs, draw_y, **kw)


def _neuron(coef, scale):
    return E.NeuronParams(coef=np.array(coef), scale=np.array(scale), sigma2=np.array([0.09, 0.16]))


def _poisson_y(rng, p, x, z):
    return rng.poisson(T.poisson_mean(p, x, np.zeros(len(x)))[z, np.arange(len(z))]).astype(float)


TRIALS = 5


def _binomial_y(rng, p, x, z):
    return rng.binomial(TRIALS, T.binomial_mean(p, x, "logit")[z, np.arange(len(z))]).astype(float)


def _categorical_y(rng, p, x, z):
    P = T.multinomial_mean(p, x)[z, :, np.arange(len(z))]             # (n, C)
    return (P.cumsum(axis=1) < rng.random((len(z), 1))).sum(axis=1)


MULTI = np.array([[[0.0, 0.0], [1.0, 2.0], [-1.0, 1.0]], [[0.0, 0.0], [0.5, -2.0], [1.0, -1.0]]])

EXPERT_ENGINE: dict[str, EngineCase] = {
    "linear": _expert_case(lambda: ms.GaussianMoE(2), _linear(2),
                           E.GaussianParams(coef=0.8 * _linear(2).coef, sigma2=2 * _linear(2).sigma2),
                           _normal_y(T.linear_mean), polish=True),
    "polynomial": _expert_case(lambda: ms.GaussianMoE(2, expert=E.GaussianPolynomial(degree=2)),
                               E.GaussianParams(coef=np.array([[1.0, 2.0, -1.0], [-1.0, 0.5, 1.0]]),
                                                sigma2=np.array([0.09, 0.16])),
                               E.GaussianParams(coef=np.array([[0.8, 1.5, -0.5], [-0.5, 0.0, 0.5]]),
                                                sigma2=np.array([0.3, 0.3])),
                               _normal_y(lambda p, x: T.polynomial_mean(p, x, 2))),
    "relu": _expert_case(lambda: ms.GaussianMoE(2, expert="relu"), _neuron([[-1.0, 2.0], [0.0, -1.0]], [1.0, -1.0]),
                         _neuron([[-0.8, 1.5], [0.2, -0.8]], [1.0, -1.0]),
                         _normal_y(lambda p, x: T.neuron_mean(p, x, "relu"))),
    "gelu": _expert_case(lambda: ms.GaussianMoE(2, expert="gelu"), _neuron([[-1.0, 2.0], [0.0, -1.0]], [1.5, -1.0]),
                         _neuron([[-0.8, 1.5], [0.2, -0.8]], [1.0, -1.0]),
                         _normal_y(lambda p, x: T.neuron_mean(p, x, "gelu"))),
    "poisson": _expert_case(lambda: ms.GLMMoE(2, family="poisson"),
                            E.GLMParams(coef=np.array([[1.0, 0.5], [0.2, -0.8]])),
                            E.GLMParams(coef=np.array([[0.8, 0.3], [0.4, -0.5]])), _poisson_y),
    "binomial": _expert_case(lambda: ms.GLMMoE(2, family="binomial"),
                             E.GLMParams(coef=np.array([[0.5, 1.5], [-0.5, -1.0]])),
                             E.GLMParams(coef=np.array([[0.3, 1.0], [-0.3, -0.6]])), _binomial_y,
                             fit_kwargs=lambda n: {"trials": np.full(n, float(TRIALS))},
                             wild_y=lambda y: TRIALS - y),
    "multinomial": _expert_case(lambda: ms.MultinomialMoE(2), E.MultinomialParams(coef=MULTI),
                                E.MultinomialParams(coef=0.7 * MULTI), _categorical_y,
                                wild_y=lambda y: (y + 1) % 3),
    "stacked": _expert_case(lambda: ms.GaussianMoE(2, expert=E.Stacked(((E.ReLUExpert(), 1), ("linear", 1)))),
                            E.StackedParams(blocks=(_neuron([[-1.0, 2.0]], [1.0])._replace(sigma2=np.array([0.09])),
                                                    E.GaussianParams(coef=np.array([[-1.0, -1.5]]),
                                                                     sigma2=np.array([0.16])))),
                            E.StackedParams(blocks=(_neuron([[-0.8, 1.5]], [1.0])._replace(sigma2=np.array([0.2])),
                                                    E.GaussianParams(coef=np.array([[-0.8, -1.0]]),
                                                                     sigma2=np.array([0.3])))),
                            _normal_y(lambda p, x: np.vstack([T.neuron_mean(p.blocks[0], x, "relu"),
                                                              T.linear_mean(p.blocks[1], x)]))),
}


def draw_data(case, n, seed):
    """(x (n, 1), y (n,)) from the case's truth, drawn in NumPy from the transcribed model."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (n, 1))
    probs = case.gate_probs(case.truth.gate, x)                            # (k, n)
    z = (np.cumsum(probs, axis=0) < rng.random(n)[None]).sum(axis=0)
    z = np.minimum(z, probs.shape[0] - 1)
    return x, case.draw_y(rng, case.truth.expert, x, z)


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
    x, y = draw_data(case, N_FIT + N_PAD, seed=5)
    x[N_FIT:] = 50.0 * np.sign(x[N_FIT:]) + 7.0      # wild values on the weight-0 rows
    y[N_FIT:] = case.wild_y(y[N_FIT:])
    model = case.model()

    def fit(n):
        w = (np.arange(n) < N_FIT).astype(float)
        return model.fit(x[:n], y[:n], weights=w, init=case.start, polish=case.polish, **FIT, **case.fit_kwargs(n))

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
def test_gate_engine_properties(name):
    case = GATE_ENGINE.get(name) or pytest.fail("no engine case for gate %r in %s" % (name, __name__))
    run_engine_checks(case, "gate %s" % name)


@pytest.mark.parametrize("name", ms.experts.available())
def test_expert_engine_properties(name):
    case = EXPERT_ENGINE.get(name) or pytest.fail("no engine case for expert %r in %s" % (name, __name__))
    run_engine_checks(case, "expert %s" % name)
