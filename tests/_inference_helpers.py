"""Shared helpers of the inference tests: NumPy log-likelihoods, the sim_moe2 reference MLE and fit."""
from __future__ import annotations

import functools
import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp
from scipy.stats import chi2, norm

import moestat as ms

#: The sim_moe2 two-expert MLE log-likelihood computed outside moestat (R optim; datasets/sim_moe2_reference.json)
REFERENCE_LOGLIK = ms.datasets.sim_moe2_reference()["mle"]["loglik"]


def np_loglik(X, Xg, y, gate_coef, coef, sigma, w=None):
    """Softmax-gated Gaussian-linear MoE log-likelihood in plain NumPy (row-major X (n, p), Xg (n, pg))."""
    eta = Xg @ np.asarray(gate_coef).T
    lg = eta - logsumexp(eta, axis=1, keepdims=True)
    lf = norm.logpdf(y[:, None], X @ np.asarray(coef).T, np.asarray(sigma)[None])
    ll = logsumexp(lg + lf, axis=1)
    return float(ll.sum() if w is None else (w * ll).sum())


def ols_loglik(X, y):
    """Maximised log-likelihood of a Gaussian linear regression, -n/2 (log(2 pi RSS/n) + 1).

    A one-expert Gaussian MoE is this regression: its MLE is OLS with the ML variance RSS/n.
    """
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    n = y.size
    s2 = np.sum((y - X @ beta) ** 2) / n
    return float(-0.5 * n * (np.log(2 * np.pi * s2) + 1.0))


def np_ascent(loglik, gate_coef, coef, sigma):
    """Gain in ``loglik(gate_coef, coef, sigma)`` that BFGS finds from the given softmax-Gaussian parameters.

    ``loglik`` is a NumPy log-likelihood (e.g. :func:`np_loglik` on fixed data) that shares no code with moestat;
    the gate's row 0 is held at zero and sigma is optimised on the log scale.  About 0 when the parameters are a
    local maximum of that likelihood.
    """
    gate_coef, coef, sigma = (np.asarray(a, dtype=float) for a in (gate_coef, coef, sigma))
    k, pg = gate_coef.shape
    p = coef.shape[1]
    sizes = np.cumsum([(k - 1) * pg, k * p])

    def negll(v):
        g, c, ls = np.split(v, sizes)
        return -loglik(np.vstack([np.zeros(pg), g.reshape(k - 1, pg)]), c.reshape(k, p), np.exp(ls))

    v0 = np.concatenate([(gate_coef[1:] - gate_coef[:1]).ravel(), coef.ravel(), np.log(sigma)])
    r = minimize(negll, v0, method="BFGS", options={"gtol": 1e-7})
    return float(negll(v0) - r.fun)


def bootstrap_variance_ratio(boot, res, block=None, alpha=1e-4):
    """S = tr(V^-1 C) / m of a block of m parameters, and the band S falls in with probability 1 - alpha.

    C is the bootstrap covariance of the B valid replicate estimates, V the observed-information covariance.
    When the replicates are normal with covariance V, (B - 1) m S is chi-square with (B - 1) m degrees of
    freedom, which gives the band; its Monte Carlo sd is sqrt(2 / ((B - 1) m)).  An error by a factor c in all
    the block's standard errors multiplies S by c^2 (a sqrt(2) error: S = 2 or 1/2).
    """
    V, C = res.cov_params(), boot.cov_params()
    assert list(C.index) == list(V.index)
    keep = [i for i, name in enumerate(V.index) if block is None or name[0] == block]
    V, C = V.to_numpy()[np.ix_(keep, keep)], C.to_numpy()[np.ix_(keep, keep)]
    dof = (int(boot.valid.sum()) - 1) * len(keep)
    S = float(np.trace(np.linalg.solve(V, C))) / len(keep)
    return S, chi2.ppf(alpha / 2, dof) / dof, chi2.ppf(1 - alpha / 2, dof) / dof


def positive_slope_first(res):
    """Relabel a 2-expert sim_moe2 fit so that expert 1 has the positive slope (the reference's labelling)."""
    return res if res.params_tree.expert.coef[0, 1] > 0 else res.relabel([1, 0])


@functools.lru_cache(maxsize=None)
def sim_moe2_fit():
    df = ms.datasets.load_sim_moe2()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reference fit must be clean
        res = ms.GaussianMoE(2).fit("y ~ x", data=df)
    return df, positive_slope_first(res)
