"""Multinomial-logistic (classification) experts: P(y = c | x, z = i) = softmax_c(A_i x).

Each expert i holds a coefficient matrix ``A_i`` of shape (C, p) over the C
classes; the *first* class (in the recorded class order) is the reference and
its row is fixed at 0, as in statsmodels' ``MNLogit`` (the ICML 2024 paper and
the group's R code fix the *last* class instead; the models are the same up to
relabelling, see ``docs/multinomial.md``).

The M-step maximises, for every expert separately,
``sum_n w_n tau_in log softmax_{y_n}(A_i x_n)`` -- a weighted multinomial logit
with one-hot targets.  It is the gate's soft-label cross-entropy with targets
one-hot(y) and weights ``w * tau_i``, so it calls the gate's own guarded,
warm-started Newton routine (:func:`moestat.fitting.newton.softmax_step`,
built on :func:`moestat.fitting.newton.softmax_newton_stats`): one kernel serves the gate
and the experts (``engineering.md`` §8).  The k experts' Newton systems are
independent (the Hessian is block-diagonal over experts), so they are solved
batched with ``jax.vmap`` -- k systems of size (C-1)p, not one of size k(C-1)p.
Each expert's step is guarded (accepted only if its own objective does not
decrease), so the sum never decreases and EM stays monotone.

Safeguards: an expert with (almost) no responsibility keeps its coefficients;
the model's ``ridge`` (a Levenberg ridge relative to the curvature scale) keeps
Newton steps finite when an expert's classes are separated by x, where the MLE
of that expert is at infinity.

Class labels: integers, booleans or strings; the sorted distinct labels of the
training data are the classes (``info["classes"]``), used in summaries and to
encode y at predict time (an unseen label is an error).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..fitting import newton
from .._math import inverse_cdf, klogsumexp, ksum
from .base import Expert, register


class MultinomialParams(NamedTuple):
    coef: jnp.ndarray  # (k, C, p); row [:, 0, :] (reference class) stays 0


def check_labels(y: np.ndarray, name: str = "y") -> np.ndarray:
    """Validated class labels (n,): integers, booleans or strings; no missing values, no fractions.

    Whole-number floats become integers; numeric objects become numbers,
    other objects strings.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError("%s must be one-dimensional (n,) class labels, got shape %s" % (name, y.shape))
    if y.dtype.kind == "O":
        missing = np.array([v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)) for v in y], bool)
        if missing.any():
            raise ValueError("%s has %d missing label(s) (None/NaN), first at row %d"
                             % (name, int(missing.sum()), int(np.argmax(missing))))
        numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in y)
        y = y.astype(np.float64) if numeric else y.astype(str)
    kind = y.dtype.kind
    if kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            raise ValueError("%s has %d missing/non-finite label(s) (NaN or inf), first at row %d"
                             % (name, int(bad.sum()), int(np.argmax(bad))))
        frac = y != np.round(y)
        if frac.any():
            i = int(np.argmax(frac))
            raise ValueError("%s must hold class labels, but row %d is %r (a number with a fractional part); "
                             "use MultinomialMoE for categorical y and GaussianMoE for continuous y"
                             % (name, i, float(y[i])))
        return y.astype(np.int64)
    if kind not in "iubUS":
        raise TypeError("%s must hold class labels (integers, booleans or strings), got dtype %s" % (name, y.dtype))
    return y


def encode_labels(y: np.ndarray, classes: np.ndarray, name: str = "y") -> np.ndarray:
    """Integer codes 0..C-1 of ``y`` in the order of ``classes``; unknown labels are an error."""
    y = check_labels(y, name)
    classes = np.asarray(classes)
    try:
        codes = np.searchsorted(classes, y)
        codes = np.clip(codes, 0, len(classes) - 1)
        ok = classes[codes] == y
    except TypeError:
        raise TypeError("%s labels of type %s cannot be compared with the fitted classes %s"
                        % (name, y.dtype, list(classes))) from None
    if not np.all(ok):
        unknown = list(dict.fromkeys(y[~ok].tolist()))
        raise ValueError("%s has label(s) %s that were not among the classes the model was fitted with (%s)"
                         % (name, unknown[:5], ", ".join(map(str, classes.tolist()))))
    return codes.astype(np.int32)


def class_log_probs(coef, X):
    """(k, C, N) log softmax over classes of coef (k, C, p) @ X (p, N)."""
    eta = jnp.einsum("kcp,pn->ckn", coef, X)          # class axis first for the unrolled reductions
    return jnp.moveaxis(eta - klogsumexp(eta)[None], 0, 1)


def multinomial_m_step(coef, tau, X, y, w, ctl, max_halvings, fixed, n_steps, bound=None):
    """Guarded Newton steps for every expert at once (vmap over the independent expert systems).

    coef (k, C, p); tau (k, N); y (N,) int codes; fixed (k, C, p) bool.
    ``bound``: optional box |coef| <= bound; the clipped step is kept only if it
    does not lower the expert's objective (so EM stays monotone on the box).
    """
    C = coef.shape[1]
    target = jax.nn.one_hot(y, C, axis=0, dtype=X.dtype)     # (C, N), shared by all experts
    r = tau * w[None]                                        # (k, N) expert weights
    Nk = r @ jnp.ones(r.shape[1], dtype=r.dtype)
    alive = Nk > 1e-10 * jnp.sum(w)
    free = jnp.logical_not(fixed)

    def one(c, ri, fr):
        if bound is None:
            return newton.softmax_step(c, target, X, ri, ctl, max_halvings, fr, n_steps)
        # projected Newton: coefficients on the box whose gradient points outwards are held there
        eta = c @ X
        grad = (ri * (target - jnp.exp(eta - klogsumexp(eta)[None]))) @ X.T             # (C, p)
        edge = (1.0 - 1e-12) * bound
        active = ((c >= edge) & (grad > 0)) | ((c <= -edge) & (grad < 0))
        new = newton.softmax_step(c, target, X, ri, ctl, max_halvings, fr & ~active, n_steps)
        new = jnp.clip(new, -bound, bound)
        q_old = newton.softmax_objective(c, target, ri, X)
        q_new = newton.softmax_objective(new, target, ri, X)
        return jnp.where(q_new >= q_old - ctl.ls_eps * jnp.abs(q_old), new, c)

    new = jax.vmap(one)(coef, r, free)
    return jnp.where(alive[:, None, None], new, coef)


@register
@dataclass(frozen=True)
class MultinomialLogistic(Expert):
    """Multinomial-logistic experts over C classes (first class = reference).

    Parameters
    ----------
    newton_steps : int
        Guarded Newton steps per EM iteration (1: an ECM algorithm with the
        same fixed points as exact EM).
    max_abs_coef : float, optional
        Keep every coefficient in [-max_abs_coef, max_abs_coef] (the compact
        parameter space of the theory).  Without it the likelihood can grow
        without bound along separating directions (an expert that makes a
        class certain beyond some x), so that the MLE does not exist; with it
        the fit is the MLE on the box.
    n_classes : int, optional
        Number of classes; set by :class:`moestat.MultinomialMoE` from the data.
    """

    name = "multinomial"
    response = "categorical"
    newton_steps: int = 1
    max_abs_coef: float | None = None
    #: number of classes; None until the estimator binds the family to its training data
    n_classes: int | None = None
    #: class labels, for tables only (not compared/hashed: labels never force a recompile)
    classes: tuple | None = field(default=None, compare=False, hash=False)

    def bind(self, info: dict) -> "MultinomialLogistic":
        """This family with the number of classes (and their labels) of the training data."""
        return replace(self, n_classes=int(info["n_classes"]), classes=tuple(np.asarray(info["classes"]).tolist()))

    # ---- host-side set-up ------------------------------------------------------------
    def check_y(self, y, name="y"):
        return check_labels(y, name)

    def prepare(self, y, w):
        live = np.asarray(w) > 0
        classes = np.unique(np.asarray(y)[live])
        if classes.size < 2:
            raise ValueError("y has a single class (%r) among the rows with positive weight: a classification "
                             "MoE needs at least 2 classes" % (classes[0].item() if classes.size else None,))
        absent = np.setdiff1d(np.unique(y), classes)
        if absent.size:
            raise ValueError("class(es) %s occur only in rows with weight 0; drop those rows or give them weight"
                             % absent.tolist())
        if self.n_classes is not None and self.n_classes != classes.size:
            raise ValueError("the expert family was set up for %d classes but y has %d (%s)"
                             % (self.n_classes, classes.size, ", ".join(map(str, classes.tolist()))))
        codes = encode_labels(y, classes)
        freq = np.bincount(codes[live], weights=np.asarray(w)[live], minlength=classes.size)
        return {"classes": classes, "class_freq": freq / freq.sum(), "n_classes": int(classes.size)}

    def encode_y(self, y, info, name="y"):
        return encode_labels(y, info["classes"], name)

    def decode_y(self, codes, info):
        return np.asarray(info["classes"])[np.asarray(codes)]

    def init_features(self, X, y):
        """Non-constant covariates and the one-hot class indicators."""
        cols = [X[:, j] for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0]
        _, codes = np.unique(np.asarray(y), return_inverse=True)
        onehot = np.eye(int(codes.max()) + 1)[codes]
        return np.column_stack(cols + [onehot]) if cols else onehot

    # ---- parameters ------------------------------------------------------------------
    def init_params(self, k, p, info):
        C = self.n_classes if self.n_classes is not None else info.get("n_classes")
        if C is None:
            raise ValueError("the multinomial expert family needs its number of classes: bind it to data "
                             "(MultinomialMoE does) or construct it with n_classes=C")
        return MultinomialParams(coef=jnp.zeros((k, int(C), p)))

    def n_free_params(self, k, p):
        if self.n_classes is None:
            raise ValueError("the multinomial expert family does not know its number of classes yet: "
                             "use MultinomialMoE, which sets it from the training labels")
        return k * (self.n_classes - 1) * p

    # ---- kernels ---------------------------------------------------------------------
    def log_density(self, params, X, y):
        lp = class_log_probs(params.coef, X)                                  # (k, C, N)
        # one-hot product instead of a gather: cheaper to compile and to differentiate twice
        onehot = jax.nn.one_hot(y, lp.shape[1], axis=0, dtype=lp.dtype)       # (C, N)
        return ksum(jnp.moveaxis(lp, 1, 0) * onehot[:, None, :])

    def m_step(self, params, tau, X, y, w, ctl, max_halvings, fixed):
        coef = multinomial_m_step(params.coef, tau, X, y, w, ctl, max_halvings, fixed.coef, self.newton_steps,
                                  self.max_abs_coef)
        return MultinomialParams(coef=coef)

    def mean(self, params, X):
        """(k, C, N) class probabilities of each expert."""
        return jnp.exp(class_log_probs(params.coef, X))

    def sample(self, key, params, X, z):
        lp = class_log_probs(params.coef, X)                                  # (k, C, N)
        lz = jnp.einsum("kn,kcn->cn", jax.nn.one_hot(z, lp.shape[0], axis=0, dtype=lp.dtype), lp)
        return jax.random.categorical(key, lz, axis=0)

    def sample_numpy(self, rng, params, X, z):
        """Class codes (n,) by the inverse CDF of one uniform per point (see :meth:`Expert.sample_numpy`)."""
        n = X.shape[0]
        probs = self.host_mean(params, X)                                      # (k, C, n)
        return inverse_cdf(probs[z, :, np.arange(n)].T, rng.random(n))

    def describe(self, params, names):
        """Rows (expert, "<class>:<term>", estimate) for the non-reference classes, in theta order."""
        c = np.asarray(params.coef)
        labels = [str(v) for v in (self.classes if self.classes is not None else range(c.shape[1]))]
        return [(i, "%s:%s" % (labels[s], names[j]), float(c[i, s, j]))
                for i in range(c.shape[0]) for s in range(1, c.shape[1]) for j in range(c.shape[2])]

    def atoms(self, params, intercept):
        """The free classes' slopes (flattened, ``slope``) and intercepts (``intercept``); class 0 is the reference."""
        coef = np.asarray(params.coef, dtype=np.float64)[:, 1:, :]                  # (k, C - 1, p)
        k = coef.shape[0]
        blocks = {}
        if coef.shape[2] > int(bool(intercept)):
            blocks["slope"] = coef[:, :, int(bool(intercept)):].reshape(k, -1)
        if intercept:
            blocks["intercept"] = coef[:, :, 0]
        return blocks

    def free_mask(self, params):
        m = np.ones(np.shape(params.coef), dtype=bool)
        m[:, 0, :] = False
        return MultinomialParams(coef=jnp.asarray(m))

    def _on_box(self, params) -> np.ndarray:
        """(k, C, p) booleans: coefficients on the box ``max_abs_coef`` (none without a box)."""
        c = np.abs(np.asarray(params.coef))
        if self.max_abs_coef is None:
            return np.zeros(c.shape, dtype=bool)
        return c >= (1.0 - 1e-9) * self.max_abs_coef

    def experts_on_box(self, params) -> np.ndarray:
        """(k,) booleans: experts with a coefficient on the box."""
        b = self._on_box(params)
        return b.reshape(b.shape[0], -1).any(axis=1)

    def at_bound(self, params, ctl):
        return MultinomialParams(coef=self._on_box(params))

    def feasible(self, params, ctl):
        if self.max_abs_coef is None:
            return True
        return bool(np.all(np.abs(np.asarray(params.coef)) <= self.max_abs_coef * (1 + 1e-12)))

    def degenerate(self, params, n_eff, info):
        """Experts carrying fewer effective points than they have free coefficients."""
        k, C, p = np.shape(params.coef)
        return np.asarray(n_eff) < max(2.0, (C - 1) * p)
