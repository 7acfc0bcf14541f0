"""A plain NumPy implementation of one EM iteration of the softmax-gated Gaussian MoE.

Independent of the JAX kernels (no shared code), it serves two purposes: the
speed baseline in ``benchmarks/`` (``engineering.md`` §3, implementation (a))
and a cross-check in the tests that the JAX EM computes the same iterates.
Row-major (n, p) layout; the same algorithm as :mod:`moestat.fitting.em`: E-step with
a max-shifted log-sum-exp, weighted least squares and ML variances per
expert, one guarded Newton step for the softmax gate (reference row 0).
"""
from __future__ import annotations

import numpy as np

LOG2PI = np.log(2.0 * np.pi)


def _log_softmax_rows(eta):
    m = eta.max(1, keepdims=True)
    return eta - m - np.log(np.exp(eta - m).sum(1, keepdims=True))


def loglik_and_resp(gate, coef, sigma2, X, Xg, y, w):
    """Weighted log-likelihood and responsibilities (n, k)."""
    lg = _log_softmax_rows(Xg @ gate.T)
    mu = X @ coef.T
    lf = -0.5 * (LOG2PI + np.log(sigma2)) - 0.5 * (y[:, None] - mu) ** 2 / sigma2
    lj = lg + lf
    m = lj.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(lj - m).sum(1))
    return float(w @ lse), np.exp(lj - lse[:, None])


def gate_objective(gate, tau, Xg, w):
    return float(w @ (tau * _log_softmax_rows(Xg @ gate.T)).sum(1))


def em_iteration(gate, coef, sigma2, X, Xg, y, w, var_floor=1e-12, max_halvings=8, ls_eps=1e-13):
    """One EM iteration; returns (gate, coef, sigma2, loglik at the input parameters)."""
    k, p = coef.shape
    ll, tau = loglik_and_resp(gate, coef, sigma2, X, Xg, y, w)
    r = tau * w[:, None]
    new_coef = np.empty_like(coef)
    new_s2 = np.empty_like(sigma2)
    for i in range(k):
        A = X.T @ (r[:, i:i + 1] * X)
        b = X.T @ (r[:, i] * y)
        beta = np.linalg.solve(A, b)
        res = y - X @ beta
        new_coef[i] = beta
        new_s2[i] = max(float(r[:, i] @ res ** 2) / r[:, i].sum(), var_floor)
    # gate: one guarded Newton step on rows 1..k-1
    pg = Xg.shape[1]
    pi = np.exp(_log_softmax_rows(Xg @ gate.T))
    grad = ((tau[:, 1:] - pi[:, 1:]) * w[:, None]).T @ Xg
    H = np.zeros(((k - 1) * pg, (k - 1) * pg))
    for a in range(1, k):
        for b in range(1, k):
            c = w * pi[:, a] * ((a == b) - pi[:, b])
            H[(a - 1) * pg:a * pg, (b - 1) * pg:b * pg] = Xg.T @ (c[:, None] * Xg)
    scale = np.trace(H) / H.shape[0]
    d = np.linalg.solve(H + 1e-12 * scale * np.eye(H.shape[0]), grad.ravel()).reshape(k - 1, pg)
    q0 = gate_objective(gate, tau, Xg, w)
    new_gate = gate
    for j in range(max_halvings + 1):
        cand = gate.copy()
        cand[1:] = gate[1:] + 0.5 ** j * d
        qc = gate_objective(cand, tau, Xg, w)
        if np.isfinite(qc) and qc >= q0 - ls_eps * abs(q0):
            new_gate = cand
            break
    return new_gate, new_coef, new_s2, ll


def fit(gate, coef, sigma2, X, Xg, y, w, n_iter):
    """n_iter EM iterations; returns the parameters and the log-likelihood trace."""
    trace = []
    for _ in range(n_iter):
        gate, coef, sigma2, ll = em_iteration(gate, coef, sigma2, X, Xg, y, w)
        trace.append(ll)
    return gate, coef, sigma2, np.array(trace)
