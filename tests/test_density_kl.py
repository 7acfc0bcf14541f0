"""KL divergence, count responses and the regression-function distance of moestat.losses.

References are closed forms integrated over X with scipy.integrate.quad, independent of
moestat's quadrature (composite Gauss-Legendre in X, Simpson in y, sums over counts).
"""
import math

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm, poisson

from moestat.losses import conditional_distance, regression_distance


def _gauss(mean, sd):
    return lambda X, y: norm.logpdf(y[None, :], loc=mean(X[:, 0])[:, None], scale=sd)


def test_kl_of_gaussians_with_x_dependent_means_and_different_variances():
    a = lambda x: np.sin(3 * x)                                        # noqa: E731
    b = lambda x: 0.4 + x ** 2                                         # noqa: E731
    s1, s2 = 0.5, 0.8
    d = conditional_distance(_gauss(a, s1), _gauss(b, s2), kind="kl", x_uniform=(-1, 2), y_range=(-8, 10))
    kl = lambda x: math.log(s2 / s1) + (s1 ** 2 + (a(x) - b(x)) ** 2) / (2 * s2 ** 2) - 0.5  # noqa: E731
    exact = integrate.quad(kl, -1, 2, epsabs=1e-13)[0] / 3
    assert d.value == pytest.approx(exact, abs=1e-9)
    assert d.error < 1e-6 and abs(d.value - exact) <= d.error + 1e-12
    # KL is not symmetric: the reverse direction is another number
    rev = conditional_distance(_gauss(b, s2), _gauss(a, s1), kind="kl", x_uniform=(-1, 2), y_range=(-8, 10))
    kl_rev = lambda x: math.log(s1 / s2) + (s2 ** 2 + (a(x) - b(x)) ** 2) / (2 * s1 ** 2) - 0.5  # noqa: E731
    assert rev.value == pytest.approx(integrate.quad(kl_rev, -1, 2, epsabs=1e-13)[0] / 3, abs=1e-9)
    assert abs(rev.value - d.value) > 0.1


def test_kl_tv_hellinger_of_poisson_counts():
    lam1 = lambda x: np.exp(1.0 + 0.8 * np.sin(2 * np.pi * x))         # noqa: E731
    lam2 = lambda x: np.exp(0.9 + 1.1 * x)                              # noqa: E731
    lp = lambda X, y: poisson.logpmf(y[None, :], lam1(X[:, 0])[:, None])  # noqa: E731
    lq = lambda X, y: poisson.logpmf(y[None, :], lam2(X[:, 0])[:, None])  # noqa: E731
    sup = np.arange(80)
    kl = conditional_distance(lp, lq, kind="kl", x_uniform=(0, 1), y_support=sup)
    exact = integrate.quad(lambda x: lam1(x) * math.log(lam1(x) / lam2(x)) + lam2(x) - lam1(x), 0, 1,
                           epsabs=1e-13, limit=200)[0]
    assert kl.value == pytest.approx(exact, abs=1e-9) and kl.error < 1e-6
    assert abs(kl.value - exact) <= kl.error + 1e-12
    # TV and Hellinger: per-x sums over the counts written out here, integrated by quad
    tv_x = lambda x: 0.5 * np.abs(poisson.pmf(sup, lam1(x)) - poisson.pmf(sup, lam2(x))).sum()  # noqa: E731
    tv = conditional_distance(lp, lq, kind="tv", x_uniform=(0, 1), y_support=sup)
    tv_exact = integrate.quad(tv_x, 0, 1, epsabs=1e-12, limit=400)[0]
    # |p - q| has kinks in x where the two pmfs cross: the X quadrature is the error, and the stated bound covers it
    assert abs(tv.value - tv_exact) <= tv.error and tv.error < 1e-3
    h_x = lambda x: math.sqrt(0.5 * ((np.sqrt(poisson.pmf(sup, lam1(x))) - np.sqrt(poisson.pmf(sup, lam2(x))))
                                     ** 2).sum())                       # noqa: E731
    h = conditional_distance(lp, lq, kind="hellinger", x_uniform=(0, 1), y_support=sup)
    h_exact = integrate.quad(h_x, 0, 1, epsabs=1e-12, limit=400)[0]
    assert abs(h.value - h_exact) <= max(h.error, 1e-9) and h.error < 1e-3


def test_a_support_that_cuts_mass_reports_it_in_the_error():
    lp = lambda X, y: np.broadcast_to(poisson.logpmf(y, 6.0), (len(X), len(y)))   # noqa: E731
    lq = lambda X, y: np.broadcast_to(poisson.logpmf(y, 5.0), (len(X), len(y)))   # noqa: E731
    short = conditional_distance(lp, lq, kind="tv", x_uniform=(0, 1), y_support=np.arange(8))
    tail = poisson.sf(7, 6.0) + poisson.sf(7, 5.0)
    assert short.error == pytest.approx(0.5 * tail, rel=1e-9)
    full = conditional_distance(lp, lq, kind="tv", x_uniform=(0, 1), y_support=np.arange(60))
    assert abs(short.value - full.value) <= short.error


def test_mass_above_the_support_enters_the_value_of_tv_hellinger_and_kl():
    # q = half the truth p = Poisson(3), half a wild expert Poisson(1e6) that has no mass on 0..59
    lp = lambda X, y: np.broadcast_to(poisson.logpmf(y, 3.0), (len(X), len(y)))                 # noqa: E731
    lq = lambda X, y: np.broadcast_to(np.log(0.5) + poisson.logpmf(y, 3.0), (len(X), len(y)))   # noqa: E731
    sup = np.arange(60)
    tv = conditional_distance(lp, lq, kind="tv", x_uniform=(0, 1), y_support=sup)
    assert tv.value == pytest.approx(0.5, abs=1e-12)                    # = 1 - sum_y min(p, q), written by hand
    h = conditional_distance(lp, lq, kind="hellinger", x_uniform=(0, 1), y_support=sup)
    assert h.value ** 2 == pytest.approx(1 - math.sqrt(0.5), abs=1e-12)   # H^2 = 1 - sum_y sqrt(p q)
    kl = conditional_distance(lp, lq, kind="kl", x_uniform=(0, 1), y_support=sup)
    assert kl.value == pytest.approx(math.log(2.0), abs=1e-12)          # sum_y p log(p / q)


def test_a_wild_fitted_count_expert_does_not_blow_up_the_support():
    import jax

    from moestat.montecarlo import load_spec, worker
    spec = load_spec("mendes-jiang-parametric")
    exp = worker.experiment_for(spec.raw, n=300)
    tp = exp.true_params
    coef = np.array(tp.expert.coef, dtype=np.float64)
    coef[1, 0] += 25.0                                  # expert 1's mean times e^25 ~ 7e10 at every x
    wild = tp._replace(expert=tp.expert._replace(coef=coef))
    _, nodes = worker._x_average(exp)
    sup = worker._count_support(exp, wild, nodes)
    bound = len(worker._count_support(exp, tp, nodes))
    assert len(sup) <= worker.COUNT_SUPPORT_SLACK * bound + 1
    tv = worker.density_loss(exp, jax.tree_util.tree_map(np.asarray, wild), "tv")
    # the wild expert's gate weight is mass that q puts far above the support: TV counts it
    lw = np.exp(np.asarray(exp.fit.gate.log_weights(tp.gate, exp.fit.designs(nodes)[1].T)))    # (k, nodes)
    assert np.isfinite(tv.value) and tv.value >= 0.9 * float(np.min(lw[1])) - tv.error


def test_kl_of_class_probabilities_and_monte_carlo_x():
    p, q = np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])
    f = lambda P: (lambda X, y: np.log(np.broadcast_to(P, (X.shape[0], 3))))  # noqa: E731
    d = conditional_distance(f(p), f(q), kind="kl", x_uniform=(0, 1), categorical=True)
    assert d.value == pytest.approx(float(np.sum(p * np.log(p / q))), abs=1e-14)
    # KL over a Monte Carlo sample of X: the 2-SE error bar covers the exact average
    xs = np.random.default_rng(1).uniform(0, 1, 300)[:, None]
    mc = conditional_distance(_gauss(lambda x: 0 * x, 1.0), _gauss(lambda x: x, 1.0), kind="kl", x_sample=xs,
                              y_range=(-9, 10))
    assert mc.method == "monte-carlo" and abs(mc.value - 1 / 6) < mc.error      # E[X^2] / 2 = 1/6


def test_regression_distance_matches_quad():
    mp = lambda X: np.exp(X[:, 0]) * np.cos(4 * X[:, 0])   # noqa: E731
    mq = lambda X: 1.0 - X[:, 0] ** 3                      # noqa: E731
    d = regression_distance(mp, mq, x_uniform=(-0.5, 1.5))
    exact = math.sqrt(integrate.quad(lambda x: (math.exp(x) * math.cos(4 * x) - 1 + x ** 3) ** 2, -0.5, 1.5,
                                     epsabs=1e-14)[0] / 2)
    assert d.value == pytest.approx(exact, abs=1e-10) and d.error < 1e-8
    xs = np.random.default_rng(2).uniform(-0.5, 1.5, 2000)[:, None]
    mc = regression_distance(mp, mq, x_sample=xs)
    assert mc.method == "monte-carlo" and abs(mc.value - exact) < 1.5 * mc.error


def test_bad_arguments_are_named():
    lp = lambda X, y: np.zeros((len(X), 3))   # noqa: E731
    with pytest.raises(ValueError, match="kind must be one of"):
        conditional_distance(lp, lp, kind="chi2", x_uniform=(0, 1), categorical=True)
    with pytest.raises(ValueError, match="y_support must be"):
        conditional_distance(lp, lp, kind="kl", x_uniform=(0, 1), y_support=[0.5, 1.0])
    with pytest.raises(ValueError, match="not both"):
        conditional_distance(lp, lp, kind="kl", x_uniform=(0, 1), y_support=[0, 1], categorical=True)
    with pytest.raises(ValueError, match="exactly one of"):
        regression_distance(lambda X: X[:, 0], lambda X: X[:, 0])
    with pytest.raises(ValueError, match="one value per row"):
        regression_distance(lambda X: X, lambda X: X[:, 0], x_uniform=(0, 1))
