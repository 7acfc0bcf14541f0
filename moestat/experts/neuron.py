"""Gaussian experts with a single-neuron mean: y | x, z=i ~ N(eta2_i * act(eta1_i' x), sigma_i^2).

``x`` is the expert design, so with an intercept column the inner weights
``eta1 = coef`` hold the bias eta0 as their first entry: h(x) = eta2 act(eta1' x + eta0).
This is the DeepSeekMoE paper's shared expert kappa2 ReLU(kappa1 x + kappa0) and,
with ``bias=False`` (eta0 = 0), its routed expert eta2 ReLU(eta1 x)
(``theory.md`` §2.5).  Activations: :class:`ReLUExpert` ("relu") and
:class:`GELUExpert` ("gelu", the exact GELU u Phi(u)).

M-step (a GEM step on this expert's part of the EM objective):
the mean parameters take ``newton_steps`` Levenberg-damped Gauss-Newton steps
on the weighted residual sum of squares, each accepted only if the exact RSS
does not rise (:func:`moestat.fitting.newton.guarded_step`), warm-started from the
better of the current neuron and two neurons built from the expert's weighted
least-squares line (``s * act(s * line)``, s = +-1, active where the line has
sign s, so a ReLU unit is never started dead) and, with
``hinge_candidates`` > 0, the best hinge beta * ReLU(s (u - c)) over that many
kinks c on the line's projection u (a global search over the kink, which
Gauss-Newton moves only locally: :meth:`GaussianNeuron._best_hinge`); then the
variance is the closed-form ML value RSS / N_i.  Lower RSS at the old variance and the optimal
variance for the new mean give a higher objective, so EM stays monotone.

Identification: ReLU is positively homogeneous, eta2 ReLU(eta1'x) =
(eta2/c) ReLU(c eta1'x) for c > 0, so a ReLU expert is identified only up to
that scale.  Its canonical form has |eta2| = 1 (the M-step returns it, and
``free_mask`` leaves eta2 out of the parameter vector for the Newton polish and
standard errors).  GELU is not homogeneous and keeps eta2 free.
"""
from __future__ import annotations

import abc

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from ..fitting import newton
from ..fitting.wls import constrained_wls
from .base import Expert, register
from .gaussian import (GaussianLinear, gaussian_degenerate, gaussian_log_density,
                       gram_stats)

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class NeuronParams(NamedTuple):
    coef: jnp.ndarray    # (k, p) inner weights on the design columns (column 0 = bias eta0 with an intercept)
    scale: jnp.ndarray   # (k,) outer weight eta2
    sigma2: jnp.ndarray  # (k,) variances


@dataclass(frozen=True)
class GaussianNeuron(Expert):
    """Base of the single-neuron Gaussian experts (see the module docstring).

    Parameters
    ----------
    bias : bool
        Include the bias eta0 (the coefficient of the design's intercept
        column).  ``bias=False`` holds it at 0 and needs an intercept in the
        expert design (the default), which it then ignores.
    newton_steps : int
        Guarded Gauss-Newton steps on the mean parameters per EM iteration.
    damping : float
        Levenberg damping of the Gauss-Newton system, relative to its mean
        diagonal (the model's ``ridge`` is used when larger).
    hinge_candidates : int
        Kink locations of the hinge search that proposes a further warm
        start in every M-step (see :meth:`_best_hinge`); 0 (default) turns it
        off.  Needs ``bias=True`` and an intercept column in the expert
        design.  It raises the share of single starts that reach the true
        log-likelihood at about twice the cost per EM iteration and a longer
        compile, hence opt-in; the measurements are in
        ``benchmarks/relu_hinge_starts.py`` and its results file.
    """

    name: ClassVar[str] = "neuron"
    response: ClassVar[str] = "continuous"
    #: positively homogeneous activation (scale not identified)
    homogeneous: ClassVar[bool] = False
    bias: bool = True
    newton_steps: int = 1
    damping: float = 1e-6
    hinge_candidates: int = 0

    def __post_init__(self):
        if isinstance(self.newton_steps, bool) or not isinstance(self.newton_steps, numbers.Integral) \
                or self.newton_steps < 1:
            raise ValueError("newton_steps must be an integer >= 1, got %r" % (self.newton_steps,))
        if not (isinstance(self.damping, numbers.Real) and math.isfinite(self.damping) and self.damping >= 0):
            raise ValueError("damping must be a finite number >= 0, got %r" % (self.damping,))
        if isinstance(self.hinge_candidates, bool) or not isinstance(self.hinge_candidates, numbers.Integral) \
                or self.hinge_candidates < 0:
            raise ValueError("hinge_candidates must be an integer >= 0, got %r" % (self.hinge_candidates,))

    # ---- activation (subclasses) ----------------------------------------------------
    @staticmethod
    @abc.abstractmethod
    def act(u):
        ...

    @staticmethod
    @abc.abstractmethod
    def dact(u):
        ...

    # ---- host-side set-up ---------------------------------------------------------------
    check_y = GaussianLinear.check_y
    prepare = GaussianLinear.prepare
    init_features = GaussianLinear.init_features

    def transform_design(self, X, intercept):
        if not self.bias and not intercept:
            raise ValueError("%s(bias=False) fixes the coefficient of the intercept column at 0, but the expert "
                             "design has no intercept; use bias=True (the neuron then has no bias anyway)"
                             % type(self).__name__)
        return self.transform(X)

    # ---- parameters ---------------------------------------------------------------------
    def _colmask(self, p):
        """(p,) 1 for inner weights that exist (0 for the bias column when bias=False)."""
        m = np.ones(p)
        if not self.bias:
            m[0] = 0.0
        return jnp.asarray(m)

    def init_params(self, k, p, info):
        return NeuronParams(coef=jnp.zeros((k, p)), scale=jnp.ones((k,)),
                            sigma2=jnp.full((k,), info.get("var_y", 1.0)))

    def n_free_params(self, k, p):
        per = (p - (0 if self.bias else 1)) + (0 if self.homogeneous else 1) + 1
        return k * per

    def unconstrain(self, params):
        return params._replace(sigma2=jnp.log(params.sigma2))

    def constrain(self, u):
        return u._replace(sigma2=jnp.exp(u.sigma2))

    def canonical(self, params):
        if not self.homogeneous:
            return params
        s = jnp.asarray(params.scale)
        c = jnp.where(jnp.abs(s) > 0, jnp.abs(s), 1.0)
        return params._replace(coef=jnp.asarray(params.coef) * c[:, None], scale=s / c)

    variance_fields = ("sigma2",)

    def noise_variances(self, params):
        return np.asarray(params.sigma2, dtype=np.float64)

    def atoms(self, params, intercept):
        """Strongly identifiable experts: all mean parameters (inner weights, scale) form one block ``expert``."""
        coef = np.asarray(params.coef, dtype=np.float64)
        if intercept and not self.bias:
            coef = coef[:, 1:]  # the bias is held at 0 and is not a parameter
        mean = np.column_stack([coef, np.asarray(params.scale, dtype=np.float64)])
        return {"expert": mean, "variance": np.asarray(params.sigma2, dtype=np.float64)[:, None]}

    def free_mask(self, params):
        k, p = np.shape(params.coef)
        coef = np.ones((k, p), dtype=bool)
        if not self.bias:
            coef[:, 0] = False
        return NeuronParams(coef=jnp.asarray(coef), scale=jnp.full((k,), not self.homogeneous),
                            sigma2=jnp.ones((k,), bool))

    # ---- kernels ------------------------------------------------------------------------
    def mean(self, params, X):
        coef = params.coef * self._colmask(params.coef.shape[1])[None]
        return params.scale[:, None] * self.act(coef @ X)

    def log_density(self, params, X, y):
        return gaussian_log_density(self.mean(params, X), params.sigma2, y)

    def _rss(self, theta, r, X, y):
        """Weighted RSS per expert for stacked theta (..., k, p+1): coef | scale."""
        h = theta[..., -1:] * self.act(theta[..., :-1] @ X)
        return jnp.sum(r * (y - h) ** 2, axis=-1)

    def _gn_ascent(self, theta, r, free, X, y, ctl, max_halvings):
        """Guarded, damped Gauss-Newton steps for one expert: theta (p+1,), r (N,), free (p+1,)."""
        def objective(th):
            return -self._rss(th, r, X, y)

        def stats(th):
            u = th[:-1] @ X
            a = self.act(u)
            res = y - th[-1] * a
            J = jnp.concatenate([th[-1] * self.dact(u)[None] * X, a[None]], axis=0)    # (p+1, N)
            grad = J @ (r * res)
            negH = (J * r[None]) @ J.T
            grad, negH = newton.mask_newton(grad, negH, free)
            return grad, negH, -jnp.dot(r, res ** 2)

        c = ctl._replace(ridge=jnp.maximum(ctl.ridge, self.damping))
        th, _ = newton.newton_ascent(theta, objective, stats, c, max_halvings, self.newton_steps)
        return th

    def _best_hinge(self, line, r, X, y, w):
        """Per expert, the best hinge beta * ReLU(s (u - c)) on u = the WLS line's slope part x, as a neuron (k, p+1).

        Gauss-Newton from the current neuron or the line moves the kink only
        locally, and hardly at all where the expert's responsibilities are
        small, so EM can stop at a neuron with a misplaced kink.  This
        searches the kink globally: ``hinge_candidates`` kinks c evenly
        spaced over the range of u on the rows with w > 0, both directions
        s = +-1, beta the closed-form weighted LS coefficient of y on the
        single feature ReLU(s (u - c)) (the neuron has no outer intercept),
        and weighted RSS sum r y^2 - (sum r f y)^2 / sum r f^2; all
        candidates in one vectorised pass.  As a neuron: coef = |beta| s
        (-c, v), scale = sign(beta), the canonical ReLU form (for GELU an
        approximation that the caller's exact RSS judges).  Column 0 must be
        the intercept: where it is not (all ones on the live rows), the
        candidate is NaN, which the caller ranks last.
        """
        C = self.hinge_candidates
        live = w > 0
        v = line.at[:, 0].set(0.0)                                                        # (k, p) slope part
        u = v @ X                                                                         # (k, N)
        lo = jnp.min(jnp.where(live[None], u, jnp.inf), axis=1)
        hi = jnp.max(jnp.where(live[None], u, -jnp.inf), axis=1)
        c = lo[None] + (jnp.arange(C, dtype=u.dtype)[:, None] + 0.5) / C * (hi - lo)[None]   # (C, k)
        sgn = jnp.array([1.0, -1.0], dtype=u.dtype)
        f = jnp.maximum(sgn[:, None, None, None] * (u[None, None] - c[None, :, :, None]), 0.0)  # (2, C, k, N)
        ry = r * y
        sfy = jnp.sum(f * ry, axis=-1)
        sff = jnp.sum(f * f * r, axis=-1)
        ok = sff > 1e-12 * jnp.sum(r, axis=-1)
        gain = jnp.where(ok, sfy ** 2 / jnp.where(ok, sff, 1.0), -1.0)                 # RSS drop, (2, C, k)
        best = jnp.argmax(gain.reshape(2 * C, -1), axis=0)                               # (k,)
        s_b = sgn[best // C]
        c_b = jnp.take_along_axis(c, (best % C)[None], axis=0)[0]
        pick = lambda a: jnp.take_along_axis(a.reshape(2 * C, -1), best[None], axis=0)[0]
        beta = pick(sfy) / jnp.where(pick(ok), pick(sff), 1.0)
        coef = (jnp.abs(beta) * s_b)[:, None] * v.at[:, 0].set(-c_b)
        theta = jnp.concatenate([coef, jnp.where(beta < 0, -1.0, 1.0)[:, None]], axis=1)
        intercept = jnp.all(jnp.where(live, X[0] == 1.0, True))
        return jnp.where(intercept & jnp.isfinite(theta), theta, jnp.nan)

    def m_step(self, params, tau, X, y, w, ctl, max_halvings, fixed):
        k, p = params.coef.shape
        colmask = self._colmask(p)
        r = tau * w
        Nk = r @ jnp.ones(r.shape[1], dtype=r.dtype)
        free = jnp.concatenate([jnp.logical_not(fixed.coef) & (colmask[None] > 0),
                                jnp.logical_not(fixed.scale)[:, None]], axis=1)          # (k, p+1)
        untouched = jnp.logical_not(jnp.any(fixed.coef & (colmask[None] > 0), axis=1) | fixed.scale)   # (k,)
        theta0 = jnp.concatenate([params.coef * colmask[None], params.scale[:, None]], axis=1)
        # warm start: the current neuron or a neuron built on the expert's WLS line, whichever fits better
        A, b, _, _ = gram_stats(tau, w, X, y)
        line = constrained_wls(A, b, jnp.zeros_like(params.coef), jnp.broadcast_to(colmask[None] == 0, (k, p)))
        one = jnp.ones((k, 1), dtype=theta0.dtype)
        cands = [theta0, jnp.concatenate([line, one], 1), jnp.concatenate([-line, -one], 1)]
        if self.hinge_candidates > 0 and self.bias:   # a global search over the kink (static switch)
            cands.append(self._best_hinge(line, r, X, y, w))
        cands = jnp.stack(cands)
        rss = self._rss(cands, r, X, y)                                                  # (3 or 4, k)
        rss = rss.at[1:].set(jnp.where(untouched[None] & jnp.isfinite(rss[1:]), rss[1:], jnp.inf))
        best = jnp.argmin(rss, axis=0)
        start = jnp.take_along_axis(cands, best[None, :, None], axis=0)[0]
        theta = jax.vmap(self._gn_ascent, in_axes=(0, 0, 0, None, None, None, None))(
            start, r, free, X, y, ctl, max_halvings)
        rss_new = self._rss(theta, r, X, y)
        alive = (Nk > 1e-10 * jnp.sum(w)) & jnp.isfinite(rss_new)
        s2 = jnp.maximum(rss_new / jnp.where(alive, Nk, 1.0), ctl.var_floor)
        s2 = jnp.where(alive & jnp.logical_not(fixed.sigma2), s2, params.sigma2)
        theta = jnp.where(alive[:, None], theta, theta0)
        out = NeuronParams(coef=theta[:, :-1], scale=theta[:, -1], sigma2=s2)
        if self.homogeneous:   # canonical |eta2| = 1; same mean function, so the objective is unchanged
            canon = self.canonical(out)
            out = jax.tree_util.tree_map(lambda a, b_: jnp.where(
                untouched.reshape((k,) + (1,) * (jnp.ndim(a) - 1)), a, b_), canon, out)
        return out

    def sample(self, key, params, X, z):
        mu = jnp.take_along_axis(self.mean(params, X), z[None], axis=0)[0]
        sd = jnp.sqrt(params.sigma2)[z]
        return mu + sd * jax.random.normal(key, mu.shape, dtype=mu.dtype)

    def describe(self, params, names):
        c, s, s2 = (np.asarray(a) for a in (params.coef, params.scale, params.sigma2))
        first = 0 if self.bias else 1
        rows = []
        for i in range(c.shape[0]):
            rows += [(i, names[j], float(c[i, j])) for j in range(first, c.shape[1])]
            rows.append((i, "scale", float(s[i])))
            rows.append((i, "sigma", float(np.sqrt(s2[i]))))
        return rows

    # ---- inference (moestat.inference) -----------------------------------------------
    def report(self, params):
        """The estimates :meth:`describe` lists, in its order (sigma, not sigma^2); JAX-traceable."""
        first = 0 if self.bias else 1
        return jnp.concatenate([params.coef[:, first:], params.scale[:, None],
                                jnp.sqrt(params.sigma2)[:, None]], axis=1).ravel()

    def at_bound(self, params, ctl):
        """Variances at the floor (the Newton polish holds them fixed)."""
        z = np.zeros(np.shape(params.scale), bool)
        return NeuronParams(coef=np.zeros(np.shape(params.coef), bool), scale=z,
                            sigma2=np.asarray(params.sigma2) <= float(ctl.var_floor) * (1 + 1e-9))

    def feasible(self, params, ctl):
        return bool(np.all(np.asarray(params.sigma2) >= float(ctl.var_floor)))

    def degenerate(self, params, n_eff, info):
        n_mean = np.shape(params.coef)[1] + (0 if self.homogeneous else 1) - (0 if self.bias else 1)
        return gaussian_degenerate(np.asarray(params.sigma2), np.asarray(n_eff), info, n_mean)


@register
@dataclass(frozen=True)
class ReLUExpert(GaussianNeuron):
    """Gaussian expert with mean eta2 * ReLU(eta1' x (+ eta0)); canonical |eta2| = 1.

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> rng = np.random.default_rng(0); x = rng.uniform(-3, 3, 2000)
    >>> z = rng.random(2000) < 1 / (1 + np.exp(-2 * x))
    >>> y = np.where(z, 2 * np.maximum(x - 1, 0), -np.maximum(-x, 0)) + 0.1 * rng.standard_normal(2000)
    >>> res = ms.GaussianMoE(2, expert="relu").fit(x, y, n_init=4)
    >>> sorted(zip(res.params_tree.expert.scale.tolist(), (res.params_tree.expert.coef.round(1) + 0.0).tolist()))
    [(-1.0, [0.0, -1.0]), (1.0, [-2.0, 2.0])]
    """

    name: ClassVar[str] = "relu"
    homogeneous: ClassVar[bool] = True

    @staticmethod
    def act(u):
        return jnp.maximum(u, 0.0)

    @staticmethod
    def dact(u):
        return (u > 0).astype(u.dtype)


@register
@dataclass(frozen=True)
class GELUExpert(GaussianNeuron):
    """Gaussian expert with mean eta2 * GELU(eta1' x (+ eta0)), GELU(u) = u Phi(u) (exact, not tanh)."""

    name: ClassVar[str] = "gelu"

    @staticmethod
    def act(u):
        return u * ndtr(u)

    @staticmethod
    def dact(u):
        return ndtr(u) + u * _INV_SQRT_2PI * jnp.exp(-0.5 * u * u)
