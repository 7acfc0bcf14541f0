"""Shared helpers of the inference tests: a NumPy log-likelihood and the sim_moe2 fit, aligned to the reference."""
from __future__ import annotations

import functools
import warnings

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

import moestat as ms


def np_loglik(X, Xg, y, gate_coef, coef, sigma, w=None):
    """Softmax-gated Gaussian-linear MoE log-likelihood in plain NumPy (row-major X (n, p), Xg (n, pg))."""
    eta = Xg @ np.asarray(gate_coef).T
    lg = eta - logsumexp(eta, axis=1, keepdims=True)
    lf = norm.logpdf(y[:, None], X @ np.asarray(coef).T, np.asarray(sigma)[None])
    ll = logsumexp(lg + lf, axis=1)
    return float(ll.sum() if w is None else (w * ll).sum())


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
