"""Gaussian experts with a mean linear in the expert design: y | x, z=i ~ N(beta_i' x, sigma_i^2).

The M-step is closed form: weighted least squares per expert from one weighted
Gram matrix of Z = [X; y] (one contraction over the data for all experts), and
the ML variance sigma_i^2 = RSS_i / N_i -- no degrees-of-freedom correction, so
the fixed point is the exact MLE (flexmix divides by n - p; ``peers.md`` §3).

Safeguards: a variance floor (``ctl.var_floor``, absolute), a tiny ridge on the
normal equations, and an expert with no weight keeps its parameters.  Fixed
coefficients are honoured exactly by solving the normal equations of the free
coefficients only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..fitting import moments
from ..fitting.wls import constrained_wls
from .._math import split_intercept
from .base import Expert, register

LOG2PI = math.log(2.0 * math.pi)


class GaussianParams(NamedTuple):
    coef: jnp.ndarray    # (k, p) mean coefficients
    sigma2: jnp.ndarray  # (k,) variances


def gram_stats(tau, w, X, y):
    """Per-expert weighted Gram blocks: A (k,p,p), b (k,p), c (k,), N_k (k,)."""
    k, N = tau.shape
    p = X.shape[0]
    r = tau * w
    Z = jnp.concatenate([X, y[None]], axis=0)                               # (p+1, N)
    G = moments.contract((r[:, None, :] * Z[None]).reshape(k * (p + 1), N), Z).reshape(k, p + 1, p + 1)
    return G[:, :p, :p], G[:, :p, p], G[:, p, p], r @ jnp.ones(N, dtype=r.dtype)


def gram_from_moments(M, p: int):
    """Gram blocks (A, b, c, N_k) of :func:`gram_stats` from the moments of the rows tau_i w.

    M (k, f): the rows ``tau * w`` contracted with :func:`moestat.fitting.moments.features` of Z = [X; y].
    """
    Nk, _, G = moments.split(M, p + 1)
    return G[:, :p, :p], G[:, :p, p], G[:, p, p], Nk


def gaussian_m_step(coef, sigma2, tau, X, y, w, ctl, fixed_coef, fixed_sigma2):
    """Closed-form weighted LS / ML-variance update shared by the Gaussian families."""
    return gaussian_m_step_from_stats(coef, sigma2, gram_stats(tau, w, X, y), jnp.sum(w), ctl, fixed_coef,
                                      fixed_sigma2)


def gaussian_m_step_from_stats(coef, sigma2, stats, total, ctl, fixed_coef, fixed_sigma2):
    """:func:`gaussian_m_step` given the Gram blocks ``stats = (A, b, c, N_k)`` and the total weight."""
    A, b, c, Nk = stats
    beta = constrained_wls(A, b, coef, fixed_coef)
    rss = c - 2.0 * jnp.einsum("ki,ki->k", beta, b) + jnp.einsum("ki,kij,kj->k", beta, A, beta)
    alive = Nk > 1e-10 * total
    s2 = jnp.maximum(jnp.maximum(rss, 0.0) / jnp.where(alive, Nk, 1.0), ctl.var_floor)
    beta = jnp.where(alive[:, None], beta, coef)
    s2 = jnp.where(alive & jnp.logical_not(fixed_sigma2), s2, sigma2)
    return beta, s2


def linear_atoms(coef, intercept: bool) -> dict:
    """Atom blocks of linear predictors coef (k, p): ``slope`` (the non-intercept columns) and ``intercept``."""
    b, a = split_intercept(coef, intercept)
    blocks = {"slope": a} if a.shape[1] else {}
    if intercept:
        blocks["intercept"] = b[:, None]
    return blocks


def gaussian_log_density(mean, sigma2, y):
    """(k, N) log N(y | mean_i, sigma2_i)."""
    inv = 1.0 / sigma2
    return -0.5 * (LOG2PI + jnp.log(sigma2))[:, None] - 0.5 * inv[:, None] * (y[None] - mean) ** 2


@register
@dataclass(frozen=True)
class GaussianLinear(Expert):
    """Gaussian experts whose mean is linear in the expert design (intercept included)."""

    name = "linear"
    response = "continuous"

    @property
    def linear_gaussian(self) -> bool:
        """N(coef @ x, sigma2) exactly: only this class (subclasses change the mean or the density)."""
        return type(self) is GaussianLinear

    def check_y(self, y, name="y"):
        y = np.asarray(y)
        if y.dtype == object:
            from ..data.design import numeric_objects
            y = numeric_objects(y, name)
        if y.dtype.kind in "USb" or y.dtype.kind not in "fiu":
            raise TypeError("%s must be numeric for Gaussian experts, got dtype %s" % (name, y.dtype))
        y = y.astype(np.float64)
        if not np.all(np.isfinite(y)):
            bad = int(np.argmax(~np.isfinite(y)))
            raise ValueError("%s has %d non-finite value(s) (NaN or inf), first at row %d"
                             % (name, int((~np.isfinite(y)).sum()), bad))
        return y

    def prepare(self, y, w):
        wn = w / w.sum()
        mu = float(wn @ y)
        var = float(wn @ (y - mu) ** 2)
        if not var > 0:
            raise ValueError("y is constant (weighted variance 0): a Gaussian MoE cannot be fitted")
        return {"var_y": var}

    def init_features(self, X, y):
        cols = [X[:, j] for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0]
        return np.column_stack(cols + [y]) if cols else y[:, None]

    def init_params(self, k, p, info):
        return GaussianParams(coef=jnp.zeros((k, p)), sigma2=jnp.full((k,), info.get("var_y", 1.0)))

    def n_free_params(self, k, p):
        return k * (p + 1)

    def unconstrain(self, params):
        return GaussianParams(coef=params.coef, sigma2=jnp.log(params.sigma2))

    def constrain(self, u):
        return GaussianParams(coef=u.coef, sigma2=jnp.exp(u.sigma2))

    def log_density(self, params, X, y):
        return gaussian_log_density(params.coef @ X, params.sigma2, y)

    def m_step(self, params, tau, X, y, w, ctl, max_halvings, fixed):
        beta, s2 = gaussian_m_step(params.coef, params.sigma2, tau, X, y, w, ctl, fixed.coef, fixed.sigma2)
        return GaussianParams(coef=beta, sigma2=s2)

    # the EM loop's moment path (moestat.fitting.moments): the M-step needs only sums of tau_i w against [X; y] products
    moment_design = "Xy"

    def m_step_from_moments(self, params, M, total, ctl, fixed):
        """:meth:`m_step` from M (k, f): the rows ``tau * w`` contracted with the features of [X; y]."""
        p = params.coef.shape[1]
        beta, s2 = gaussian_m_step_from_stats(params.coef, params.sigma2, gram_from_moments(M, p), total, ctl,
                                              fixed.coef, fixed.sigma2)
        return GaussianParams(coef=beta, sigma2=s2)

    def mean(self, params, X):
        return params.coef @ X

    def sample(self, key, params, X, z):
        mu = jnp.take_along_axis(params.coef @ X, z[None], axis=0)[0]
        sd = jnp.sqrt(params.sigma2)[z]
        return mu + sd * jax.random.normal(key, mu.shape, dtype=mu.dtype)

    def describe(self, params, names):
        c, s2 = np.asarray(params.coef), np.asarray(params.sigma2)
        rows = []
        for i in range(c.shape[0]):
            rows += [(i, names[j], float(c[i, j])) for j in range(c.shape[1])]
            rows.append((i, "sigma", float(np.sqrt(s2[i]))))
        return rows

    variance_fields = ("sigma2",)

    def noise_variances(self, params):
        return np.asarray(params.sigma2, dtype=np.float64)

    def atoms(self, params, intercept):
        """Blocks ``slope`` (non-intercept coefficients), ``intercept`` and ``variance`` sigma_i^2."""
        blocks = linear_atoms(params.coef, intercept)
        blocks["variance"] = np.asarray(params.sigma2, dtype=np.float64)[:, None]
        return blocks

    def free_mask(self, params):
        return GaussianParams(coef=jnp.ones(params.coef.shape, bool), sigma2=jnp.ones(params.sigma2.shape, bool))

    def at_bound(self, params, ctl):
        floor = float(ctl.var_floor)
        return GaussianParams(coef=np.zeros(np.shape(params.coef), bool),
                              sigma2=np.asarray(params.sigma2) <= floor * (1 + 1e-9))

    def feasible(self, params, ctl):
        return bool(np.all(np.asarray(params.sigma2) >= float(ctl.var_floor)))

    def report(self, params):
        # describe() order: per expert its coefficients, then sigma (a standard deviation)
        return jnp.concatenate([params.coef, jnp.sqrt(params.sigma2)[:, None]], axis=1).ravel()

    def degenerate(self, params, n_eff, info):
        return gaussian_degenerate(np.asarray(params.sigma2), np.asarray(n_eff), info, params.coef.shape[1])


def gaussian_degenerate(sigma2, n_eff, info, n_mean_params, var_ratio=1e-3):
    """Spurious-maximum flags: an expert with few effective points and a variance far below the rest.

    An expert is flagged when it carries fewer than ``max(5, 2 * (n_mean_params + 1))``
    effective points, or when its variance is below ``var_ratio`` times the
    largest expert variance *and* it carries fewer than 5 % of the points.
    (Relative to the other experts, not to var(y): with a strong signal var(y)
    dwarfs every honest noise variance.)
    """
    few = n_eff < max(5.0, 2.0 * (n_mean_params + 1))
    tiny = (sigma2 < var_ratio * np.max(sigma2)) & (n_eff < 0.05 * info.get("n_total", np.inf))
    return few | tiny
