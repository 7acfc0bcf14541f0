"""Generalised-linear-model experts: Poisson counts and binomial successes.

Expert i models y | x, z = i with a linear predictor eta_i = beta_i' x:

* ``PoissonGLM``: y ~ Poisson(mu), log mu = eta + offset (log link; the offset
  carries log exposure, as in statsmodels);
* ``BinomialGLM``: y ~ Binomial(t, p), link(p) = eta with link ``"logit"``
  (canonical), ``"probit"`` or ``"cloglog"``; t = 1 for 0/1 responses.

The per-row quantity the likelihood needs besides y -- the offset of a Poisson
expert, the number of trials of a binomial one -- travels as the *last row of
the expert design* X (p + 1, N).  :meth:`GLMExpert.transform_design` appends
it with its neutral value (offset 0, one trial), and
:class:`moestat.estimators.glm.GLMMoE` overwrites it with the user's offset/exposure
or trials.  It is data, not a coefficient: no parameter multiplies it, so it
moves with its row through padding (0 trials / offset 0 on padded rows: no
contribution), case resampling in the bootstrap, and prediction.

Densities include their normalising constants (log y! and log C(t, y)), as
statsmodels, R's ``dpois``/``dbinom`` and flexmix do, so log-likelihoods are
comparable across packages.

M-step: for every expert separately, guarded Newton steps on
sum_n w_n tau_in log f(y_n | beta_i' x_n), warm-started from the current
coefficients (:func:`moestat.fitting.newton.newton_ascent`).  The per-row first and
second derivatives in eta come from JAX (the log density is a sum of
per-row terms, so the gradient of the sum is the per-row derivative).  All
offered links give a log density concave in eta, so the curvature is
non-negative and the step is exact Newton (= IRLS for the canonical links);
each step is accepted only if the expert's objective does not fall, so EM is
monotone.  The k experts' systems are independent and solved batched with
``jax.vmap``.  An expert with (almost) no responsibility keeps its coefficients.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, log_ndtr

from ..fitting import newton
from .base import Expert, register
from .gaussian import linear_atoms

#: links each family offers (the first is the canonical link, the default)
LINKS = {"poisson": ("log",), "binomial": ("logit", "probit", "cloglog")}


class GLMParams(NamedTuple):
    coef: jnp.ndarray  # (k, p) linear-predictor coefficients (the auxiliary design row has none)


def check_counts(y: np.ndarray, name: str = "y", family: str = "Poisson") -> np.ndarray:
    """Validated non-negative whole-number responses (n,) as float64; booleans become 0/1."""
    y = np.asarray(y)
    if y.dtype == object:
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError("%s must be numeric counts for %s experts, got non-numeric values"
                            % (name, family)) from None
    if y.dtype.kind == "b":
        y = y.astype(np.float64)
    if y.dtype.kind not in "fiu":
        raise TypeError("%s must be numeric counts for %s experts, got dtype %s" % (name, family, y.dtype))
    y = y.astype(np.float64)
    bad = ~np.isfinite(y)
    if bad.any():
        raise ValueError("%s has %d non-finite value(s) (NaN or inf), first at row %d"
                         % (name, int(bad.sum()), int(np.argmax(bad))))
    neg = y < 0
    if neg.any():
        i = int(np.argmax(neg))
        raise ValueError("%s must hold non-negative counts for %s experts, but row %d is %g"
                         % (name, family, i, y[i]))
    frac = y != np.round(y)
    if frac.any():
        i = int(np.argmax(frac))
        raise ValueError("%s must hold whole-number counts for %s experts, but row %d is %g"
                         % (name, family, i, y[i]))
    return y


def _derivatives(loglik, eta):
    """Per-row first derivative and negative second derivative (clamped at 0) of a row-wise loglik(eta)."""
    g_fn = jax.grad(lambda e: jnp.sum(loglik(e)))
    g, d2 = jax.jvp(g_fn, (eta,), (jnp.ones_like(eta),))
    return g, jnp.maximum(-d2, 0.0)


def glm_m_step(loglik, coef, tau, Z, w, ctl, max_halvings, fixed, n_steps, bound=None):
    """Guarded Newton steps of every expert at once (vmap over the independent expert systems).

    loglik : callable eta (N,) -> (N,) row log densities at linear predictor eta
    coef (k, p); tau (k, N); Z (p, N) covariate rows of the design; fixed (k, p) bool.
    bound : optional box |coef| <= bound (projected Newton: coefficients on the box whose
        gradient points outwards are held there, and the line search runs along the projected
        path clip(b + 2^-j d), so a step is kept only if the objective at the projected point
        does not fall: EM stays monotone on the box).
    """
    r = tau * w[None]
    alive = r @ jnp.ones(r.shape[1], dtype=r.dtype) > 1e-10 * jnp.sum(w)

    project = (lambda bb: bb) if bound is None else (lambda bb: jnp.clip(bb, -bound, bound))

    def one(b, ri, free):
        def objective(bb):
            return jnp.dot(ri, loglik(project(bb) @ Z))

        def raw_stats(bb):
            eta = project(bb) @ Z
            g, c = _derivatives(loglik, eta)
            grad, negH = newton.linear_newton_stats((ri * g)[None], (ri * c)[None, None], Z)
            return grad[0], negH, jnp.dot(ri, loglik(eta))

        if bound is not None:
            grad, _, _ = raw_stats(b)
            edge = (1.0 - 1e-12) * bound
            free = free & ~(((b >= edge) & (grad > 0)) | ((b <= -edge) & (grad < 0)))

        def stats(bb):
            grad, negH, q = raw_stats(bb)
            return (*newton.mask_newton(grad, negH, free), q)

        return project(newton.newton_ascent(b, objective, stats, ctl, max_halvings, n_steps)[0])

    new = jax.vmap(one)(coef, r, jnp.logical_not(fixed))
    return jnp.where(alive[:, None], new, coef)


@dataclass(frozen=True)
class GLMExpert(Expert):
    """Shared machinery of the GLM expert families (see the module docstring).

    Parameters
    ----------
    link : str
        Link function; one of ``LINKS[family]``.
    newton_steps : int
        Guarded Newton steps per EM iteration (1: an ECM algorithm with the
        same fixed points as exact EM).
    max_abs_coef : float, optional
        Keep every coefficient in [-max_abs_coef, max_abs_coef].  When an
        expert separates its responses (binary data: successes and failures
        split by x; counts: an expert carrying only zeros) the likelihood grows
        without bound along that direction and no MLE exists; with a box the
        fit is the maximum on the box.
    """

    response = "count"
    #: statsmodels-style family name
    family: ClassVar[str] = "glm"
    #: neutral value of the auxiliary design row (offset 0 / one trial)
    aux_default: ClassVar[float] = 0.0
    #: what the auxiliary row holds, for messages and docs
    aux_name: ClassVar[str] = "offset"
    link: str = ""
    newton_steps: int = 1
    max_abs_coef: float | None = None

    def __post_init__(self):
        links = LINKS[self.family]
        if self.link == "":
            object.__setattr__(self, "link", links[0])
        if self.link not in links:
            raise ValueError("link %r is not available for %s experts; choose one of %s"
                             % (self.link, self.family, ", ".join(map(repr, links))))
        if isinstance(self.newton_steps, bool) or not isinstance(self.newton_steps, (int, np.integer)) \
                or self.newton_steps < 1:
            raise ValueError("newton_steps must be an integer >= 1, got %r" % (self.newton_steps,))

    # ---- host-side set-up ------------------------------------------------------------
    def check_y(self, y, name="y"):
        return check_counts(y, name, self.family.capitalize())

    def prepare(self, y, w):
        wn = w / w.sum()
        mu = float(wn @ y)
        return {"var_y": max(float(wn @ (y - mu) ** 2), 1e-12)}

    def transform_design(self, X, intercept):
        """The design with the auxiliary row appended (neutral value; GLMMoE fills in the data's)."""
        X = np.asarray(X, dtype=np.float64)
        return np.column_stack([X, np.full(X.shape[0], self.aux_default)])

    def init_features(self, X, y):
        """Non-constant covariates and the response on the linear-predictor scale."""
        Z, aux = X[:, :-1], X[:, -1]
        cols = [Z[:, j] for j in range(Z.shape[1]) if np.ptp(Z[:, j]) > 0]
        return np.column_stack(cols + [self._response_scale(np.asarray(y, dtype=np.float64), aux)])

    @abc.abstractmethod
    def start_eta(self, y, aux, w) -> float:
        """Linear predictor of the one-expert fit without covariates (the intercept's starting value)."""

    @abc.abstractmethod
    def _response_scale(self, y, aux):
        """The response on the linear-predictor scale, for clustering starts."""

    # ---- parameters ------------------------------------------------------------------
    def init_params(self, k, p, info):
        return GLMParams(coef=jnp.zeros((k, p - 1)))

    def n_free_params(self, k, p):
        return k * (p - 1)

    # ---- kernels ---------------------------------------------------------------------
    @abc.abstractmethod
    def row_loglik(self, eta, y, aux):
        """(..., N) log f(y | eta) for linear predictors eta (..., N) (aux: offset or trials)."""

    def log_density(self, params, X, y):
        return self.row_loglik(params.coef @ X[:-1], y, X[-1])

    def m_step(self, params, tau, X, y, w, ctl, max_halvings, fixed):
        Z, aux = X[:-1], X[-1]
        coef = glm_m_step(lambda eta: self.row_loglik(eta, y, aux), params.coef, tau, Z, w, ctl, max_halvings,
                          fixed.coef, self.newton_steps, self.max_abs_coef)
        return GLMParams(coef=coef)

    def _on_box(self, params) -> np.ndarray:
        c = np.abs(np.asarray(params.coef))
        if self.max_abs_coef is None:
            return np.zeros(c.shape, dtype=bool)
        return c >= (1.0 - 1e-9) * self.max_abs_coef

    def at_bound(self, params, ctl):
        return GLMParams(coef=self._on_box(params))

    def feasible(self, params, ctl):
        return self.max_abs_coef is None or bool(np.all(np.abs(np.asarray(params.coef))
                                                        <= self.max_abs_coef * (1 + 1e-12)))

    def separated(self, params, X, tau, w) -> np.ndarray:
        """(k,) booleans: experts whose fitted means reach 0 (or 1) to rounding where they carry weight.

        X (n, p + 1) row-major design; tau (n, k).  Such an expert sits at
        (or runs towards) infinite coefficients: its likelihood has no maximum.
        """
        eta = np.asarray(X[:, :-1]) @ np.asarray(params.coef).T + (X[:, -1:] if self.family == "poisson" else 0.0)
        live = (tau > 1e-3) & (np.asarray(w)[:, None] > 0)
        extreme = (np.abs(eta) > 30.0) if self.family == "binomial" else (eta < -30.0)
        return np.any(extreme & live, axis=0)

    def describe(self, params, names):
        c = np.asarray(params.coef)
        return [(i, names[j], float(c[i, j])) for i in range(c.shape[0]) for j in range(c.shape[1])]

    def atoms(self, params, intercept):
        """Blocks ``slope`` (the covariates' coefficients) and ``intercept`` of the linear predictors."""
        return linear_atoms(params.coef, intercept)

    def free_mask(self, params):
        return GLMParams(coef=jnp.ones(np.shape(params.coef), bool))

    def degenerate(self, params, n_eff, info):
        """Experts carrying fewer effective points than they have coefficients."""
        return np.asarray(n_eff) < max(2.0, float(np.shape(params.coef)[1]))


@register
@dataclass(frozen=True)
class PoissonGLM(GLMExpert):
    """Poisson-regression experts: y | x, z = i ~ Poisson(exp(beta_i' x + offset)).

    The last row of the expert design is the offset (log exposure plus any
    offset); :class:`moestat.estimators.glm.GLMMoE` fills it in from ``offset=`` /
    ``exposure=``.

    Examples
    --------
    >>> import moestat as ms
    >>> ms.experts.get_expert("poisson").link
    'log'
    """

    name = "poisson"
    family = "poisson"
    aux_default = 0.0
    aux_name = "offset"

    def row_loglik(self, eta, y, aux):
        e = eta + aux
        return y * e - jnp.exp(e) - gammaln(y + 1.0)

    def _response_scale(self, y, aux):
        return np.log(y + 0.5) - aux

    def start_eta(self, y, aux, w):
        return float(np.log(max((w @ y) / (w @ np.exp(aux)), 1e-8)))

    def mean(self, params, X):
        """(k, N) expected counts exp(beta_i' x + offset)."""
        return jnp.exp(params.coef @ X[:-1] + X[-1][None])

    def sample(self, key, params, X, z):
        mu = jnp.take_along_axis(self.mean(params, X), z[None], axis=0)[0]
        return jax.random.poisson(key, mu, dtype=jnp.int64).astype(mu.dtype)

    def sample_numpy(self, rng, params, X, z):
        """NumPy's Poisson draws at the generating expert's mean (see :meth:`Expert.sample_numpy`)."""
        mean = self.host_mean(params, X)[z, np.arange(X.shape[0])]
        return rng.poisson(mean).astype(np.float64)


def _log_p_and_q(eta, link: str):
    """log p and log(1 - p) for success probabilities p = link^-1(eta), stable in the tails."""
    if link == "logit":
        return jax.nn.log_sigmoid(eta), jax.nn.log_sigmoid(-eta)
    if link == "probit":
        return log_ndtr(eta), log_ndtr(-eta)
    # cloglog: p = 1 - exp(-exp(eta)); eta clipped where exp(eta) under/overflows (probabilities 0 / 1 to rounding)
    e = jnp.clip(eta, -700.0, 700.0)
    u = jnp.exp(e)
    return jnp.log(-jnp.expm1(-u)), -u


def inverse_link(eta, link: str):
    """Success probabilities p = link^-1(eta)."""
    return jnp.exp(_log_p_and_q(eta, link)[0])


@register
@dataclass(frozen=True)
class BinomialGLM(GLMExpert):
    """Binomial-regression experts: y | x, z = i ~ Binomial(t, link^-1(beta_i' x)).

    The last row of the expert design is the number of trials t (1 for 0/1
    responses); :class:`moestat.estimators.glm.GLMMoE` fills it in from ``trials=`` or
    a two-column (successes, failures) response.  Links: ``"logit"``
    (default), ``"probit"``, ``"cloglog"``.

    Examples
    --------
    >>> import moestat as ms
    >>> ms.experts.BinomialGLM(link="probit").link
    'probit'
    """

    name = "binomial"
    family = "binomial"
    aux_default = 1.0
    aux_name = "trials"

    def row_loglik(self, eta, y, aux):
        lp, lq = _log_p_and_q(eta, self.link)
        # y = 0 or y = t rows must not meet 0 * log(0); padded rows have y = t = 0
        succ = jnp.where(y > 0, y * lp, 0.0)
        fail = jnp.where(aux - y > 0, (aux - y) * lq, 0.0)
        return succ + fail + gammaln(aux + 1.0) - gammaln(y + 1.0) - gammaln(aux - y + 1.0)

    def _response_scale(self, y, aux):
        rate = (y + 0.5) / (aux + 1.0)
        return np.log(rate / (1.0 - rate))

    def start_eta(self, y, aux, w):
        rate = float(np.clip((w @ y) / (w @ aux), 1e-6, 1 - 1e-6))
        if self.link == "logit":
            return float(np.log(rate / (1.0 - rate)))
        if self.link == "probit":
            from scipy import special   # imported here: scipy costs ~0.2 s to import
            return float(special.ndtri(rate))
        return float(np.log(-np.log1p(-rate)))

    def mean(self, params, X):
        """(k, N) success probabilities of each expert (multiply by the trials for expected successes)."""
        return inverse_link(params.coef @ X[:-1], self.link)

    def sample(self, key, params, X, z):
        p = jnp.take_along_axis(self.mean(params, X), z[None], axis=0)[0]
        return jax.random.binomial(key, X[-1], p).astype(p.dtype)

    def sample_numpy(self, rng, params, X, z):
        """NumPy's binomial draws; the trials are the design's last column (see :meth:`Expert.sample_numpy`)."""
        p = self.host_mean(params, X)[z, np.arange(X.shape[0])]
        return rng.binomial(np.round(X[:, -1]).astype(np.int64), p).astype(np.float64)
