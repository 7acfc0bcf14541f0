"""Newton statistics for linear-predictor objectives, and the guarded Newton step.

One routine serves the softmax gate and the multinomial-logistic experts
(``engineering.md`` §8): both maximise a weighted soft-label cross-entropy
``sum_n w_n sum_c t_cn log softmax_c(B x_n)`` over a coefficient matrix ``B``
whose reference row 0 is fixed at zero.  Gates whose per-point objective is not
a softmax (normalized sigmoid, temperature, top-K) pass their own per-point
gradient and curvature to :func:`linear_newton_stats`.

The guarded step (:func:`guarded_step`) makes every Newton M-step a GEM step:
the candidate is accepted only if the M-step objective does not decrease
(beyond ``ls_eps`` relative rounding), halving the step otherwise, and keeping
the current value when every halving fails.  That is what keeps EM monotone.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from . import moments
from .._math import klogsumexp, ksum


def linear_newton_stats(g_eta, C, X):
    """Gradient and negative Hessian of an objective sum_n f_n(B x_n) in B.

    g_eta : (m, N) per-point gradient of f_n with respect to the linear predictor
    C : (m, m, N) per-point *negative* curvature (weights already applied)
    X : (p, N) design (features-major)
    Returns grad (m, p) and negH (m*p, m*p), blocks ordered as ``B.ravel()``.
    """
    m, N = g_eta.shape
    p = X.shape[0]
    grad = g_eta @ X.T
    CX = (C.reshape(m * m, 1, N) * X[None]).reshape(m * m * p, N) @ X.T
    negH = CX.reshape(m, m, p, p).transpose(0, 2, 1, 3).reshape(m * p, m * p)
    return grad, negH


def softmax_newton_stats(pi, target, w, X):
    """Gradient and negative Hessian of sum_n w_n sum_c t_cn log pi_cn in the free rows 1..C-1.

    pi : (C, N) softmax probabilities at the current coefficients
    target : (C, N) soft labels summing to one per point (one-hot for class labels)
    w : (N,) weights (0 = padding)
    X : (p, N)
    Closed form: the (i, j) block of -H is X diag(w pi_i (delta_ij - pi_j)) X'.  Only the
    m(m+1)/2 distinct blocks are formed, and they and the gradient come out of ONE
    contraction over the data (measured 1.4x faster than blockdiag - V V' at k = 3).
    """
    Cn, N = pi.shape
    p = X.shape[0]
    m = Cn - 1
    if m == 0:  # one category (a one-expert gate): nothing is free
        return jnp.zeros((0, p), pi.dtype), jnp.zeros((0, 0), pi.dtype)
    rows = softmax_moment_rows(pi, target, w)
    P = rows.shape[0] - m
    rows = jnp.concatenate([rows[:m], (rows[m:, None, :] * X[None]).reshape(P * p, N)])
    M = moments.contract(rows, X)                                                         # (m + P p, p)
    return M[:m], _assemble_blocks(M[m:].reshape(P, p, p), m)


def softmax_moment_rows(pi, target, w):
    """(m + P, N) per-point weight rows of the softmax Newton statistics, m = C - 1, P = m(m+1)/2.

    Rows 0..m-1: w (t_c - pi_c), whose products with x give the gradient;
    then for each pair i <= j of free categories w pi_i (delta_ij - pi_j), whose
    products with x x' give the (i, j) block of the negative Hessian.
    """
    m = pi.shape[0] - 1
    pf = pi[1:]
    wp = pf * w
    curv = [wp[i] * ((1.0 if i == j else 0.0) - pf[j]) for i, j in moments.pairs(m)]
    return jnp.concatenate([w * (target[1:] - pf), jnp.stack(curv)]) if m else jnp.zeros((0,) + w.shape, w.dtype)


def softmax_stats_from_moments(linear, gram, m: int):
    """Gradient (m, p) and negative Hessian from the moments of :func:`softmax_moment_rows`.

    linear (m + P, p): rows' sums against x; gram (m + P, p, p): against x x'
    (:func:`moestat.fitting.moments.split` of the rows contracted with the design's features).
    """
    return linear[:m], _assemble_blocks(gram[m:], m)


def _assemble_blocks(blocks, m: int):
    """(P, p, p) upper-triangle blocks (i <= j) -> the symmetric (m p, m p) matrix."""
    if m == 0:
        return jnp.zeros((0, 0), blocks.dtype)
    grid = [[None] * m for _ in range(m)]
    for b, (i, j) in enumerate(moments.pairs(m)):
        grid[i][j] = blocks[b]
        grid[j][i] = blocks[b].T
    return jnp.block(grid)


def softmax_objective(B, target, w, X):
    """sum_n w_n sum_c t_cn log softmax_c(B x_n), B (C, p); targets sum to one per point."""
    eta = B @ X
    return jnp.dot(ksum(target * eta) - klogsumexp(eta), w)


def newton_direction(grad, negH, ridge):
    """Solve (negH + lambda I) d = grad with a Levenberg ridge scaled to negH's diagonal.

    A ridge keeps the step finite under separation or collinear covariates; a
    non-finite direction (singular system) becomes 0, i.e. no move.
    """
    dim = grad.size
    scale = jnp.maximum(jnp.trace(negH) / dim, 1e-300)
    lam = ridge * scale + 1e-12 * scale
    A = negH + lam * jnp.eye(dim, dtype=negH.dtype)
    d = jnp.linalg.solve(A, grad.ravel())
    d = jnp.where(jnp.all(jnp.isfinite(d)), d, 0.0)
    return d.reshape(grad.shape)


def no_decrease(q_new, q0, ls_eps):
    """The guard's acceptance test: q_new finite and not below q0 beyond ``ls_eps * |q0|`` (rounding)."""
    return jnp.logical_and(jnp.isfinite(q_new), q_new >= q0 - ls_eps * jnp.abs(q0))


def guarded_step(theta, direction, objective: Callable, q0, ls_eps, max_halvings: int):
    """Line search on theta + 2^-j direction, j = 0..max_halvings, accepting no decrease.

    Returns (theta_new, q_new, accepted).  When no trial is accepted the current
    theta is kept, so the objective never decreases beyond ``ls_eps * |q0|``.
    """
    def cond(state):
        j, accepted, _, _ = state
        return jnp.logical_and(jnp.logical_not(accepted), j <= max_halvings)

    def body(state):
        j, _, _, _ = state
        cand = theta + (0.5 ** j) * direction
        qc = objective(cand)
        return j + 1, no_decrease(qc, q0, ls_eps), cand, qc

    init = (jnp.asarray(0), jnp.asarray(False), theta, q0)
    _, accepted, cand, qc = lax.while_loop(cond, body, init)
    theta_new = jax.tree_util.tree_map(lambda c, t: jnp.where(accepted, c, t), cand, theta)
    return theta_new, jnp.where(accepted, qc, q0), accepted


def newton_ascent(theta, objective: Callable, stats: Callable, ctl, max_halvings: int, n_steps: int = 1,
                  stats0=None):
    """``n_steps`` guarded Newton steps maximising ``objective`` from ``theta``.

    stats(theta) -> (grad, negH, q) at theta, grad shaped like theta.
    stats0 : optional (grad, negH, q) already known at ``theta`` (e.g. from the
        E-step's gate probabilities), which saves a pass over the data.
    """
    def step(th, st):
        grad, negH, q = st
        d = newton_direction(grad, negH, ctl.ridge)
        th_new, _, acc = guarded_step(th, d, objective, q, ctl.ls_eps, max_halvings)
        return th_new, acc

    def one(_, carry):
        th, _ = carry
        return step(th, stats(th))

    acc = jnp.asarray(True)
    if stats0 is not None and n_steps > 0:
        theta, acc = step(theta, stats0)
        n_steps -= 1
    if n_steps > 0:
        theta, acc = lax.fori_loop(0, n_steps, one, (theta, acc))
    return theta, acc
