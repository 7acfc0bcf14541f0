"""Top-K sparse softmax gating: softmax over the K largest linear scores, -inf (weight 0) elsewhere.

Definition [TXT] (DeepSeekMoE paper, arXiv:2505.10860, App. F eq. 45, read in
the ar5iv full text; ``theory.md`` §2.1; the same gate as Nguyen, Akbarian, Yan
& Ho, ICLR 2024, arXiv:2309.13850, whose abstract [ABS] was checked):

    g_i(x) = softmax_i(TopK(beta_1' x, K; beta_0)),
    TopK(v, K; u)_i = v_i + u_i if v_i is among the K largest of v, -inf otherwise.

In the paper the experts are *selected* on the slopes v = beta_1' x and the
intercepts are added afterwards (``select="slopes"``).  moestat's default,
``select="scores"``, selects on the whole linear score beta_1' x + beta_0 (the
usual KeepTopK(x W) router of Shazeer et al. 2017, and what "softmax over the
top-K linear scores" says); both are translation invariant, so expert 0 is the
reference (its row is 0).  Ties are broken towards the lower expert index, so
exactly K experts are active at every point.  ``K = k`` is the softmax gate.

Inactive experts have log weight -inf.  This never produces NaN: the E-step's
log-sum-exp runs over the active experts only (-inf terms contribute exp(-inf)
= 0), the responsibilities of inactive experts are exactly 0, and every
weighted sum skips the products 0 * (-inf).

EM and monotonicity.  The active sets move with the parameters, so the gate's
M-step objective Q(B) = sum_n w_n sum_i tau_in log g_i(x_n; B) is piecewise
smooth and equals -inf as soon as an expert carrying responsibility at some
point leaves that point's active set.  The M-step therefore

1. takes a Newton direction for Q restricted to the *current* active sets
   (the restricted problem is a softmax over each point's active experts, so
   :func:`moestat.fitting.newton.softmax_newton_stats` with the top-K weights gives
   its exact gradient and curvature), and
2. guards it on the *exact* top-K objective Q (step halving; a candidate is
   accepted only if Q does not decrease, so candidates that drop a
   responsible expert are rejected): a GEM step, hence EM never lowers the
   log-likelihood.

Because an expert with responsibility can never leave a point's active set in
such a step, plain EM keeps the routing pattern it starts from.  The gate
therefore also provides :meth:`TopK.observed_step`, which the EM loop calls
after the M-steps: moves that *can* re-route points, judged on the exact
observed top-K log-likelihood (experts held) and accepted only if it does not
decrease -- one Newton step of the dense-softmax gate towards the dense
posterior (responsibilities under softmax weights with the same coefficients),
with step halving, then a Newton step of the observed log-likelihood on the
current routing cells (the M-step's direction, which that step can only take
while no point changes its active set, so on large samples EM stalled a few
iterations in without it), then the same
Newton step restricted to the moves that keep every routing boundary (see
below), then a coordinate pattern search (steps +-{3, 1, 0.3, 0.1, 0.03,
0.01, 0.003, 0.001} x (1 + |b|) on each free coefficient b, the best kept).
EM stays monotone, and fits leave their starting routing.

Boundary-preserving step.  The top-K weights jump on the hyperplanes where
the K-th and (K+1)-th ranked experts i, j swap, {x: (b_i - b_j)' x = 0}, so
the log-likelihood has kinks (ridges) along every move that shifts such a
hyperplane, and a Newton direction with any component across a ridge is
halved to nothing by the guard: EM stopped where the boundaries were right
but the smooth part of the gate was not (e.g. the whole gate 1.3x too steep:
scaling every b keeps all boundaries).  The step therefore also solves the
Newton system in the subspace of moves d with d_i - d_j parallel to
b_i - b_j for every pair that swaps at some live point (the moves that keep
those hyperplanes, a null space of at most (k - 1) pg dimensions found by an
eigendecomposition), where the likelihood is smooth; the pattern search's
finer steps then move single boundaries across the few points that decide
them.  What these moves gain is measured in ``benchmarks/README.md``
("Top-K observed-likelihood moves", ``benchmarks/bench_topk_search.py``).
The likelihood jumps where the routing changes and has local maxima that no
local method escapes, so use several starts (or the paper's near-truth
protocol).  The moves cost about 16 (k - 1) pg + 15
log-likelihood evaluations per iteration; ``search=False`` turns them off.

When Q is -inf at the current coefficients (starting values built from
responsibilities that were not computed by this gate), the M-step takes
the dense softmax step instead.

Limits: with K = 1 the weights are 0 or 1, the log-likelihood is piecewise
constant in the gate coefficients and only the routing partition (the
direction of the coefficients, not their scale) is identified; the gate
coefficients then have no standard errors.  The fit is a local maximum of a
likelihood that jumps where the routing changes; use several starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
from jax import lax

from ..fitting import newton
from .._math import klog_softmax, klogsumexp, ksum
from .base import Gate, register
from .softmax import SoftmaxCoefficients, SoftmaxParams

SELECT = ("scores", "slopes")


def topk_mask(v, K: int):
    """(k, N) booleans: the K largest entries of each column of v (ties to the lower index)."""
    k = v.shape[0]
    if K >= k:
        return jnp.ones(v.shape, dtype=bool)
    rows = []
    for i in range(k):
        rank = jnp.zeros(v.shape[1:], dtype=jnp.int32)
        for j in range(k):
            if j != i:
                beats = v[j] >= v[i] if j < i else v[j] > v[i]
                rank = rank + beats.astype(jnp.int32)
        rows.append(rank < K)
    return jnp.stack(rows)


def masked_log_softmax(eta, active):
    """(k, N) log softmax of the scores ``eta`` over the ``active`` experts of each point; -inf elsewhere."""
    lse = klogsumexp(jnp.where(active, eta, -jnp.inf))
    return jnp.where(active, eta - lse[None], -jnp.inf)


def topk_log_weights(coef, Xg, K: int, select: str):
    """(k, N) log top-K softmax weights; -inf for inactive experts."""
    eta = coef @ Xg
    v = eta if select == "scores" else eta - coef[:, :1] * Xg[:1]
    return masked_log_softmax(eta, topk_mask(v, K))


def weighted_sum(terms, w):
    """sum_n w_n terms_n, skipping points with w_n = 0 (where terms may be -inf)."""
    return jnp.sum(jnp.where(w > 0, terms * w, 0.0))


def soft_label_sum(tau, logw):
    """(N,) sum_i tau_i log w_i with 0 * (-inf) = 0 (and tau_i > 0 at -inf giving -inf)."""
    return ksum(jnp.where(tau > 0, tau * logw, 0.0))


@register
@dataclass(frozen=True)
class TopK(SoftmaxCoefficients, Gate):
    """Top-K sparse softmax gating (``k`` = K active experts per point).

    Parameters
    ----------
    k : int
        K, the number of active experts at every point (1 <= K <= number of experts).
    select : "scores" (default) or "slopes"
        Rank the experts on the full linear score beta_1' x + beta_0, or, as
        in the paper's eq. 45, on the slopes beta_1' x only (needs a gate intercept).
    newton_steps : int
        Guarded Newton steps per EM iteration.
    search : bool
        Run the re-routing proposal :meth:`observed_step` after each M-step.

    Examples
    --------
    >>> import moestat as ms
    >>> ms.gating.TopK(k=2).n_free_params(3, 2)
    4
    """

    name = "topk"
    summary_title: ClassVar[str] = "Gate (top-K softmax: log-odds against expert 1 where both are active)"
    translation_invariant: ClassVar[bool] = True
    moves_on_observed: ClassVar[bool] = True
    k: int = 2
    select: str = "scores"
    newton_steps: int = 1
    search: bool = True

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)):
            raise TypeError("topk: k (the number of active experts K) must be an integer, got %r" % (self.k,))
        if self.k < 1:
            raise ValueError("topk: K must satisfy 1 <= K <= number of experts, got K=%d" % self.k)
        if self.select not in SELECT:
            raise ValueError("topk: select must be one of %s, got %r" % (", ".join(map(repr, SELECT)), self.select))
        if isinstance(self.newton_steps, bool) or not isinstance(self.newton_steps, (int, np.integer)) \
                or self.newton_steps < 1:
            raise ValueError("topk: newton_steps must be a positive integer, got %r" % (self.newton_steps,))
        object.__setattr__(self, "k", int(self.k))

    def validate(self, k, pg):
        if not 1 <= self.k <= k:
            raise ValueError("topk: K must satisfy 1 <= K <= number of experts, got K=%d with %d experts"
                             % (self.k, k))

    def validate_design(self, names, intercept):
        if self.select == "slopes" and not intercept:
            raise ValueError("topk: select='slopes' ranks experts on the slopes beta_1' x and needs a gate "
                             "intercept in column 0; fit with gate_intercept=True or use select='scores'")

    def log_weights(self, params, Xg):
        return topk_log_weights(params.coef, Xg, self.k, self.select)

    def objective(self, coef, tau, Xg, w):
        """The exact top-K M-step objective sum_n w_n sum_i tau_in log g_i(x_n) (-inf allowed)."""
        return weighted_sum(soft_label_sum(tau, self.log_weights(SoftmaxParams(coef), Xg)), w)

    def m_step(self, params, tau, Xg, w, ctl, max_halvings, fixed, log_w=None):
        coef = params.coef
        free = jnp.logical_not(fixed.coef)
        head = coef[:1]

        def full(th):
            return jnp.concatenate([head, th], axis=0)

        def objective(th):
            return self.objective(full(th), tau, Xg, w)

        def stats(th):
            pi = jnp.exp(self.log_weights(SoftmaxParams(full(th)), Xg))
            grad, negH = newton.softmax_newton_stats(pi, tau, w, Xg)
            grad, negH = newton.mask_newton(grad, negH, free[1:])
            return grad, negH, objective(th)

        def restricted(_):
            th, _ = newton.newton_ascent(coef[1:], objective, stats, ctl, max_halvings, self.newton_steps)
            return full(th)

        def dense(_):
            return newton.softmax_step(coef, tau, Xg, w, ctl, max_halvings, free, self.newton_steps)

        finite = jnp.isfinite(self.objective(coef, tau, Xg, w))
        return SoftmaxParams(coef=lax.cond(finite, restricted, dense, None))

    def observed_step(self, params, data, cfg, ctl, max_halvings, fixed_gate):
        """Re-routing moves judged on the exact observed log-likelihood (never lowers it).

        params : MoEParams after the M-steps; returns MoEParams with possibly new gate coefficients.
        Four moves, each accepted only if the log-likelihood (experts held) does not decrease:
        a dense-softmax Newton step towards the dense posterior, a Newton step of the observed
        log-likelihood on the current routing cells, the same step restricted to moves that keep
        every routing boundary, then a pattern search that tries +-{3, 1, 0.3, 0.1, 0.03, 0.01,
        0.003, 0.001} (1 + |b|) on every free coefficient b and keeps the best.
        """
        if not self.search or self.k >= params.gate.coef.shape[0]:
            return params
        coef, Xg, w = params.gate.coef, data.Xg, data.w
        free = jnp.logical_not(fixed_gate.coef)[1:]
        logf = cfg.expert.log_density(params.expert, data.X, data.y)
        head = coef[:1]

        def loglik(th):
            lw = self.log_weights(SoftmaxParams(jnp.concatenate([head, th], axis=0)), Xg)
            return weighted_sum(klogsumexp(lw + logf), w)

        th = _dense_proposal(coef, logf, Xg, w, free, loglik, ctl, max_halvings)
        th = _observed_newton(th, head, self, logf, Xg, w, free, loglik, ctl, max_halvings)
        th = _observed_newton(th, head, self, logf, Xg, w, free, loglik, ctl, max_halvings, cells=True)
        th = _pattern_search(th, free, loglik)
        return params._replace(gate=SoftmaxParams(coef=jnp.concatenate([head, th], axis=0)))

    @property
    def top_k(self) -> int:
        return int(self.k)

    def boundary_swaps(self, v, live):
        """(k, k) booleans: expert pairs whose routing boundary some live point sits next to (see _cell_null_space)."""
        return topk_swaps(v, live, self.k)

    def boundary(self, params, ctl) -> list[str]:
        if self.k == 1:
            return ["topk with K=1: the weights are 0 or 1, so only the routing partition is identified; the gate "
                    "coefficients' scale is arbitrary and they have no standard errors"]
        return []


PATTERN_STEPS = (3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)


def _dense_proposal(coef, logf, Xg, w, free, loglik, ctl, max_halvings):
    """One softmax Newton step towards the posterior under *dense* softmax weights, guarded on loglik."""
    dense_lw = klog_softmax(coef @ Xg)
    lj = dense_lw + logf
    post = jnp.exp(lj - klogsumexp(lj)[None])
    post = jnp.where(w[None] > 0, post, 1.0 / coef.shape[0])
    grad, negH = newton.softmax_newton_stats(jnp.exp(dense_lw), post, w, Xg)
    grad, negH = newton.mask_newton(grad, negH, free)
    d = newton.newton_direction(grad, negH, ctl.ridge)
    th, _, _ = newton.guarded_step(coef[1:], d, loglik, loglik(coef[1:]), ctl.ls_eps, max_halvings)
    return th


def _observed_newton(th, head, gate, logf, Xg, w, free, loglik, ctl, max_halvings, cells=False):
    """Newton step of the top-K log-likelihood on the current routing cells, guarded on loglik itself.

    Inside the cells where no point changes its active set, the observed
    log-likelihood is smooth with gradient sum_n w_n (tau_n - g_n) x_n (tau the
    top-K posterior), i.e. the M-step objective's gradient; its Newton
    direction (softmax curvature over each point's active experts) usually
    moves the routing boundaries a little.  The M-step cannot take such a step
    (its objective is -inf once a point with responsibility leaves an active
    set, so the guard halves the step until no point moves: EM stalls on large
    samples); judged on the observed log-likelihood, which is finite for every
    routing, the step is accepted whenever the log-likelihood does not drop.
    """
    lw = gate.log_weights(SoftmaxParams(jnp.concatenate([head, th], axis=0)), Xg)
    lj = lw + logf
    post = jnp.exp(lj - klogsumexp(lj)[None])
    post = jnp.where(w[None] > 0, post, jnp.exp(lw))
    grad, negH = newton.softmax_newton_stats(jnp.exp(lw), post, w, Xg)
    grad, negH = newton.mask_newton(grad, negH, free)
    if cells:
        Z = _cell_null_space(jnp.concatenate([head, th], axis=0), Xg, w, free, gate.k, gate.select,
                             gate.boundary_swaps)
        d = Z @ newton.newton_direction(Z.T @ grad.ravel(), Z.T @ negH @ Z, ctl.ridge)
        d = d.reshape(th.shape)
    else:
        d = newton.newton_direction(grad, negH, ctl.ridge)
    th_new, _, _ = newton.guarded_step(th, d, loglik, loglik(th), ctl.ls_eps, max_halvings)
    return th_new


def topk_swaps(v, live, K):
    """(k, k) booleans: pairs (i, j) that are the K-th and (K+1)-th ranked experts of v at some live point."""
    k = v.shape[0]
    active = topk_mask(v, K)
    kth = jnp.argmin(jnp.where(active, v, jnp.inf), axis=0)
    nxt = jnp.argmax(jnp.where(active, -jnp.inf, v), axis=0)
    return jnp.stack([jnp.stack([jnp.any(live & (((kth == i) & (nxt == j)) | ((kth == j) & (nxt == i))))
                                 for j in range(k)]) for i in range(k)])


def _cell_null_space(coef, Xg, w, free, K, select, boundary_swaps=None):
    """((k-1) pg, (k-1) pg) basis (zero columns padded) of the gate moves that keep every routing boundary.

    The top-K weights jump where the K-th and (K+1)-th ranked experts i, j swap, on the
    hyperplane {x: (b_i - b_j)' x = 0} (slopes only for select="slopes").  A move d keeps that
    hyperplane iff d_i - d_j is parallel to b_i - b_j; for every pair that swaps at some live
    point, the components of d_i - d_j orthogonal to b_i - b_j are constrained to 0 (fixed
    coefficients too).  Columns of the result span the moves meeting all constraints.  The pairs
    come from ``boundary_swaps(v, live)`` (v the ranked scores; default :func:`topk_swaps` with K),
    so gates with other routing rules (expert prototyping: one winner per group) reuse the step.
    """
    k, pg = coef.shape
    m = (k - 1) * pg
    S = jnp.ones((pg,), coef.dtype) if select == "scores" else jnp.ones((pg,), coef.dtype).at[0].set(0.0)
    v = (coef * S[None]) @ Xg
    live = w > 0
    swap = topk_swaps(v, live, K) if boundary_swaps is None else boundary_swaps(v, live)
    # E[i] (pg, m): the map from a move of rows 1..k-1 (raveled) to the move d_i of row i (row 0 never moves)
    E = jnp.concatenate([jnp.zeros((pg, m), coef.dtype), jnp.eye(m, dtype=coef.dtype)], axis=0).reshape(k, pg, m)
    rows = [jnp.diag(1.0 - free.ravel().astype(coef.dtype))]
    for i in range(k):
        for j in range(i + 1, k):
            swaps = swap[i, j]
            u = (coef[i] - coef[j]) * S
            P = jnp.eye(pg, dtype=coef.dtype) - jnp.outer(u, u) / jnp.maximum(u @ u, 1e-300)
            rows.append(swaps.astype(coef.dtype) * (P @ (S[:, None] * (E[i] - E[j]))))
    A = jnp.concatenate(rows, axis=0)
    ev, V = jnp.linalg.eigh(A.T @ A)
    null = ev <= 1e-10 * jnp.maximum(1.0, jnp.max(ev))
    return V * null.astype(coef.dtype)[None]


def _pattern_search(th, free, loglik):
    """The best of th +- s (1 + |th_j|) e_j over free coordinates j and steps s, if it raises loglik."""
    P = th.size
    steps = jnp.asarray(PATTERN_STEPS, dtype=th.dtype)
    scale = (1.0 + jnp.abs(th.ravel())) * free.ravel().astype(th.dtype)
    moves = (steps[:, None, None] * jnp.eye(P, dtype=th.dtype)[None] * scale[None, None]).reshape(-1, P)
    cands = th.ravel()[None] + jnp.concatenate([moves, -moves])
    lls = lax.map(lambda c: loglik(c.reshape(th.shape)), cands)
    lls = jnp.where(jnp.isfinite(lls), lls, -jnp.inf)
    best = jnp.argmax(lls)
    return jnp.where(lls[best] > loglik(th), cands[best].reshape(th.shape), th)
