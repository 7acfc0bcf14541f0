"""Named non-MoE truths, fitted k as a rule of n, and the regression-function loss of the harness.

References: closed forms integrated over X with scipy.integrate.quad, and the balance rule written out.
"""
import copy
import math

import numpy as np
import pytest
from scipy import integrate

from moestat.fitting import em
from moestat.experts.glm import GLMParams
from moestat.experts.gaussian import GaussianParams
from moestat.gating.softmax import SoftmaxParams
from moestat.montecarlo import load_spec
from moestat.montecarlo.spec import Spec
from moestat.montecarlo.targets import balance_k
from moestat.montecarlo.worker import compute_losses, experiment_for, replicate_data


def _variant(name, key):
    return next(v for v in load_spec(name).variants() if v.variant == key)


def test_balance_rule_written_out():
    rule = load_spec("mendes-jiang-tradeoff").raw["fit"]["k"]
    for n in (300, 1000, 5000, 60000):
        assert balance_k(rule, n) == max(2, min(12, round((n / math.log(n)) ** (1 / 5))))
    # the worker fits each size with its own k
    raw = load_spec("mendes-jiang-tradeoff").raw
    assert [experiment_for(raw, None, n).cfg.k for n in (300, 60000)] == [2, 6]


def test_target_kl_and_hellinger_match_quad():
    # fit one log-linear Poisson expert with constant mean e^c: KL(Pois(lam(x)) || Pois(e^c)) in closed form
    raw = copy.deepcopy(load_spec("mendes-jiang-tradeoff").raw)
    raw["fit"]["k"] = 1
    exp = experiment_for(raw)
    c = 1.4
    params = em.MoEParams(gate=SoftmaxParams(coef=np.zeros((1, 2))), expert=GLMParams(coef=np.array([[c, 0.0]])))
    losses, errs, _ = compute_losses(exp, params)
    lam = lambda x: math.exp(1.0 + 0.8 * math.sin(math.pi * x))             # noqa: E731
    mu = math.exp(c)
    kl = integrate.quad(lambda x: lam(x) * math.log(lam(x) / mu) + mu - lam(x), 0, 1, epsabs=1e-13)[0]
    assert losses["KL"] == pytest.approx(kl, abs=1e-9) and abs(losses["KL"] - kl) <= errs["KL"] + 1e-12
    # Hellinger of two Poissons: 1 - h^2 = exp(-(sqrt(lam) - sqrt(mu))^2 / 2)
    h = integrate.quad(lambda x: math.sqrt(1 - math.exp(-(math.sqrt(lam(x)) - math.sqrt(mu)) ** 2 / 2)), 0, 1,
                       epsabs=1e-13, points=[1 / 6, 5 / 6])[0]       # kinks where lam(x) = mu
    # the kinks limit the X quadrature; the stated error covers the difference
    assert abs(losses["Hellinger"] - h) <= errs["Hellinger"] and errs["Hellinger"] < 1e-3
    # the data follow the target: the mean count over a large sample is int_0^1 lam
    _, y, _ = replicate_data(exp, 40000, 0)
    assert abs(y.mean() - integrate.quad(lam, 0, 1)[0]) < 4 * math.sqrt(4.5 / 40000)


def test_sigmoid_and_softmax_truths_are_the_same_model():
    a, b = _variant("sigmoid-vs-softmax", "sigmoid-relu"), _variant("sigmoid-vs-softmax", "softmax-relu")
    ea, eb = experiment_for(a.raw), experiment_for(b.raw)
    xa, ya, _ = replicate_data(ea, 3000, 1)
    eb = experiment_for(b.raw)
    xb, yb, _ = replicate_data(eb, 3000, 1)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_allclose(ya, yb, atol=1e-12)


def test_regression_loss_matches_quad():
    # softmax-linear variant refitted with k = k*: shifting expert 0's intercept by d moves the
    # regression function by d * w0(x), w0(x) = sigmoid(0.5 + 3x) on U[-1, 1]
    raw = copy.deepcopy(_variant("sigmoid-vs-softmax", "softmax-linear").raw)
    raw["fit"]["k"] = 2
    exp = experiment_for(raw)
    d = 0.3
    p = em.MoEParams(gate=SoftmaxParams(coef=np.array([[0.0, 0.0], [-0.5, -3.0]])),
                     expert=GaussianParams(coef=np.array([[1.0 + d, 2.0], [-1.0, -1.5]]),
                                           sigma2=np.array([0.16, 0.09])))
    losses, errs, _ = compute_losses(exp, p)
    w0 = lambda x: 1 / (1 + math.exp(-(0.5 + 3 * x)))        # noqa: E731
    l2 = math.sqrt(integrate.quad(lambda x: (d * w0(x)) ** 2, -1, 1, epsabs=1e-14)[0] / 2)
    assert losses["L2 (softmax-linear)"] == pytest.approx(l2, abs=1e-10)
    zero, _, _ = compute_losses(exp, exp.fit.canonical(exp.true_params))
    assert zero["L2 (softmax-linear)"] == pytest.approx(0.0, abs=1e-12) and zero["TV (softmax-linear)"] < 1e-9


@pytest.mark.parametrize("change,match", [
    (lambda r: r["truth"].update(target={"name": "nope"}), "unknown target"),
    (lambda r: r["truth"]["target"].update(b="big"), "must be a finite number"),
    (lambda r: r["truth"].update(gate="softmax"), "takes only 'target'"),
    (lambda r: r.update(protocol="paper"), "use the 'mle' protocol"),
    (lambda r: r["losses"].append({"name": "D1", "kind": "D1"}), "Voronoi losses"),
    (lambda r: r["x"].update(d=2), "x.d must be 1"),
    (lambda r: r["fit"]["k"].update(gamma=0), "'gamma' must be a number > 0"),
    (lambda r: r["fit"]["k"].update(min=5, max=3), "min \\(5\\) exceeds max"),
    (lambda r: r["fit"]["k"].update(rule="sqrt"), "rule must be"),
    (lambda r: r["fit"]["k"].update(extra=1), "unknown field"),
    (lambda r: r["fit"].update(k=0), "positive integer or a rule"),
])
def test_bad_target_or_rule_fields_are_named(change, match):
    raw = copy.deepcopy(load_spec("mendes-jiang-tradeoff").raw)
    change(raw)
    with pytest.raises(ValueError, match=match):
        Spec(raw)


def test_a_fit_of_another_response_type_is_refused():
    raw = copy.deepcopy(load_spec("mendes-jiang-tradeoff").raw)
    raw["fit"]["expert"] = "linear"
    with pytest.raises(ValueError, match="count response, but the fitted 'linear' experts"):
        experiment_for(raw)
