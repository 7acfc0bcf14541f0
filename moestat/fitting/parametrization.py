"""The identified, unconstrained parameter vector of a model, and the Newton polish.

Every family maps its parameter PyTree to an *unconstrained* PyTree
(``unconstrain``: e.g. variances to log-variances) and marks its identified
entries (``free_mask``: e.g. not the softmax reference row).  Packing the
free, non-fixed entries of the unconstrained leaves gives the vector theta
that :func:`newton_polish` and the observed-information standard errors
(:mod:`moestat.inference`) work with.  At a maximum the observed information
transforms by the Jacobian, so standard errors of natural parameters (sigma,
sigma^2) follow by the delta method from this one parametrisation.
"""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import em
from .programs import stored_jit


def free_masks(cfg: em.EMConfig, params: em.MoEParams, fixed: em.MoEParams) -> em.MoEParams:
    """Host boolean masks of the entries in theta: identified and not fixed by the user."""
    free = em.MoEParams(gate=cfg.gate.free_mask(params.gate), expert=cfg.expert.free_mask(params.expert))
    return jax.tree_util.tree_map(lambda m, f: np.asarray(m) & ~np.asarray(f), free, fixed)


def unconstrain(cfg: em.EMConfig, params: em.MoEParams) -> em.MoEParams:
    return em.MoEParams(gate=cfg.gate.unconstrain(params.gate), expert=cfg.expert.unconstrain(params.expert))


def constrain(cfg: em.EMConfig, u: em.MoEParams) -> em.MoEParams:
    return em.MoEParams(gate=cfg.gate.constrain(u.gate), expert=cfg.expert.constrain(u.expert))


def pack(cfg, params, masks):
    """theta: the masked entries of the unconstrained leaves, concatenated."""
    u = unconstrain(cfg, params)
    leaves = jax.tree_util.tree_leaves(u)
    mleaves = jax.tree_util.tree_leaves(masks)
    return jnp.concatenate([jnp.ravel(a)[np.flatnonzero(np.ravel(m))] for a, m in zip(leaves, mleaves)])


def unpack(cfg, theta, params, masks):
    """Parameters with the masked entries replaced from theta (others kept from ``params``)."""
    u = unconstrain(cfg, params)
    leaves, tree = jax.tree_util.tree_flatten(u)
    mleaves = jax.tree_util.tree_leaves(masks)
    out, pos = [], 0
    for a, m in zip(leaves, mleaves):
        idx = np.flatnonzero(np.ravel(m))
        flat = jnp.ravel(a).at[idx].set(theta[pos:pos + idx.size])
        out.append(flat.reshape(jnp.shape(a)))
        pos += idx.size
    return constrain(cfg, jax.tree_util.tree_unflatten(tree, out))


class _Masks:
    """Hashable wrapper so that masks can be a static jit argument."""

    def __init__(self, masks):
        self.masks = jax.tree_util.tree_map(np.asarray, masks)
        leaves, tree = jax.tree_util.tree_flatten(self.masks)
        self._key = (tree, tuple((m.shape, m.tobytes()) for m in leaves))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Masks) and self._key == other._key

    def __repr__(self):
        return "_Masks(%s, %r)" % (self._key[0], self._key[1])


@partial(jax.jit, static_argnames=("cfg", "masks"))
def _grad_hess(theta, params, data, cfg, masks):
    f = lambda th: em.loglik(unpack(cfg, th, params, masks.masks), data, cfg)
    return f(theta), jax.grad(f)(theta), jax.hessian(f)(theta)


def loglik_derivatives(cfg, params, data, fixed):
    """theta, log-likelihood, gradient and Hessian in theta at ``params`` (host arrays)."""
    m = _Masks(free_masks(cfg, params, fixed))
    theta = pack(cfg, params, m.masks)
    ll, g, H = _grad_hess(theta, params, data, cfg, m)
    return np.asarray(theta), float(ll), np.asarray(g), np.asarray(H)


def _predictor_form(cfg, data) -> bool:
    """Whether the model is the softmax gate with linear Gaussian experts on ungrouped data.

    Its log-likelihood depends on the parameters only through 3k per-point predictors (the gate scores
    B_g x_g, the means B_e x and the log-variances), which :func:`_softmax_gaussian_derivatives` uses.
    """
    return bool(cfg.gate.softmax_scores and cfg.expert.linear_gaussian and data.groups is None)


def _softmax_gaussian_derivatives(params, data, cfg, masks):
    """Log-likelihood, gradient and Hessian in theta of the softmax-gated linear Gaussian MoE, exactly.

    The per-point log-likelihood is a function of z_n = (eta_n, mu_n, s_n) in R^{3k} (gate scores
    eta = B_g x_g, means mu = B_e x, log-variances s), each linear in the parameters with the design
    x_g, x or 1.  So H = sum_n w_n J_n' (d2 l_n / dz dz') J_n is the (3k x 3k) per-point Hessian in z
    contracted with pairwise products of the designs: one pass over the data and a few small matrix
    products, instead of one pass per parameter (n = 1e5, k = 3, d = 2: 0.12 s against 0.36 s for
    ``jax.hessian`` in theta, ``benchmarks/README.md``).  Entries ordered as :func:`pack` (gate coefficients, expert coefficients,
    log-variances, row-major; the masked ones kept).
    """
    k = cfg.k
    Xg, X, y, w = data.Xg, data.X, data.y, data.w
    N = y.shape[0]
    # closed forms (tau: responsibilities, g: gate probabilities, a = r e^-s, b = (r^2 e^-s - 1) / 2):
    # d2 l / dz dz' = D - v v' + g g' - diag(g) (the last two on the eta block only), v = (tau, tau a, tau b),
    # D block-diagonal over experts j in (eta_j, mu_j, s_j)
    eta = params.gate.coef @ Xg                                                                 # (k, N)
    lv = jnp.log(params.expert.sigma2)[:, None]                                                 # (k, 1)
    log_g = eta - jax.nn.logsumexp(eta, axis=0)[None]
    prec = jnp.exp(-lv)
    r = y[None] - params.expert.coef @ X
    L = log_g - 0.5 * (math.log(2.0 * math.pi) + lv) - 0.5 * prec * r ** 2
    val = jax.nn.logsumexp(L, axis=0)
    tau, g = jnp.exp(L - val[None]), jnp.exp(log_g)
    a = r * prec
    b = 0.5 * (r * a - 1.0)
    v = jnp.concatenate([tau, tau * a, tau * b], axis=0)                                       # (3k, N)
    grad = v.at[:k].add(-g)
    D = jnp.stack([jnp.stack([tau, tau * a, tau * b]),
                   jnp.stack([tau * a, tau * (a * a - prec), tau * a * (b - 1.0)]),
                   jnp.stack([tau * b, tau * a * (b - 1.0), tau * (b * b - b - 0.5)])])       # (3, 3, k, N)
    eye = jnp.eye(k, dtype=y.dtype)
    hess = jnp.einsum("abjn,jl->ajbln", D, eye).reshape(3 * k, 3 * k, N) - v[:, None] * v[None]
    hess = hess.at[:k, :k].add(g[:, None] * g[None] - eye[:, :, None] * g[None])
    live = w > 0
    val = jnp.where(live, val, 0.0)
    grad = jnp.where(live[None], grad, 0.0) * w[None]
    hess = jnp.where(live[None, None], hess, 0.0) * w[None, None]
    designs = (Xg, X, jnp.ones((1, N), y.dtype))
    gblocks = [grad[a * k:(a + 1) * k] @ designs[a].T for a in range(3)]                   # (k, q_a)
    g_all = jnp.concatenate([b.ravel() for b in gblocks])
    blocks = {}
    for a in range(3):
        for b in range(a, 3):                  # the Hessian is symmetric: block (b, a) is block (a, b)'
            Da, Db = designs[a], designs[b]
            qa, qb = Da.shape[0], Db.shape[0]
            prod = (Da[:, None, :] * Db[None, :, :]).reshape(qa * qb, N)                    # (qa qb, N)
            h = hess[a * k:(a + 1) * k, b * k:(b + 1) * k].reshape(k * k, N)                 # (k k, N)
            blocks[a, b] = (h @ prod.T).reshape(k, k, qa, qb).transpose(0, 2, 1, 3).reshape(k * qa, k * qb)
            blocks[b, a] = blocks[a, b].T
    H_all = jnp.concatenate([jnp.concatenate([blocks[a, b] for b in range(3)], axis=1) for a in range(3)], axis=0)
    idx = np.flatnonzero(np.concatenate([np.ravel(m) for m in jax.tree_util.tree_leaves(masks.masks)]))
    return jnp.dot(val, w), g_all[idx], H_all[np.ix_(idx, idx)]


@stored_jit(static_argnames=("cfg", "masks"))
def _newton_state(params, data, cfg, masks):
    """theta = pack(params) and the log-likelihood, its gradient and Hessian in theta there.

    The softmax-gated linear Gaussian MoE (the default ``GaussianMoE``) takes the exact predictor-form
    derivatives (:func:`_softmax_gaussian_derivatives`); every other model ``jax.hessian`` in theta.
    """
    theta = pack(cfg, params, masks.masks)
    if _predictor_form(cfg, data):
        ll, g, H = _softmax_gaussian_derivatives(params, data, cfg, masks)
    else:
        ll, g, H = _grad_hess(theta, params, data, cfg, masks)
    return theta, ll, g, H


@stored_jit(static_argnames=("cfg", "masks"))
def _trial(theta, params, data, cfg, masks):
    """A Newton candidate: its log-likelihood, its gradient in theta and its parameters.

    The gradient (a few log-likelihood passes, against the ~P of a Hessian) lets the polish stop after an
    accepted step without the Hessian at the new point (:func:`newton_polish`).
    """
    def f(th):
        cand = unpack(cfg, th, params, masks.masks)
        return em.loglik(cand, data, cfg), cand

    (ll, cand), g = jax.value_and_grad(f, has_aux=True)(theta)
    return ll, g, cand


def _cholesky_solve(L, v):
    """(L L')^-1 v for the lower Cholesky factor L of a Newton system."""
    return np.linalg.solve(L.T, np.linalg.solve(L, v))


def newton_polish(cfg, params, data, fixed, ctl, max_steps: int = 30, gtol: float = 1e-9, free=None):
    """Levenberg-damped Newton ascent on the observed log-likelihood from an EM solution.

    Each accepted step increases the log-likelihood (monotone, like EM) and
    respects the family's bounds (entries on a bound, e.g. a variance at its
    floor, are held fixed; candidates leaving the feasible set are rejected).
    The loop stops when the Newton decrement g' H^-1 g / 2 falls below ``gtol``
    (about the log-likelihood still to gain) or nothing improves; after an
    accepted step the decrement is first taken with the new gradient and the
    Hessian of the step (the system just factorised), and the Hessian at the
    new point is computed only when that estimate is not below ``gtol`` (from
    an EM solution one step usually ends the polish, and the second Hessian
    was a third of its time at n = 1e5).  Two compiled
    programs per model shape do the work on the data (the state at a point, a
    candidate's log-likelihood); the small Levenberg systems are solved on the
    host.  ``free`` : the identified entries (``free_mask``), when already
    known.  Returns (params, loglik, steps_taken).
    """
    params = jax.tree_util.tree_map(np.asarray, params)
    bound = em.MoEParams(gate=jax.tree_util.tree_map(lambda a: np.zeros(np.shape(a), bool), params.gate),
                         expert=cfg.expert.at_bound(params.expert, ctl))
    fixed = jax.tree_util.tree_map(lambda f, b: np.asarray(f) | np.asarray(b), fixed, bound)
    if free is None:
        m = _Masks(free_masks(cfg, params, fixed))
    else:
        m = _Masks(jax.tree_util.tree_map(lambda a, f: np.asarray(a) & ~f, free, fixed))
    theta, ll, g, H = (np.asarray(a) for a in _newton_state(params, data, cfg, m))
    ll = float(ll)
    if not np.isfinite(ll) or theta.size == 0:
        return params, ll, 0
    steps = 0
    lam = 0.0
    for _ in range(max_steps):
        negH = -(H + H.T) / 2
        scale = max(np.abs(np.diag(negH)).mean(), 1e-300)
        accepted = False
        for _try in range(12):
            try:
                L = np.linalg.cholesky(negH + lam * scale * np.eye(theta.size))
            except np.linalg.LinAlgError:
                lam = max(lam * 10, 1e-8)
                continue
            d = _cholesky_solve(L, g)
            decrement = 0.5 * float(g @ d)
            if decrement < gtol:
                return params, ll, steps
            llc, gc, cand = _trial(theta + d, params, data, cfg, m)
            llc = float(llc)
            cand = jax.tree_util.tree_map(np.asarray, cand)
            ok = np.isfinite(llc) and llc > ll
            if ok and not cfg.expert.feasible(cand.expert, ctl):
                ok = False
            if ok:
                params, accepted, undamped = cand, True, lam == 0.0
                lam = lam / 10 if lam > 1e-8 else 0.0
                break
            lam = max(lam * 10, 1e-6)
        if not accepted:
            break
        steps += 1
        gc = np.asarray(gc)
        if undamped and np.all(np.isfinite(gc)) and \
                0.5 * float(gc @ _cholesky_solve(L, gc)) < gtol:
            return params, llc, steps        # the decrement with the step's Hessian: nothing left to gain
        theta, ll, g, H = (np.asarray(a) for a in _newton_state(params, data, cfg, m))
        ll = float(ll)
    return params, ll, steps
