"""The ICML'24 regime truths (moestat.truths.multinomial_regimes): gate matching and identifiability.

References are independent of moestat: the modified gate's log-odds are
recomputed at the corners of the covariate box, and the expected Fisher
information of the k = 2 model is a NumPy transcription of the
log-likelihood, differentiated by central differences and integrated by
tensor Gauss-Legendre quadrature.
"""
import itertools

import numpy as np
import pytest
from scipy.special import expit, logsumexp

from moestat.truths import multinomial_regimes as mr

M = {"sigmoid": expit, "tanh": np.tanh}


@pytest.mark.parametrize("design", mr.DESIGNS)
@pytest.mark.parametrize("transform", ["sigmoid", "tanh"])
def test_modified_gate_matches_softmax_log_odds_at_the_corners(design, transform):
    G, Gm = mr.gate_coefficients("softmax", design=design), mr.gate_coefficients("modified_softmax", transform,
                                                                                   design)
    law = mr.x_law(design)
    for corner in itertools.product((law["low"], law["high"]), repeat=law["d"]):
        c = np.array(corner)
        assert Gm[1, 0] + Gm[1, 1:] @ M[transform](c) == pytest.approx(G[1, 0] + G[1, 1:] @ c, abs=1e-12)
    assert np.all(Gm[0] == 0)                                   # expert 0 stays the gate reference
    # inside the box the two gates differ (M is not affine), by more than 0.1 in log-odds somewhere
    u = np.linspace(law["low"], law["high"], 41)
    pts = np.array(list(itertools.product(u, repeat=law["d"])))
    diff = Gm[1, 0] + M[transform](pts) @ Gm[1, 1:] - (G[1, 0] + pts @ G[1, 1:])
    assert np.abs(diff).max() > 0.1


def _expected_loglik(theta, theta0, nodes, weights, C):
    """E_X sum_c p_theta0(c | X) log p_theta(c | X) for a k = 2 softmax-gated multinomial MoE (NumPy)."""
    def logp(t):
        d = nodes.shape[1]
        g = t[:d + 1]
        A = np.concatenate([np.zeros((2, 1, d + 1)), t[d + 1:].reshape(2, C - 1, d + 1)], 1)
        D = np.column_stack([np.ones(len(nodes)), nodes])
        lg = np.stack([np.zeros(len(nodes)), D @ g])
        lg -= logsumexp(lg, axis=0)
        eta = np.einsum("kcp,np->kcn", A, D)
        le = eta - logsumexp(eta, axis=1, keepdims=True)
        return logsumexp(lg[:, None] + le, axis=0)                       # (C, N)
    return float(np.sum(weights * np.sum(np.exp(logp(theta0)) * logp(theta), 0)))


def _asymptotic_sd(design, regime, m=16, h=1e-4):
    """sqrt(diag(I^-1)) of the free parameters (gate row 1, expert rows of classes 1..C-1) at the truth."""
    G, A = mr.gate_coefficients(design=design), mr.expert_coefficients(regime, design)
    C, d = A.shape[1], A.shape[2] - 1
    lo, hi = mr.x_law(design)["low"], mr.x_law(design)["high"]
    z, w = np.polynomial.legendre.leggauss(m)
    z, w = lo + (hi - lo) * (z + 1) / 2, w / 2
    nodes = np.array(list(itertools.product(z, repeat=d)))
    weights = np.prod(np.array(list(itertools.product(w, repeat=d))), axis=1)
    theta0 = np.concatenate([G[1], A[:, 1:, :].ravel()])
    f = lambda t: _expected_loglik(t, theta0, nodes, weights, C)  # noqa: E731
    P = theta0.size
    H = np.empty((P, P))
    E = np.eye(P) * h
    for i in range(P):
        for j in range(i, P):
            H[i, j] = H[j, i] = (f(theta0 + E[i] + E[j]) - f(theta0 + E[i] - E[j]) - f(theta0 - E[i] + E[j])
                                 + f(theta0 - E[i] - E[j])) / (4 * h * h)
    return np.sqrt(np.diag(np.linalg.inv(-H)))


def test_separated_design_is_identified_at_the_grid_sizes():
    """The default design: every coefficient's asymptotic sd is below 20 in regime 1 and 40 in regime 2
    (so below 0.3 / 0.6 at n = 5000, the grids' smallest n); the d = 1 design it replaced has sds in the
    hundreds (about 2.5 at n = 20000)."""
    assert _asymptotic_sd("separated", 1).max() < 20
    assert _asymptotic_sd("separated", 2).max() < 40
    assert _asymptotic_sd("d1", 1, m=30).max() > 300
