"""Gaussian gating (GLLiM form): g_i(x) = pi_i N(x | c_i, Gamma_i) / sum_j pi_j N(x | c_j, Gamma_j).

The gate is the posterior of a Gaussian mixture on the gate covariates, so the
MoE is the conditional of the joint model x ~ sum_i pi_i N(c_i, Gamma_i),
y | x, z=i ~ expert i (``theory.md`` §4.4).  moestat fits it by the joint EM
of that model: the E-step terms are log pi_i + log N(x | c_i, Gamma_i)
(:attr:`Gate.joint` = True), every M-step is closed form, and **the reported
log-likelihood is the joint log-likelihood of (x, y)**, not the conditional one of
y given x (the two differ by the log density of x).

The gate works on the raw gate covariates: the model drops the intercept
column for it (:attr:`uses_intercept` = False).

Parameters ``GaussianGateParams(weight (k,), mean (k, d), cov (k, d, d))``:
mixing weights pi on the simplex, centres c_i and covariances Gamma_i (diagonal
ones stored as diagonal matrices).  For the Newton polish and standard errors
they are unconstrained as log(pi_i / pi_0), c_i and the log-Cholesky factor of
Gamma_i.

Covariance floor: Gamma_i is constrained to Gamma_i >= floor * D, where D is the
diagonal of the weighted covariance of all gate covariates (a fixed,
data-determined matrix), so the likelihood stays bounded.  The M-step is the
exact constrained maximiser: clipped eigenvalues of D^-1/2 S_i D^-1/2 (full) or
clipped variances (diagonal).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._math import klog_softmax
from ..fitting.wls import constrained_wls
from .base import Gate, register

LOG2PI = math.log(2.0 * math.pi)
COVARIANCES = ("full", "diagonal")


class GaussianGateParams(NamedTuple):
    weight: jnp.ndarray  # (k,) mixing weights pi (sum to one)
    mean: jnp.ndarray    # (k, d) centres c_i
    cov: jnp.ndarray     # (k, d, d) covariances Gamma_i


# ------------------------------------------------------------------ simplex helpers (also used by SharedRouted)

def simplex_unconstrain(p):
    """log(p_i / p_0): unconstrained coordinates of a probability vector (entry 0 is always 0)."""
    lp = jnp.log(p)
    return lp - lp[..., :1]


def simplex_constrain(u):
    """Inverse of :func:`simplex_unconstrain`: softmax."""
    return jax.nn.softmax(u, axis=-1)


def simplex_m_step(old, counts, fixed):
    """argmax_p sum_i counts_i log p_i over the simplex, entries marked ``fixed`` held at ``old``.

    The free entries share the mass left by the fixed ones in proportion to
    their counts (exact); without any count they keep their old proportions.
    """
    free = jnp.logical_not(fixed)
    left = jnp.maximum(1.0 - jnp.sum(jnp.where(fixed, old, 0.0)), 0.0)
    cf = jnp.where(free, counts, 0.0)
    tot = jnp.sum(cf)
    oldf = jnp.where(free, old, 0.0)
    share = jnp.where(tot > 0, cf / jnp.where(tot > 0, tot, 1.0), oldf / jnp.maximum(jnp.sum(oldf), 1e-300))
    return jnp.where(free, left * share, old)


# ------------------------------------------------------------------ Gaussian kernels

def gaussian_log_pdf(Xg, mean, cov):
    """(k, N) log N(x_n | c_i, Gamma_i); Xg (d, N), mean (k, d), cov (k, d, d)."""
    L = jnp.linalg.cholesky(cov)                                            # (k, d, d)
    diff = Xg[None] - mean[:, :, None]                                      # (k, d, N)
    z = jax.scipy.linalg.solve_triangular(L, diff, lower=True)              # (k, d, N)
    d = Xg.shape[0]
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=1, axis2=2)), axis=1)
    quad = z[:, 0] ** 2
    for j in range(1, d):
        quad = quad + z[:, j] ** 2
    return -0.5 * (d * LOG2PI + logdet)[:, None] - 0.5 * quad


def floor_cov(S, D, floor, diagonal: bool):
    """The maximiser of -log|G| - tr(G^-1 S) over {G >= floor * D} (D diagonal (d,), S (k, d, d))."""
    if diagonal:
        v = jnp.maximum(jnp.diagonal(S, axis1=1, axis2=2), floor * D[None])
        return jax.vmap(jnp.diag)(v)
    r = jnp.sqrt(D)
    Sn = S / (r[None, :, None] * r[None, None, :])
    Sn = 0.5 * (Sn + jnp.swapaxes(Sn, 1, 2))
    lam, V = jnp.linalg.eigh(Sn)
    G = jnp.einsum("kij,kj,klj->kil", V, jnp.maximum(lam, floor), V)
    G = G * (r[None, :, None] * r[None, None, :])
    return 0.5 * (G + jnp.swapaxes(G, 1, 2))


@register
@dataclass(frozen=True)
class GaussianGate(Gate):
    """Gaussian (GLLiM) gating, fitted by the joint EM of (x, y) (see the module docstring).

    Parameters
    ----------
    covariance : "full" or "diagonal"
        Form of the gate covariances Gamma_i.
    cov_floor : float
        Relative floor: Gamma_i >= cov_floor * diag(weighted covariance of x).

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> rng = np.random.default_rng(1); z = rng.random(1500) < 0.4
    >>> x = np.where(z, rng.normal(-1, 0.3, 1500), rng.normal(1, 0.5, 1500))
    >>> y = np.where(z, 1 + 2 * x, -x) + 0.1 * rng.standard_normal(1500)
    >>> res = ms.GaussianMoE(2, gating="gaussian").fit(x, y, n_init=2)
    >>> sorted(np.round(res.params_tree.gate.weight, 1).tolist())
    [0.4, 0.6]
    """

    name: ClassVar[str] = "gaussian"
    joint: ClassVar[bool] = True
    uses_intercept: ClassVar[bool] = False
    summary_title: ClassVar[str] = "Gate (Gaussian: weight, mean and covariance of the gate covariates)"
    covariance: str = "full"
    cov_floor: float = 1e-8

    def __post_init__(self):
        if self.covariance not in COVARIANCES:
            raise ValueError("covariance must be one of %s, got %r" % (", ".join(map(repr, COVARIANCES)),
                                                                       self.covariance))
        if isinstance(self.cov_floor, bool) or not isinstance(self.cov_floor, numbers.Real) \
                or not (math.isfinite(self.cov_floor) and self.cov_floor > 0):
            raise ValueError("cov_floor must be a finite number > 0, got %r" % (self.cov_floor,))

    @property
    def diagonal(self) -> bool:
        return self.covariance == "diagonal"

    def validate(self, k, pg):
        if pg < 1:
            raise ValueError("the gaussian gate needs at least one gate covariate (the intercept is not used)")

    # ---- parameters ------------------------------------------------------------------
    def init_params(self, k, pg):
        return GaussianGateParams(weight=jnp.full((k,), 1.0 / k), mean=jnp.zeros((k, pg)),
                                  cov=jnp.broadcast_to(jnp.eye(pg), (k, pg, pg)))

    def n_free_params(self, k, pg):
        per_cov = pg if self.diagonal else pg * (pg + 1) // 2
        return (k - 1) + k * pg + k * per_cov

    def unconstrain(self, params):
        L = jnp.linalg.cholesky(params.cov)
        d = jnp.diagonal(L, axis1=-2, axis2=-1)
        eye = jnp.eye(L.shape[-1], dtype=bool)
        Lu = jnp.where(eye, jnp.log(d)[..., None, :], L)
        return GaussianGateParams(weight=simplex_unconstrain(params.weight), mean=params.mean, cov=Lu)

    def constrain(self, u):
        eye = jnp.eye(u.cov.shape[-1], dtype=bool)
        tril = jnp.tril(jnp.ones(u.cov.shape[-2:], dtype=bool))
        L = jnp.where(eye, jnp.exp(u.cov), jnp.where(tril, u.cov, 0.0))
        return GaussianGateParams(weight=simplex_constrain(u.weight), mean=u.mean,
                                  cov=L @ jnp.swapaxes(L, -1, -2))

    def near_truth(self, true, base, s, s_blocks, rng, sd, sd_v):
        """As the AISTATS'24 code (``theory.md`` §4.4): pi*_j split equally among the copies of true atom j,
        centres + one N(0, sd^2) draw per atom, covariance diagonals + one |N(0, sd_v^2)|."""
        w = np.asarray(true.weight, dtype=np.float64)
        mean = np.asarray(true.mean, dtype=np.float64)[s]
        cov = np.asarray(true.cov, dtype=np.float64)[s].copy()
        d = mean.shape[1]
        mean = mean + rng.normal(0.0, sd, size=(s.size, 1))
        cov = cov + np.abs(rng.normal(0.0, sd_v, size=(s.size, 1, 1))) * np.eye(d)[None]
        weight = w[s] / np.bincount(s, minlength=w.size)[s]
        return type(true)(weight=weight / weight.sum(), mean=mean, cov=cov)

    def atoms(self, params, intercept):
        """Mass pi_i, ``loc`` c_i, ``scale`` the covariance's upper triangle (diagonal covariances: the diagonal)."""
        cov = np.asarray(params.cov, dtype=np.float64)
        d = cov.shape[-1]
        off = np.abs(cov - np.eye(d)[None] * cov).max() if d > 1 else 0.0
        iu = np.diag_indices(d) if off == 0.0 else np.triu_indices(d)
        scale = cov[:, iu[0], iu[1]]
        return (np.asarray(params.weight, dtype=np.float64), {"loc": np.asarray(params.mean, dtype=np.float64),
                                                              "scale": scale}, "gaussian")

    def free_mask(self, params):
        k, d = np.shape(params.mean)
        cov = np.eye(d, dtype=bool) if self.diagonal else np.tril(np.ones((d, d), dtype=bool))
        return GaussianGateParams(weight=jnp.asarray(np.arange(k) > 0), mean=jnp.ones((k, d), bool),
                                  cov=jnp.asarray(np.broadcast_to(cov, (k, d, d))))

    # ---- kernels ---------------------------------------------------------------------
    def e_step_terms(self, params, Xg):
        return jnp.log(params.weight)[:, None] + gaussian_log_pdf(Xg, params.mean, params.cov)

    def log_weights(self, params, Xg):
        return klog_softmax(self.e_step_terms(params, Xg))

    def m_step(self, params, tau, Xg, w, ctl, max_halvings, fixed, log_w=None):
        """Closed-form joint-EM update: pi, then the centres (given the old Gamma when some are fixed), then Gamma.

        ``log_w`` (the E-step terms) is not needed: every update is closed form.
        """
        k, d = params.mean.shape
        N = Xg.shape[1]
        W = jnp.sum(w)
        m0 = (Xg @ w) / W                                                   # centre the data for precision
        Xc = Xg - m0[:, None]
        D = jnp.maximum(((Xc * Xc) @ w) / W, 1e-300)                        # fixed scale of the floor
        r = tau * w
        Nk = r @ jnp.ones(N, dtype=r.dtype)
        alive = Nk > 1e-10 * W
        safe = jnp.where(alive, Nk, 1.0)
        weight = simplex_m_step(params.weight, Nk / W, fixed.weight)
        xbar = (r @ Xc.T) / safe[:, None]                                   # (k, d) centred weighted means
        # ECM: free centre coordinates maximise the Gaussian term given the old Gamma and the fixed ones
        P = jnp.linalg.inv(params.cov)
        delta = constrained_wls(P, jnp.zeros((k, d)), params.mean - m0[None] - xbar, fixed.mean)
        mean = jnp.where(fixed.mean, params.mean, xbar + delta + m0[None])   # fixed entries exactly as given
        M2 = ((r[:, None, :] * Xc[None]).reshape(k * d, N) @ Xc.T).reshape(k, d, d) / safe[:, None, None]
        S = M2 - xbar[:, :, None] * xbar[:, None, :] + delta[:, :, None] * delta[:, None, :]
        cov = floor_cov(S, D, self.cov_floor, self.diagonal)
        keep_cov = jnp.any(fixed.cov, axis=(1, 2)) | jnp.logical_not(alive)
        cov = jnp.where(keep_cov[:, None, None], params.cov, cov)
        mean = jnp.where(alive[:, None], mean, params.mean)
        return GaussianGateParams(weight=weight, mean=mean, cov=cov)

    # ---- presentation ----------------------------------------------------------------
    def describe(self, params, names):
        pi, c, G = (np.asarray(a) for a in params)
        rows = []
        for i in range(pi.shape[0]):
            rows.append((i, "weight", float(pi[i])))
            rows += [(i, "mean[%s]" % names[j], float(c[i, j])) for j in range(c.shape[1])]
            rows += [(i, "var[%s]" % names[j], float(G[i, j, j])) for j in range(c.shape[1])]
            if not self.diagonal:
                rows += [(i, "cov[%s,%s]" % (names[a], names[b]), float(G[i, a, b]))
                         for a in range(c.shape[1]) for b in range(a)]
        return rows

    def sample_x(self, params, n: int, rng: np.random.Generator):
        """Draw n gate covariates from the mixture sum_i pi_i N(c_i, Gamma_i): (x (n, d), z (n,)).

        NumPy streams (stable across JAX versions), the signature that
        :func:`moestat.sampling.simulate_data` calls for joint gates.
        """
        pi, c, G = (np.asarray(a, dtype=np.float64) for a in params)
        z = rng.choice(pi.shape[0], size=int(n), p=pi / pi.sum())
        L = np.linalg.cholesky(G)
        e = rng.standard_normal((int(n), c.shape[1]))
        return c[z] + np.einsum("nij,nj->ni", L[z], e), z

    # ---- inference (moestat.inference) -----------------------------------------------
    def report(self, params):
        """The estimates :meth:`describe` lists, in its order (JAX-traceable)."""
        k, d = params.mean.shape
        rows = np.arange(d)
        parts = [params.weight[:, None], params.mean, params.cov[:, rows, rows]]
        if not self.diagonal:
            a, b = np.tril_indices(d, -1)       # row-major: the order of describe()
            parts.append(params.cov[:, a, b])
        return jnp.concatenate(parts, axis=1).ravel()
