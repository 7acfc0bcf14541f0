"""The log-likelihood a fit reports is the one at its parameters, whether EM converged or hit max_iter."""
import jax
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

import moestat as ms
from moestat.data.design import make_data
from moestat.fitting import em

from conftest import simulate_softmax_gaussian


def _scipy_loglik(params, x, y):
    """sum_n log sum_i softmax(G beta)_i N(y_n; X coef_i, sigma2_i), transcribed with SciPy."""
    X = np.column_stack([np.ones(len(y)), x])
    eta = X @ np.asarray(params.gate.coef).T                                      # (n, k)
    lw = eta - logsumexp(eta, axis=1, keepdims=True)
    mu = X @ np.asarray(params.expert.coef).T
    ld = norm.logpdf(y[:, None], mu, np.sqrt(np.asarray(params.expert.sigma2))[None])
    return float(logsumexp(lw + ld, axis=1).sum())


@pytest.mark.parametrize("max_iter,tol,converged", [(500, 1e-10, True), (3, 1e-10, False)])
def test_reported_loglik_equals_the_scipy_loglik_at_the_returned_parameters(max_iter, tol, converged):
    gate, coef = [[0, 0], [0.5, 2.0]], [[1.0, 2.0], [-1.0, -2.0]]
    x, y, _ = simulate_softmax_gaussian(700, gate, coef, [0.4, 0.6], 7)
    model = ms.GaussianMoE(2)
    design = model.design(x, y)
    dat = make_data(design.X, design.Xg, design.y, design.w, N=1024)          # padded rows: weight 0
    info = model.expert.prepare(design.y, design.w)
    cfg, ctl = model.config(max_iter=max_iter), model.control(info, tol=tol)
    p0 = em.MoEParams(ms.gating.SoftmaxParams(np.array([[0.0, 0.0], [0.2, 1.0]])),
                      ms.experts.GaussianParams(np.array([[0.5, 1.0], [-0.5, -1.0]]), np.array([1.0, 1.0])))
    fixed = em.no_fixed(p0)
    out = jax.device_get(jax.jit(lambda p: em.fit_one(p, dat, ctl, fixed, jax.random.PRNGKey(0), cfg))(p0))
    assert bool(out.converged) is converged
    want = _scipy_loglik(out.params, np.asarray(x).reshape(len(y), -1), np.asarray(y))
    assert float(out.loglik) == pytest.approx(want, rel=1e-12)
