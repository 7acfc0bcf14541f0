"""Softmax (multinomial-logit) gating: g_i(x) = softmax_i(beta_i' x).

Identifiability: the gate is invariant to adding one vector to every row, so
expert 0 is the reference (its row is fixed at 0), as in statsmodels' MNLogit
and flexmix.  The M-step is a warm-started, guarded Newton step on the
soft-label cross-entropy (:mod:`moestat.fitting.newton`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ..fitting import newton
from .._math import klogsumexp, ksum, kshifted_exp, log_positive
from .base import Gate, mask_newton, register, softmax_log_weights


class SoftmaxParams(NamedTuple):
    coef: jnp.ndarray  # (k, pg); row 0 is the reference and stays 0


def _gate_stats(log_pi, tau, w, Xg, free):
    """Masked gradient, negative Hessian (rows 1..k-1) and objective of the soft-label cross-entropy."""
    grad, negH = newton.softmax_newton_stats(jnp.exp(log_pi), tau, w, Xg)
    grad, negH = mask_newton(grad, negH, free[1:])
    return grad, negH, jnp.dot(ksum(tau * log_pi), w)


def softmax_gate_step(coef, tau, Xg, w, ctl, max_halvings, free, n_steps, log_w=None):
    """Guarded Newton steps on the soft-label cross-entropy in rows 1..k-1 of ``coef``.

    ``free`` (k, pg) marks the coefficients allowed to move; row 0 is never free.
    ``log_w`` (k, N): the E-step's log gate probabilities at ``coef``, reused for
    the first step's statistics.  Shared by every gate that is a softmax of a
    linear predictor in some features.
    """
    head = coef[:1]

    def full(th):
        return jnp.concatenate([head, th], axis=0)

    def objective(th):
        return newton.softmax_objective(full(th), tau, w, Xg)

    def stats_from(log_pi):
        return _gate_stats(log_pi, tau, w, Xg, free)

    def stats(th):
        eta = full(th) @ Xg
        return stats_from(eta - klogsumexp(eta)[None])

    stats0 = None if log_w is None else stats_from(log_w)
    th, _ = newton.newton_ascent(coef[1:], objective, stats, ctl, max_halvings, n_steps, stats0=stats0)
    return full(th)


def softmax_gate_direction(coef, tau, Xg, w, ctl, free, log_w):
    """The unguarded Newton direction (k, pg; row 0 zero) and the objective at ``coef``.

    For the EM loop's speculative guard (:func:`moestat.fitting.em.fit_one`): the
    candidate ``coef + direction`` is checked in the next E-step's pass.
    """
    grad, negH, q = _gate_stats(log_w, tau, w, Xg, free)
    return _full_direction(coef, grad, negH, ctl), q


def _full_direction(coef, grad, negH, ctl):
    """The Newton direction of rows 1..k-1 (masked statistics), with the reference row 0 not moving."""
    d = newton.newton_direction(grad, negH, ctl.ridge)
    return jnp.concatenate([jnp.zeros_like(coef[:1]), d], axis=0)


class SoftmaxCoefficients:
    """Parameter handling shared by gates whose parameters are softmax coefficients with row 0 = 0."""

    def init_params(self, k, pg):
        return SoftmaxParams(coef=jnp.zeros((k, pg)))

    def n_free_params(self, k, pg):
        return (k - 1) * pg

    def canonical(self, params):
        return SoftmaxParams(coef=params.coef - params.coef[:1])

    def describe(self, params, names):
        c = np.asarray(params.coef)
        return [(i, names[j], float(c[i, j])) for i in range(1, c.shape[0]) for j in range(c.shape[1])]

    def free_mask(self, params):
        return SoftmaxParams(coef=jnp.ones(jnp.shape(params.coef), dtype=bool).at[0].set(False))

    def report(self, params):
        # log-odds of experts 2..k against expert 1, in describe() order
        return jnp.ravel(params.coef[1:] - params.coef[:1])


@register
@dataclass(frozen=True)
class Softmax(SoftmaxCoefficients, Gate):
    """Softmax gating on the gate covariates (with intercept).

    Parameters
    ----------
    newton_steps : int
        Guarded Newton steps per EM iteration (1 gives an ECM algorithm with
        the same fixed points as exact EM).
    """

    name = "softmax"
    translation_invariant = True
    summary_title = "Gate (log-odds against expert 1)"
    newton_steps: int = 1

    def log_weights(self, params, Xg):
        return softmax_log_weights(params.coef, Xg)

    @property
    def speculative(self) -> bool:
        """One Newton step per iteration: the EM loop may check it in the next E-step (em.fit_one).

        Only the plain softmax on the gate design (subclasses transform the
        covariates, so this direction would be wrong for them).
        """
        return self.newton_steps == 1 and type(self) is Softmax

    def direction(self, params, tau, Xg, w, ctl, fixed, log_w):
        """(direction, objective at params) of the unguarded Newton step, as SoftmaxParams and a scalar."""
        d, q = softmax_gate_direction(params.coef, tau, Xg, w, ctl, jnp.logical_not(fixed.coef), log_w)
        return SoftmaxParams(coef=d), q

    def log_weights_and_probs(self, params, Xg):
        """(log g, g), both (k, N), from one set of k exponentials (the E-step keeps g for the Newton rows)."""
        eta = params.coef @ Xg
        m, e, s = kshifted_exp(eta)
        return eta - (m + log_positive(s))[None], e / s[None]

    def moment_rows(self, probs, tau, w):
        """Per-point weight rows whose moments against the gate design give the Newton statistics."""
        return newton.softmax_moment_rows(probs, tau, w)

    def direction_from_moments(self, params, linear, gram, ctl, fixed):
        """:meth:`direction` (without the objective) from the moments of :meth:`moment_rows`.

        linear (r, pg), gram (r, pg, pg): the rows' sums against x and x x' (:func:`moestat.fitting.moments.split`).
        """
        m = params.coef.shape[0] - 1
        grad, negH = newton.softmax_stats_from_moments(linear, gram, m)
        grad, negH = mask_newton(grad, negH, jnp.logical_not(fixed.coef)[1:])
        return SoftmaxParams(coef=_full_direction(params.coef, grad, negH, ctl))

    def m_step(self, params, tau, Xg, w, ctl, max_halvings, fixed, log_w=None):
        free = jnp.logical_not(fixed.coef)
        coef = softmax_gate_step(params.coef, tau, Xg, w, ctl, max_halvings, free, self.newton_steps, log_w)
        return SoftmaxParams(coef=coef)

