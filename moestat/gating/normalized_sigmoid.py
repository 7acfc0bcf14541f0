"""Normalized sigmoid gating: g_i(x) = sigma(beta_i' x) / sum_j sigma(beta_j' x).

The DeepSeek-V3 router as a statistical gate (Nguyen, Doan, Pham, Bui, Ho &
Rinaldo, arXiv:2505.10860, eq. 8 -- [TXT], the ar5iv full text, ``theory.md``
§2.1): weights sigma(beta_1i' x + beta_0i) / sum_j sigma(beta_1j' x + beta_0j)
with sigma(z) = 1 / (1 + e^-z); the mixing measure puts mass sigma(beta_0i) on
atom i.  Unlike softmax there is no translation invariance, so all k rows are
free and the intercepts beta_0 are identified (``theory.md`` §2.1 [DER]):
``n_free_params = k * pg`` and :meth:`canonical` is the identity.

The family contains the softmax gate as a limit: when every score is very
negative, sigma(eta) ~ e^eta and the weights become softmax(eta).  When the
data favour that limit, the intercepts drift towards -inf together, the
likelihood is almost flat along that direction and their standard errors
blow up (e.g. tests' two-expert truth at n = 1000: fitted intercepts -7.8 and
-8.1 against true 1 and 0, observed-information SEs about 400, log-likelihood
above the truth's) -- a property of the model, not of the fit.

M-step.  The soft-label objective, per point (sum_i tau_i = 1),

    f(eta; tau) = sum_i tau_i log sigma(eta_i) - log sum_j sigma(eta_j),   eta = B x,

is not concave in eta, so its Hessian need not be definite.  Its gradient
and curvature are closed form (s_i = sigma(eta_i), g_i = s_i (1 - s_i), S = sum_j s_j):

    df/deta_i        = tau_i (1 - s_i) - g_i / S
    -d2f/deta_i eta_j = delta_ij [tau_i g_i + g_i (1 - 2 s_i) / S] - g_i g_j / S^2

and :func:`moestat.fitting.newton.linear_newton_stats` turns these per-point terms
into the gradient and negative Hessian in B.  The step is a Levenberg-damped
Newton step guarded on the exact objective (:mod:`moestat.gating._damped`), so
the M-step never lowers it and EM is monotone.  ``curvature="autodiff"`` gets
the same per-point terms from ``jax.vmap(jax.hessian(f))`` instead (kept for
checking and for ``benchmarks/bench_normalized_sigmoid.py``, which measures
both; the closed form is the default because it is faster).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..fitting import moments, newton
from .._math import klogsumexp, ksum, split_intercept
from ._damped import damped_ascent
from .base import Gate, register

CURVATURES = ("closed", "autodiff")


class NormalizedSigmoidParams(NamedTuple):
    coef: jnp.ndarray  # (k, pg); every row free


#: below this score log sigma(z) is z itself (the neglected log1p(e^z) is under 4.3e-18)
LOG_SIGMOID_LINEAR = -40.0


def log_sigmoid(z):
    """log sigma(z), accurate to rounding for every z: log(1 / (1 + e^-z)) above -40, z below.

    One exponential and one logarithm per entry (``-logaddexp(0, -z)`` costs
    1.5x that on XLA:CPU in float64, ``benchmarks/README.md``); for large z the
    logarithm of a number within rounding of 1 has absolute error below
    1.2e-16, the size of the value's own rounding, and so has its derivative 1 - sigma(z).
    """
    linear = z < LOG_SIGMOID_LINEAR
    return jnp.where(linear, z, jnp.log(jax.nn.sigmoid(jnp.where(linear, 0.0, z))))


def ns_log_weights(coef, Xg):
    """(k, N) log sigma(eta_i) - log sum_j sigma(eta_j), eta = coef @ Xg."""
    ls = log_sigmoid(coef @ Xg)
    return ls - klogsumexp(ls)[None]


def ns_objective(coef, tau, w, Xg):
    """sum_n w_n sum_i tau_in log g_i(x_n) for the normalized sigmoid gate."""
    return jnp.dot(ksum(tau * ns_log_weights(coef, Xg)), w)


def _ns_point_terms(eta, tau, w):
    """Per-point gradient (k, N), diagonal curvature terms (k, N) and g_i / S (k, N) (weights applied to the first two)."""
    s = jax.nn.sigmoid(eta)
    g = s * (1.0 - s)
    S = ksum(s)
    grad = w * (tau * (1.0 - s) - g / S)
    diag = w * (tau * g + g * (1.0 - 2.0 * s) / S)
    return grad, diag, g / S


def ns_point_stats(eta, tau, w):
    """Closed-form per-point gradient (k, N) and negative curvature (k, k, N), weights applied."""
    grad, diag, gS = _ns_point_terms(eta, tau, w)
    k = eta.shape[0]
    C = jnp.eye(k, dtype=eta.dtype)[:, :, None] * diag[None] - w * gS[:, None, :] * gS[None, :, :]
    return grad, C


def ns_pair_stats(eta, tau, w):
    """:func:`ns_point_stats` with the curvature as its pairs i <= j only ((k(k+1)/2, N), :func:`moestat.fitting.moments.pairs` order)."""
    grad, diag, gS = _ns_point_terms(eta, tau, w)
    wgS = w * gS
    pairs = [(diag[i] if i == j else 0.0) - wgS[i] * gS[j] for i, j in moments.pairs(eta.shape[0])]
    return grad, jnp.stack(pairs)


def _point_objective(eta, tau):
    ls = log_sigmoid(eta)
    return jnp.dot(tau, ls) - jax.nn.logsumexp(ls)


def ns_point_stats_autodiff(eta, tau, w):
    """Per-point gradient and negative curvature from ``jax.vmap(jax.hessian)`` (reference / benchmark)."""
    gr = jax.vmap(jax.grad(_point_objective), in_axes=(1, 1), out_axes=1)(eta, tau)
    H = jax.vmap(jax.hessian(_point_objective), in_axes=(1, 1), out_axes=2)(eta, tau)
    return w * gr, -w * H


def ns_newton_stats(coef, tau, w, Xg, curvature: str = "closed"):
    """Gradient (k, pg) and negative Hessian (k pg, k pg) of :func:`ns_objective` in coef.

    The closed form contracts only the k(k+1)/2 distinct curvature rows
    (:func:`moestat.fitting.newton.pair_newton_stats`); ``"autodiff"`` the full (k, k, N) curvature.
    """
    eta = coef @ Xg
    if curvature == "closed":
        return newton.pair_newton_stats(*ns_pair_stats(eta, tau, w), Xg, product_features=True)
    return newton.linear_newton_stats(*ns_point_stats_autodiff(eta, tau, w), Xg)


@register
@dataclass(frozen=True)
class NormalizedSigmoid(Gate):
    """Normalized sigmoid gating sigma(beta_i' x) / sum_j sigma(beta_j' x) (DeepSeek-V3 router).

    Parameters
    ----------
    newton_steps : int
        Damped guarded Newton steps per EM iteration.
    curvature : "closed" or "autodiff"
        How the per-point curvature is computed (identical results).

    Examples
    --------
    >>> import moestat as ms
    >>> ms.gating.get_gate("normalized_sigmoid").n_free_params(3, 2)
    6
    """

    name = "normalized_sigmoid"
    summary_title: ClassVar[str] = "Gate (normalized sigmoid: sigma(b_i'x) / sum_j sigma(b_j'x))"
    #: fitted to a (softened) hard start partition, the gate's intercepts run towards the
    #: softmax limit (-9 to -25 after the starts and one EM step, cross test normalized_sigmoid x ReLU, n = 3e4),
    #: where EM's steps vanish: every start stopped 84 below the true log-likelihood.  Kept at 0 (equal
    #: weights) while the experts are fitted to the partitions, all 16 starts of seeds 11-13 end above it.
    hold_in_starts: ClassVar[bool] = True
    newton_steps: int = 1
    curvature: str = "closed"

    def __post_init__(self):
        if self.curvature not in CURVATURES:
            raise ValueError("normalized_sigmoid: curvature must be one of %s, got %r"
                             % (", ".join(map(repr, CURVATURES)), self.curvature))
        if isinstance(self.newton_steps, bool) or not isinstance(self.newton_steps, (int, np.integer)) \
                or self.newton_steps < 1:
            raise ValueError("normalized_sigmoid: newton_steps must be a positive integer, got %r"
                             % (self.newton_steps,))

    def init_params(self, k, pg):
        return NormalizedSigmoidParams(coef=jnp.zeros((k, pg)))

    def n_free_params(self, k, pg):
        return k * pg

    def log_weights(self, params, Xg):
        return ns_log_weights(params.coef, Xg)

    def m_step(self, params, tau, Xg, w, ctl, max_halvings, fixed, log_w=None):
        free = jnp.logical_not(fixed.coef)

        def objective(c):
            return ns_objective(c, tau, w, Xg)

        def stats(c):
            grad, negH = ns_newton_stats(c, tau, w, Xg, self.curvature)
            grad, negH = newton.mask_newton(grad, negH, free)
            return grad, negH, objective(c)

        # the objective at the current coefficients from the E-step's log weights when given (one pass fewer)
        q0 = None if log_w is None else jnp.dot(ksum(tau * log_w), w)
        coef = damped_ascent(params.coef, objective, stats, ctl, max_halvings, self.newton_steps, q0=q0)
        return NormalizedSigmoidParams(coef=coef)

    def describe(self, params, names):
        c = np.asarray(params.coef)
        return [(i, names[j], float(c[i, j])) for i in range(c.shape[0]) for j in range(c.shape[1])]

    def atoms(self, params, intercept):
        """Masses sigma(beta_0i), blocks ``gate_intercept`` (identified: no translation) and ``gate_slope``."""
        from scipy.special import expit   # here, not at import: scipy.special costs a first fit ~0.1-0.4 s
        beta0, beta1 = split_intercept(params.coef, intercept)
        blocks = {"gate_intercept": beta0[:, None]}
        if beta1.shape[1]:
            blocks["gate_slope"] = beta1
        return expit(beta0), blocks, "sigmoid"

    def free_mask(self, params):
        return NormalizedSigmoidParams(coef=jnp.ones(jnp.shape(params.coef), dtype=bool))

    def report(self, params):
        return jnp.ravel(params.coef)
