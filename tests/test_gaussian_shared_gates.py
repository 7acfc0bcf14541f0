"""The Gaussian (GLLiM) gate and the shared + routed (DeepSeekMoE) gate."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so
from scipy.stats import multivariate_normal, norm

import moestat as ms
from moestat.fitting import em
from moestat.gating import GaussianGate, GaussianGateParams, SharedRouted, SharedRoutedParams, SoftmaxParams
from moestat.gating.gaussian import floor_cov

from _truths import monotone, scipy_gain

CTL = em.make_control()


@partial(jax.jit, static_argnums=(0, 6))
def _gate_m_step(gate, params, tau, Xg, w, ctl, max_halvings, fixed):
    return gate.m_step(params, tau, Xg, w, ctl, max_halvings, fixed)


def _gate_q(gate, params, tau, Xg, w):
    return float(jnp.sum(tau * gate.log_weights(params, Xg) * w[None]))


def _gllim_data(n, d, seed):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.4
    c = np.where(z[:, None], -1.0, 1.0) * np.ones(d)
    x = c + np.where(z[:, None], 0.5, 0.7) * rng.standard_normal((n, d))
    y = np.where(z, 1 + x.sum(1), 2 - 0.5 * x[:, 0]) + np.where(z, 0.3, 0.5) * rng.standard_normal(n)
    return x, y


# ------------------------------------------------------------------ Gaussian gate

@pytest.mark.slow
def test_gaussian_gate_joint_likelihood_full_and_diagonal():
    x, y = _gllim_data(300, 2, 1)
    full = ms.GaussianMoE(2, gating=GaussianGate(covariance="full")).fit(x, y, n_init=3, polish=False, tol=1e-12)
    # the gate takes the raw covariates (no intercept) and the log-likelihood is the joint one of (x, y)
    assert full.design.gate_block.names == ["x1", "x2"] and full.design.Xg.shape == (300, 2)
    g, e = full.params_tree.gate, full.params_tree.expert
    X1 = np.column_stack([np.ones(len(y)), x])
    dens = sum(g.weight[i] * multivariate_normal(g.mean[i], g.cov[i]).pdf(x)
               * norm.pdf(y, X1 @ e.coef[i], np.sqrt(e.sigma2[i])) for i in range(2))
    np.testing.assert_allclose(full.loglik, np.log(dens).sum(), rtol=1e-10)
    assert "joint of (x, y)" in str(full.summary())
    assert monotone(full) >= -1e-12
    assert scipy_gain(full) <= 1e-8 * abs(full.loglik)
    # gate probabilities are the posterior of the x-mixture
    x0 = np.array([[0.3, -0.2]])
    num = np.array([g.weight[i] * multivariate_normal(g.mean[i], g.cov[i]).pdf(x0[0]) for i in range(2)])
    np.testing.assert_allclose(full.predict(x0, kind="gate")[0], num / num.sum(), rtol=1e-10)
    # diagonal covariances: the M-step keeps the variances of the full one and zero covariances
    dg = GaussianGate(covariance="diagonal")
    tau = jnp.asarray(full.responsibilities.T)
    pf = jax.tree_util.tree_map(jnp.asarray, g)
    none = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, bool), pf)
    Xg, w = jnp.asarray(x.T), jnp.ones(len(y))
    cd = np.asarray(_gate_m_step(dg, pf, tau, Xg, w, CTL, 8, none).cov)
    cf = np.asarray(_gate_m_step(full.model.gate, pf, tau, Xg, w, CTL, 8, none).cov)
    assert np.all(cd[:, 0, 1] == 0.0) and np.allclose(cd[:, [0, 1], [0, 1]], cf[:, [0, 1], [0, 1]], rtol=1e-12)
    np.testing.assert_allclose(cf, g.cov, rtol=1e-6)   # at the fixed point the full M-step returns the estimate
    assert GaussianGate().n_free_params(3, 2) == 2 + 6 + 9 and dg.n_free_params(3, 2) == 2 + 6 + 6
    terms = list(full.params_frame().query("block == 'gate' and expert == 1")["term"])
    assert terms == ["weight", "mean[x1]", "mean[x2]", "var[x1]", "var[x2]", "cov[x2,x1]"]
    rows = full.model.gate.describe(g, ["x1", "x2"])
    np.testing.assert_allclose(np.asarray(full.model.gate.report(jax.tree_util.tree_map(jnp.asarray, g))),
                               [v for _, _, v in rows])


def test_covariance_floor_is_the_constrained_maximiser():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((3, 3))
    S = A @ A.T + 1e-6 * np.eye(3)
    D = np.array([1.0, 2.0, 0.5])
    r = 1 / np.sqrt(D)
    floor = float(np.linalg.eigvalsh(r[:, None] * S * r[None])[1])   # binds in two directions
    G = np.asarray(floor_cov(jnp.asarray(S[None]), jnp.asarray(D), floor, False))[0]

    def feasible(M):
        return np.linalg.eigvalsh(r[:, None] * M * r[None]).min() >= floor * (1 - 1e-12)

    def obj(M):
        return -np.linalg.slogdet(M)[1] - np.trace(np.linalg.solve(M, S))
    assert feasible(G)
    best, tried = obj(G), 0
    for _ in range(400):   # no feasible symmetric perturbation does better
        E = rng.standard_normal((3, 3)) * 0.05
        M = G + (E + E.T) / 2
        if feasible(M):
            tried += 1
            assert obj(M) <= best + 1e-12
    assert tried > 20
    diag = np.asarray(floor_cov(jnp.asarray(S[None]), jnp.asarray(D), floor, True))[0]
    np.testing.assert_allclose(np.diag(diag), np.maximum(np.diag(S), floor * D))


def test_gaussian_gate_errors_and_sampling():
    with pytest.raises(ValueError, match="covariance must be one of 'full', 'diagonal'"):
        GaussianGate(covariance="spherical")
    with pytest.raises(ValueError, match="cov_floor must be a finite number > 0"):
        GaussianGate(cov_floor=0.0)
    df = pd.DataFrame({"y": np.sin(np.arange(60.0))})
    with pytest.raises(ValueError, match="needs at least one gate covariate"):
        ms.GaussianMoE(2, gating="gaussian").fit("y ~ 1", data=df)
    p = GaussianGateParams(weight=np.array([0.3, 0.7]), mean=np.array([[0.0, 1.0], [2.0, -1.0]]),
                           cov=np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.2, 0.0], [0.0, 0.1]]]))
    x, z = GaussianGate().sample_x(p, 40000, np.random.default_rng(0))
    assert abs(np.mean(z == 1) - 0.7) < 0.01
    np.testing.assert_allclose(np.cov(x[z == 0].T), p.cov[0], atol=0.04)
    np.testing.assert_allclose(x[z == 1].mean(0), p.mean[1], atol=0.01)


def test_gaussian_gate_m_step_honours_fixed_means_and_improves_q():
    gate = GaussianGate()
    rng = np.random.default_rng(3)
    Xg = jnp.asarray(rng.standard_normal((2, 300)))
    tau = jnp.asarray(rng.dirichlet([1, 1, 1], 300).T)
    w = jnp.ones(300)
    p = GaussianGateParams(weight=jnp.array([0.2, 0.3, 0.5]), mean=jnp.asarray(rng.standard_normal((3, 2))),
                           cov=jnp.asarray(np.stack([np.eye(2) * s for s in (0.5, 1.0, 2.0)])))
    fixed = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, bool), p)
    fixed = fixed._replace(mean=fixed.mean.at[1, 0].set(True), weight=fixed.weight.at[2].set(True))
    new = _gate_m_step(gate, p, tau, Xg, w, CTL, 8, fixed)
    assert float(new.mean[1, 0]) == float(p.mean[1, 0]) and float(new.weight[2]) == 0.5
    np.testing.assert_allclose(float(jnp.sum(new.weight)), 1.0, rtol=1e-14)
    q = lambda P: float(jnp.sum(tau * gate.e_step_terms(P, Xg)))  # noqa: E731  (joint gate objective)
    assert q(new) >= q(p)


# ------------------------------------------------------------------ shared + routed gate

def test_shared_routed_weights_are_half_omega_and_half_routed():
    gate = SharedRouted(n_shared=2, routed="softmax")
    Xg = jnp.asarray(np.vstack([np.ones(5), np.linspace(-2, 2, 5)]))
    p = SharedRoutedParams(shared=jnp.array([0.25, 0.75]), routed=SoftmaxParams(coef=jnp.array([[0, 0], [1.0, 2.0]])))
    W = np.exp(np.asarray(gate.log_weights(p, Xg)))
    np.testing.assert_allclose(W.sum(0), 1.0, rtol=1e-14)
    np.testing.assert_allclose(W[:2], 0.5 * np.array([[0.25], [0.75]]) * np.ones((1, 5)), rtol=1e-14)
    eta = np.array([0 * Xg[0], 1.0 + 2.0 * Xg[1]])
    np.testing.assert_allclose(W[2:], 0.5 * np.exp(eta) / np.exp(eta).sum(0), rtol=1e-13)
    assert gate.n_free_params(5, 2) == 1 + 2 * 2
    assert gate.translation_invariant and gate.uses_intercept and not gate.joint


def test_shared_routed_m_step_is_the_exact_m_step_of_the_half_half_model():
    """Iterating the gate's M-step on fixed responsibilities reaches the maximiser of the gate objective."""
    gate = SharedRouted(n_shared=1, routed=ms.gating.Softmax(newton_steps=40))
    rng = np.random.default_rng(4)
    n = 400
    Xg = jnp.asarray(np.vstack([np.ones(n), rng.uniform(-2, 2, n)]))
    tau = jnp.asarray(rng.dirichlet([2, 1, 1], n).T)
    w = jnp.asarray(rng.uniform(0.5, 1.5, n))
    p0 = gate.init_params(3, 2)
    fixed = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, bool), p0)
    p1 = _gate_m_step(gate, p0, tau, Xg, w, CTL, 8, fixed)
    assert _gate_q(gate, p1, tau, Xg, w) >= _gate_q(gate, p0, tau, Xg, w)

    def negq(theta):  # the full 1/2-1/2 gate objective over the free routed coefficients
        p = p0._replace(routed=SoftmaxParams(coef=jnp.concatenate([jnp.zeros((1, 2)), theta.reshape(1, 2)])))
        return -_gate_q(gate, p, tau, Xg, w)
    r = so.minimize(negq, np.zeros(2), method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-12, maxiter=4000))
    np.testing.assert_allclose(-r.fun, _gate_q(gate, p1, tau, Xg, w), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(p1.routed.coef[1]), r.x, atol=1e-5)


def test_shared_routed_validation_and_starts():
    with pytest.raises(ValueError, match="n_shared must be an integer >= 1"):
        SharedRouted(n_shared=0)
    with pytest.raises(ValueError, match="routed block needs a conditional gate"):
        SharedRouted(n_shared=1, routed="gaussian")
    with pytest.raises(TypeError, match="cannot itself be a SharedRouted"):
        SharedRouted(n_shared=1, routed=SharedRouted())
    with pytest.raises(ValueError, match=r"needs at least one routed expert, but the model has n_experts=2"):
        ms.GaussianMoE(2, gating=SharedRouted(n_shared=2)).fit(np.arange(40.0), np.cos(np.arange(40.0)))
    with pytest.raises(ValueError, match="n_routed must be an integer >= 1"):
        ms.DeepSeekMoE(n_shared=1, n_routed=0)
    R = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    R = np.concatenate([R, R + 100, R + 200, R + 300])[:4]  # 4 starts, k = 3
    A = SharedRouted(n_shared=1).arrange_starts(R)
    np.testing.assert_array_equal(A[1], np.roll(R[0], 1, axis=0))
    np.testing.assert_array_equal(A[2], np.roll(R[0], 2, axis=0))
    np.testing.assert_array_equal(A[3], R[3])
    m = ms.DeepSeekMoE(n_shared=2, n_routed=3, shared_expert="relu", routed_expert="linear")
    assert repr(m) == ("DeepSeekMoE(n_shared=2, n_routed=3, shared_expert='relu', routed_expert='linear', "
                       "routed_gating='softmax')")
