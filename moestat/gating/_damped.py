"""Damped (Levenberg-Marquardt) guarded Newton ascent for gates with non-concave M-step objectives.

The softmax gate's soft-label cross-entropy is concave, so a plain Newton step
with step halving (:func:`moestat.fitting.newton.newton_ascent`) always finds an
improving move.  The normalized-sigmoid and activation gates have objectives
whose Hessian need not be negative definite: a Newton "step" can then point
downhill and no amount of halving rescues it.  Here the curvature matrix
``negH`` is shifted by ``lam I`` with ``lam`` large enough to make it positive
definite (Levenberg), and when a trial is rejected ``lam`` grows (Marquardt),
which turns the direction into an ever shorter gradient step -- so an improving
move is found whenever the gradient is not zero.  One eigendecomposition of the
small (P x P) system serves every trial.  As in :func:`moestat.fitting.newton.guarded_step`,
a candidate is accepted only if the objective does not decrease (beyond
``ls_eps`` relative rounding), and the current value is kept when every trial
fails: each M-step is a GEM step and EM stays monotone.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from ..fitting import newton


def _eig(negH):
    S = 0.5 * (negH + negH.T)
    e, V = jnp.linalg.eigh(S)
    scale = jnp.maximum(jnp.mean(jnp.abs(e)), 1e-300)
    return e, V, scale


def damped_step(theta, grad, negH, objective: Callable, q0, ctl, max_tries: int):
    """One Levenberg-Marquardt guarded step from ``theta`` (any shape; grad shaped like theta).

    Trial j uses (negH + lam_j I) d = grad with lam_0 = the smallest shift that
    makes the system positive definite (plus ``ctl.ridge`` times the curvature
    scale) and lam_j = lam_0 + scale * 10^(j-4) afterwards.  An indefinite
    system starts at trial 1: trial 0 would move along the most negative
    curvature by the gradient over the ~1e-10 scale left by the bare shift, a
    step almost never accepted (on the DeepSeekMoE Thm 4 model every M-step's
    trial 0 lowered the objective by ~1e11), so skipping it saves one pass over
    the data per M-step.  Returns (theta_new, q_new, accepted).
    """
    e, V, scale = _eig(negH)
    g = grad.ravel()
    gv = V.T @ g
    lam0 = jnp.maximum(0.0, -e[0]) + (ctl.ridge + 1e-10) * scale

    def direction(j):
        lam = lam0 + jnp.where(j > 0, scale * 10.0 ** (j - 4.0), 0.0)
        d = V @ (gv / jnp.maximum(e + lam, 1e-300))
        d = jnp.where(jnp.all(jnp.isfinite(d)), d, 0.0)
        return d.reshape(theta.shape)

    def cond(state):
        j, accepted, _, _ = state
        return jnp.logical_and(jnp.logical_not(accepted), j <= max_tries)

    def body(state):
        j, _, _, _ = state
        cand = theta + direction(j)
        qc = objective(cand)
        return j + 1, newton.no_decrease(qc, q0, ctl.ls_eps), cand, qc

    init = (jnp.where(e[0] < 0, 1, 0), jnp.asarray(False), theta, q0)
    _, accepted, cand, qc = lax.while_loop(cond, body, init)
    theta_new = jnp.where(accepted, cand, theta)
    return theta_new, jnp.where(accepted, qc, q0), accepted


def damped_ascent(theta, objective: Callable, stats: Callable, ctl, max_tries: int, n_steps: int = 1, q0=None):
    """``n_steps`` damped guarded Newton steps maximising ``objective``.

    stats(theta) -> (grad, negH, q): gradient shaped like theta, negative
    Hessian of the flattened theta, objective value.  ``q0``, when given, is
    the objective at ``theta`` (e.g. from the E-step's log weights): the first
    step uses it instead of ``stats``' value, which XLA then does not compute.
    """
    def step(th, q_known):
        grad, negH, q = stats(th)
        th_new, _, _ = damped_step(th, grad, negH, objective, q if q_known is None else q_known, ctl, max_tries)
        return th_new

    theta = step(theta, q0)
    return lax.fori_loop(1, n_steps, lambda _, th: step(th, None), theta)


def masked_autodiff_stats(objective: Callable, free):
    """stats(theta) for :func:`damped_ascent` by automatic differentiation, fixed entries frozen.

    ``free`` (bool, shaped like theta) marks the entries allowed to move: fixed
    ones get zero gradient and unit curvature (so the step leaves them alone).
    """
    f = free.ravel().astype(jnp.result_type(float))

    def stats(theta):
        flat = theta.ravel()
        fun = lambda v: objective(v.reshape(theta.shape))
        q, g = jax.value_and_grad(fun)(flat)
        H = jax.hessian(fun)(flat)
        g = g * f
        negH = -H * f[:, None] * f[None, :] + jnp.diag(1.0 - f)
        return g.reshape(theta.shape), negH, q

    return stats
