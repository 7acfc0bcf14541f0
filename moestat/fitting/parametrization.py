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


@stored_jit(static_argnames=("cfg", "masks"))
def _newton_state(params, data, cfg, masks):
    """theta = pack(params) and the log-likelihood, its gradient and Hessian in theta there."""
    theta = pack(cfg, params, masks.masks)
    ll, g, H = _grad_hess(theta, params, data, cfg, masks)
    return theta, ll, g, H


@stored_jit(static_argnames=("cfg", "masks"))
def _trial(theta, params, data, cfg, masks):
    """A Newton candidate: its log-likelihood, its gradient in theta and its parameters.

    The gradient (a few log-likelihood passes, against the ~P of a Hessian) lets the polish stop after an
    accepted step without the Hessian at the new point (:func:`newton_polish`).
    """
    f = lambda th: em.loglik(unpack(cfg, th, params, masks.masks), data, cfg)  # noqa: E731
    ll, g = jax.value_and_grad(f)(theta)
    return ll, g, unpack(cfg, theta, params, masks.masks)


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
            d = np.linalg.solve(L.T, np.linalg.solve(L, g))
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
                0.5 * float(gc @ np.linalg.solve(L.T, np.linalg.solve(L, gc))) < gtol:
            return params, llc, steps        # the decrement with the step's Hessian: nothing left to gain
        theta, ll, g, H = (np.asarray(a) for a in _newton_state(params, data, cfg, m))
        ll = float(ll)
    return params, ll, steps
