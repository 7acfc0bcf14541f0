"""The EM / CEM / SEM loop: jit-compiled once per configuration, monotone, batched restarts.

One iteration = E-step at the current parameters (log-likelihood and
responsibilities from one max-shifted log-sum-exp over the experts) followed by
the gate's and the experts' M-steps, each of which never lowers its part of
the EM objective (closed form, or a guarded Newton step).  Hence EM is a GEM
algorithm and the log-likelihood never decreases (tested).

Only the configuration :class:`EMConfig` (gate, expert, k, max_iter,
algorithm) and array shapes are static; tolerances, floors and starting
values are traced (:class:`EMControl`), and data are padded to size buckets
(:mod:`moestat.data`), so fits of new sizes inside a bucket reuse the compiled
program.  Restarts and Monte Carlo replicates run through ``lax.map`` (one
after another on CPU, ``batch_size`` at a time vectorised on GPU).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
from jax import lax

from . import moments, newton
from .programs import stored_jit
from .._math import kmax, ksum, log_positive
from ..data.design import Data

ALGORITHMS = ("em", "cem", "sem")


@dataclass(frozen=True)
class EMConfig:
    """Static settings: changing any of them compiles a new program."""

    gate: Any
    expert: Any
    k: int
    max_iter: int = 2000
    algorithm: str = "em"
    max_halvings: int = 8
    #: keep the gate parameters of every iteration in ``FitResult.gate_trace`` (router diagnostics)
    record_gate: bool = False
    #: SQUAREM extrapolation between EM steps (:func:`_fit_one_squarem`; algorithm "em" only)
    accelerate: bool = False
    #: row 0 of the gate design Xg / of the expert design X is 1 on every point (an intercept), which the
    #: moment sweep uses to form fewer product features (:func:`moestat.fitting.moments.features`);
    #: set from the data by :func:`with_intercepts`
    gate_intercept: bool = False
    expert_intercept: bool = False
    #: the gate design is the expert design (same columns, same values): the moment sweep takes the
    #: responsibilities' moments T of the gate guard from the experts' contraction (set by :func:`with_intercepts`)
    shared_design: bool = False


class EMControl(NamedTuple):
    """Traced settings: changing them does not recompile."""

    tol: Any        # stop when l_t - l_{t-1} <= tol * |l_t|
    var_floor: Any  # absolute lower bound on Gaussian expert variances
    ridge: Any      # Levenberg ridge on Newton systems, relative to the curvature scale
    ls_eps: Any     # relative slack of the Newton guard (rounding)


def with_intercepts(cfg: EMConfig, X, Xg, w) -> EMConfig:
    """``cfg`` with ``expert_intercept`` / ``gate_intercept`` set where column 0 of the host design X / Xg
    (n, p) is exactly 1 on every row of positive weight w (n,), and ``shared_design`` where the two designs
    are equal (the moment sweep then forms fewer products and contractions)."""
    dead = np.asarray(w) <= 0

    def leading_one(D):
        return bool(D.ndim == 2 and D.shape[1] > 0 and np.all((D[:, 0] == 1.0) | dead))
    X, Xg = np.asarray(X), np.asarray(Xg)
    shared = bool(X.shape == Xg.shape and (X is Xg or np.array_equal(X, Xg)))
    one = leading_one(X)
    return dataclasses.replace(cfg, expert_intercept=one, gate_intercept=one if shared else leading_one(Xg),
                               shared_design=shared)


def plain_config(cfg: EMConfig, **changes) -> EMConfig:
    """``cfg`` without the options that belong to one fit's run (recording the gate path, SQUAREM), with
    ``changes``: the configuration refits, bootstrap replicates and start M-steps are compiled for."""
    return dataclasses.replace(cfg, record_gate=False, accelerate=False, **changes)


def make_control(tol=1e-8, var_floor=1e-12, ridge=0.0, ls_eps=1e-13) -> EMControl:
    """Traced settings as host scalars (they travel with each call; no device work here)."""
    f = np.float64 if jax.config.jax_enable_x64 else np.float32
    return EMControl(*(np.asarray(v, dtype=f) for v in (tol, var_floor, ridge, ls_eps)))


class MoEParams(NamedTuple):
    """Parameters of a mixture of experts: a PyTree of the gate's and the experts' parameter NamedTuples.

    Parameters
    ----------
    gate : NamedTuple of arrays
        The gate family's parameters, e.g. ``ms.gating.SoftmaxParams(coef)`` with coef (k, pg).
    expert : NamedTuple of arrays
        The expert family's parameters, e.g. ``ms.experts.GaussianParams(coef, sigma2)``
        with coef (k, p) and sigma2 (k,) (variances).

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> P = ms.MoEParams(gate=ms.gating.SoftmaxParams(coef=np.zeros((2, 2))),
    ...                  expert=ms.experts.GaussianParams(coef=np.ones((2, 2)), sigma2=np.ones(2)))
    >>> P.expert.coef.shape
    (2, 2)
    """

    gate: Any
    expert: Any


class FitResult(NamedTuple):
    params: MoEParams
    loglik: Any      # log-likelihood at params
    n_iter: Any      # M-steps taken
    converged: Any   # stopped by the tolerance (EM/CEM)
    trace: Any       # (max_iter,) log-likelihood before each M-step; NaN after the stop
    gate_trace: Any = None  # with cfg.record_gate: gate params before each M-step (leading max_iter axis; NaN after)


class _State(NamedTuple):
    params: MoEParams
    obj_prev: Any
    it: Any
    done: Any
    trace: Any
    key: Any
    best_params: MoEParams
    best_ll: Any
    gate_trace: Any = None


# --------------------------------------------------------------------------- pieces

def e_step(params: MoEParams, data: Data, cfg: EMConfig):
    """Log-likelihood, responsibilities (k, N), per-point log densities and the classification objective."""
    return _e_step(params, data, cfg)[:4]


def _e_step(params: MoEParams, data: Data, cfg: EMConfig):
    """:func:`e_step` plus the gate's E-step terms (reused by the gate M-step)."""
    if data.groups is not None:  # static branch: the ungrouped kernel is unchanged
        return _e_step_grouped(params, data, cfg)
    return _e_step_from(cfg.gate.e_step_terms(params.gate, data.Xg), params, data, cfg)


def _e_step_from(lg, params: MoEParams, data: Data, cfg: EMConfig):
    """:func:`_e_step` given the gate's E-step terms lg (k, N)."""
    lj = lg + cfg.expert.log_density(params.expert, data.X, data.y)
    ll, tau, lse, cll, _ = _posterior(lj, data.w, cfg.k)
    return ll, tau, lse, cll, lg


def _posterior(L, w, k: int):
    """The E-step core on joint log densities L (k, M) with weights w (M,).

    Returns the weighted log-likelihood, responsibilities (k, M), the per-column
    log-sum-exp, the classification objective and the columns that count
    (positive weight, a finite density); one max-shifted exponential per
    entry, reused for the responsibilities.
    """
    m = kmax(L)
    live = jnp.logical_and(w > 0, jnp.isfinite(m))
    # every column with a finite density is shifted, weight-0 ones too: there exp(L - 0) could underflow to 0
    # for every expert, and log(0) = -inf, masked in the value, would make derivatives 0 * inf = NaN
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.exp(L - m[None])                # reused for tau: k exps per point, not 2k
    s = ksum(e)
    lse = m + log_positive(s)               # s in [1, k] on live points
    tau = jnp.where(live[None], e / s[None], 1.0 / k)
    return jnp.dot(jnp.where(live, lse, 0.0), w), tau, lse, jnp.dot(m, w), live


def _group_inv_size(data: Data):
    """(N,) 1 / (rows in the row's group)."""
    return 1.0 / data.groups.size[data.groups.index]


def _e_step_grouped(params: MoEParams, data: Data, cfg: EMConfig):
    """E-step when all rows of a group share one latent expert.

    Group g's joint log density for expert i is L_ig = log g_i(z_g) + sum_{n in g} log f_i(y_n | x_n);
    gate terms are constant within a group, so adding log g_i / n_g on every row and summing rows per
    group gives L.  Group weights are the (constant) row weights.  Returned per-row quantities:
    responsibilities broadcast from the group, lse_g / n_g (so sum_n w_n lse_n is the log-likelihood).
    """
    gr = data.groups
    G = gr.size.shape[0]
    inv = _group_inv_size(data)
    lg = cfg.gate.e_step_terms(params.gate, data.Xg)
    ld = cfg.expert.log_density(params.expert, data.X, data.y)
    rows = jnp.where((data.w > 0)[None], lg * inv[None] + ld, 0.0)
    L = jax.ops.segment_sum(rows.T, gr.index, num_segments=G).T            # (k, G)
    wG = jax.ops.segment_sum(data.w * inv, gr.index, num_segments=G)       # (G,) group weights
    ll, tau, lse, cll, live = _posterior(L, wG, cfg.k)
    return ll, tau[:, gr.index], jnp.where(live, lse, 0.0)[gr.index] * inv, cll, lg


def loglik(params: MoEParams, data: Data, cfg: EMConfig):
    """Weighted observed-data log-likelihood."""
    return e_step(params, data, cfg)[0]


def classify(tau, algorithm: str, key):
    """Hard (CEM) or sampled (SEM) labels as one-hot responsibilities; EM passes tau through."""
    if algorithm == "em":
        return tau
    k = tau.shape[0]
    if algorithm == "cem":
        z = jnp.argmax(tau, axis=0)
    else:
        z = jax.random.categorical(key, jnp.log(jnp.maximum(tau, 1e-300)), axis=0)
    return jax.nn.one_hot(z, k, axis=0, dtype=tau.dtype)


def m_step(params: MoEParams, tau, data: Data, cfg: EMConfig, ctl: EMControl, fixed: MoEParams, log_w=None,
           observed: bool = True):
    """Gate and expert updates (an ECM step: each block maximised or improved given tau).

    ``observed=False`` skips the gate's observed-likelihood move (starting values from fixed responsibilities).
    """
    # the gate sees each group once: rows weighted w_n / n_g (tau is constant in a group)
    wg = data.w if data.groups is None else data.w * _group_inv_size(data)
    g = cfg.gate.m_step(params.gate, tau, data.Xg, wg, ctl, cfg.max_halvings, fixed.gate, log_w=log_w)
    e = cfg.expert.m_step(params.expert, tau, data.X, data.y, data.w, ctl, cfg.max_halvings, fixed.expert)
    # a further gate move judged on the observed log-likelihood (top-K re-routing); default none
    if not observed:
        return MoEParams(gate=g, expert=e)
    return cfg.gate.observed_step(MoEParams(gate=g, expert=e), data, cfg, ctl, cfg.max_halvings, fixed.gate)


def _select(pred, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y), a, b)


def _gate_trace0(gate_params, cfg: EMConfig):
    """Empty per-iteration record of the gate parameters (NaN), or None when not recording."""
    if not cfg.record_gate:
        return None
    return jax.tree_util.tree_map(lambda a: jnp.full((cfg.max_iter,) + jnp.shape(a), jnp.nan, jnp.result_type(a, 0.0)),
                                  gate_params)


def _record_gate(gate_trace, it, gate_params):
    """The record with iteration ``it``'s gate parameters stored (None passes through)."""
    if gate_trace is None:
        return None
    return jax.tree_util.tree_map(lambda tr, g: tr.at[it].set(g), gate_trace, gate_params)


def _initial_state(params0: MoEParams, key, f, cfg: EMConfig) -> _State:
    """The loop state before the first iteration: nothing traced, no best yet."""
    return _State(params0, jnp.asarray(-jnp.inf, f), jnp.asarray(0), jnp.asarray(False),
                  jnp.full((cfg.max_iter,), jnp.nan, f), key, params0, jnp.asarray(-jnp.inf, f),
                  _gate_trace0(params0.gate, cfg))


def _advance(s: _State, ll, obj, new: MoEParams, ctl: EMControl, cfg: EMConfig) -> _State:
    """The bookkeeping of one verified iteration: ``s.params`` has log-likelihood ``ll`` and objective ``obj``.

    Stop when the objective rose by at most ``tol * |obj|`` (never for SEM, and
    only when the gate allows it, e.g. after a temperature schedule); otherwise
    move to ``new``.  The trace, the iteration count, the best visited
    parameters and the gate record advance together.
    """
    conv = jnp.logical_and(s.it > 0, obj - s.obj_prev <= ctl.tol * jnp.abs(obj))
    if cfg.algorithm == "sem":
        conv = jnp.asarray(False)
    conv = jnp.logical_and(conv, cfg.gate.may_stop(s.params.gate))  # e.g. tau schedules
    better = ll > s.best_ll
    return _State(_select(conv, s.params, new), obj, s.it + jnp.where(conv, 0, 1), conv, s.trace.at[s.it].set(ll),
                  s.key, _select(better, s.params, s.best_params), jnp.where(better, ll, s.best_ll),
                  _record_gate(s.gate_trace, s.it, s.params.gate))


def effective_points(params: MoEParams, data: Data, cfg: EMConfig):
    """(k,) effective points per expert at ``params``, sum_n w_n tau_in (one E-step)."""
    _, tau, _, _ = e_step(params, data, cfg)
    return tau @ data.w


def fit_one_weighted(params0: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, key,
                     cfg: EMConfig) -> tuple:
    """:func:`fit_one` and the effective points per expert at the returned parameters (:func:`effective_points`).

    A converged run of the moment sweep has them from its last E-step (the returned parameters are the ones
    that E-step saw), so only other runs pay an E-step for them.
    """
    if not cfg.accelerate and _speculative(cfg, data):
        return _fit_one_speculative(params0, data, ctl, fixed, key, cfg, with_n_eff=True)
    out = fit_one(params0, data, ctl, fixed, key, cfg)
    return out, effective_points(out.params, data, cfg)


def fit_one(params0: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, key, cfg: EMConfig) -> FitResult:
    """Run EM/CEM/SEM from ``params0`` until the relative change is below ``ctl.tol`` or max_iter."""
    if cfg.accelerate:
        if cfg.algorithm != "em":
            raise ValueError("accelerate (SQUAREM) needs algorithm 'em', got %r" % cfg.algorithm)
        return _fit_one_squarem(params0, data, ctl, fixed, cfg)
    if _speculative(cfg, data):
        return _fit_one_speculative(params0, data, ctl, fixed, key, cfg)
    f = data.w.dtype
    sem = cfg.algorithm == "sem"

    def cond(s: _State):
        return jnp.logical_and(jnp.logical_not(s.done), s.it < cfg.max_iter)

    def body(s: _State):
        ll, tau, _, cll, lg = _e_step(s.params, data, cfg)
        key, sub = jax.random.split(s.key)
        new = m_step(s.params, classify(tau, cfg.algorithm, sub), data, cfg, ctl, fixed, log_w=lg)
        return _advance(s, ll, cll if cfg.algorithm == "cem" else ll, new, ctl, cfg)._replace(key=key)

    s = lax.while_loop(cond, body, _initial_state(params0, key, f, cfg))
    params = s.params
    if sem:
        last_ll = loglik(params, data, cfg)
        params = _select(last_ll >= s.best_ll, params, s.best_params)
        return FitResult(params=params, loglik=loglik(params, data, cfg), n_iter=s.it,
                         converged=s.done, trace=s.trace, gate_trace=s.gate_trace)
    return FitResult(params=params, loglik=_final_loglik(s, params, data, cfg), n_iter=s.it,
                     converged=s.done, trace=s.trace, gate_trace=s.gate_trace)


class _SpecState(NamedTuple):
    base: _State        # the EM state; base.params holds the candidate while one is pending
    t_prev: Any         # (k, pg) moments sum_n w_n tau_in x_n of the responsibilities the candidate must not lose against
    gate_from: Any      # the gate the candidate moved from (verified)
    direction: Any      # the candidate's Newton direction (gate params PyTree)
    q_prev: Any         # the gate objective at gate_from under those responsibilities
    halvings: Any       # halvings of the direction so far
    pending: Any        # a candidate awaits its check
    n_eff: Any          # sum_n w_n tau_in of the last accepted E-step (the moment sweep's; else zeros)


def _speculative(cfg: EMConfig, data: Data) -> bool:
    """EM with a gate whose single Newton step can be checked in the next E-step's pass."""
    return cfg.algorithm == "em" and cfg.gate.speculative and data.groups is None


def _fit_one_speculative(params0: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, key,
                         cfg: EMConfig, with_n_eff: bool = False):
    """:func:`fit_one` for EM with a softmax gate, with the gate's guard folded into the next E-step.

    The gate M-step is a Newton step whose guard (the gate objective
    sum_n w_n sum_i tau_in log g_i at the candidate must not fall) would cost a
    pass over the data.  Here the candidate is accepted provisionally; the next
    E-step computes log g at the candidate anyway, and the objective under the
    previous responsibilities tau' is linear in their moments T'_i = sum_n w_n tau'_in x_n
    (:meth:`moestat.gating.softmax.Softmax.objective_from_moments`), so the check
    needs only sum_n w_n log sum_i exp(eta_in) at the candidate, one more sum in that pass.  If it fell,
    the iteration is undone: the direction is halved and the E-step repeated
    (after ``max_halvings`` halvings the gate stays where it was), exactly the
    line search of :func:`moestat.fitting.newton.guarded_step`.  Only verified
    iterations count, are traced and can stop EM, so the log-likelihood never
    decreases, as in :func:`fit_one`.

    With experts whose M-step needs only weighted moments (Gaussian linear /
    polynomial) and a small design, the statistics of the whole iteration come
    from one contraction per design (:func:`_moment_sweep`).

    ``with_n_eff``: also return the effective points per expert at the returned parameters
    (:func:`fit_one_weighted`): from the last E-step of a converged moment sweep, else one more E-step.
    """
    f = data.w.dtype
    tmap = jax.tree_util.tree_map
    sweep = _moment_sweep(data, ctl, fixed, cfg) if _use_moments(data, cfg) else _direct_sweep(data, ctl, fixed, cfg)

    def cond(s: _SpecState):
        return jnp.logical_and(jnp.logical_not(s.base.done), s.base.it < cfg.max_iter)

    def body(s: _SpecState):
        b = s.base
        # the M-step is computed before the branch (wasted on the rare rejected iterations): data-sized arrays
        # used inside a lax.cond branch are copied on XLA:CPU (+13 ns/point measured at n = 1e5)
        ll, T, checked, (d, q0), e, n_eff = sweep(b.params, s.t_prev, s.q_prev)
        ok = jnp.logical_or(jnp.logical_not(s.pending), checked)

        def accept(s):
            g = tmap(lambda a, c: a + c, b.params.gate, d)
            base = _advance(b, ll, ll, MoEParams(gate=g, expert=e), ctl, cfg)
            return _SpecState(base, T, b.params.gate, d, q0, jnp.asarray(0), jnp.logical_not(base.done),
                              s.n_eff if n_eff is None else n_eff)

        def reject(s):
            j = s.halvings + 1
            give_up = j > cfg.max_halvings
            step = jnp.where(give_up, 0.0, 0.5 ** j).astype(f)
            g = tmap(lambda a, c: a + step * c, s.gate_from, s.direction)
            base = b._replace(params=b.params._replace(gate=g))
            return s._replace(base=base, halvings=j, pending=jnp.logical_not(give_up))

        # both outcomes, then a select (what a vmap makes of a lax.cond; the compiled loop is measured this way)
        return _select(ok, accept(s), reject(s))

    zero_gate = tmap(jnp.zeros_like, params0.gate)
    init = _SpecState(
        _initial_state(params0, key, f, cfg),
        jnp.zeros((cfg.k, data.Xg.shape[0]), f), params0.gate, zero_gate, jnp.asarray(0.0, f), jnp.asarray(0),
        jnp.asarray(False), jnp.zeros((cfg.k,), f))
    s = lax.while_loop(cond, body, init)
    # stopped by max_iter with a candidate still unchecked: check it once (else keep the gate it came from)
    # (a cond, not a select: the check and the log-likelihood are each a pass over the data, which a
    # converged run -- no candidate pending, its log-likelihood the last one traced -- does not need)
    bad = lax.cond(s.pending, lambda: jnp.logical_not(sweep(s.base.params, s.t_prev, s.q_prev)[2]),
                   lambda: jnp.asarray(False))
    params = s.base.params._replace(gate=_select(bad, s.gate_from, s.base.params.gate))
    out = FitResult(params=params, loglik=_final_loglik(s.base, params, data, cfg), n_iter=s.base.it,
                    converged=s.base.done, trace=s.base.trace, gate_trace=s.base.gate_trace)
    if not with_n_eff:
        return out
    if _use_moments(data, cfg):   # converged: params are those of the last accepted E-step (nothing pending)
        return out, lax.cond(s.base.done, lambda: s.n_eff, lambda: effective_points(params, data, cfg))
    return out, effective_points(params, data, cfg)


#: SQUAREM's step-length control (the R package SQUAREM's defaults): the first bound, its growth factor
SQUAREM_STEP_MAX0, SQUAREM_MSTEP = 1.0, 4.0


class _SqState(NamedTuple):
    base: _State        # base.it counts cycles; base.params is the cycle's start theta_0; base.trace its log-likelihoods
    phase: Any          # the EM step of the cycle that runs next: 0 from theta_0, 1 from theta_1, 2 from the extrapolation
    current: MoEParams  # the parameters the next EM step starts from (theta_1 in phase 1)
    theta2: MoEParams
    ll1: Any
    step_max: Any       # current bound on the extrapolation step length
    step: Any           # the step length of the pending extrapolation
    steps: Any          # EM steps taken


def _fit_one_squarem(params0: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, cfg: EMConfig) -> FitResult:
    """EM accelerated by SQUAREM (Varadhan & Roland 2008, step scheme S3), monotone by a fallback.

    One cycle from theta_0: two EM steps theta_1 = F(theta_0), theta_2 = F(theta_1);
    in the unconstrained coordinates (log-variances, simplex logits, ...) r =
    u_1 - u_0, v = u_2 - 2 u_1 + u_0 and the step a = |r| / |v|, clipped to
    [1, step_max]; the extrapolated point u_0 + 2 a r + a^2 v is followed by one
    stabilising EM step.  If the extrapolated point's log-likelihood is finite
    and not below theta_1's, the cycle ends at the stabilised point, else at
    theta_2 -- either has a log-likelihood at least theta_1's (EM and its Newton
    M-steps are GEM steps), so the log-likelihood at the cycles' starts never
    decreases.  step_max starts at 1 (plain EM) and grows 4x whenever a step
    at the bound is accepted, shrinks 4x (not below 1) when one is rejected.
    Crawling EM runs (over-fitted mixtures, flat likelihood ridges) reach the
    same tolerance in a fraction of the EM steps.

    The loop runs one EM step per iteration (a phase counter walks through the
    cycle), so that it compiles to the same pass over the data as plain EM.
    ``max_iter`` bounds the cycles to max_iter // 3; ``n_iter`` counts the EM steps, the trace holds
    the log-likelihood at each cycle's start, and the stopping rule compares
    consecutive cycles (3 EM steps apart).
    """
    f = data.w.dtype
    tmap = jax.tree_util.tree_map
    unc = lambda p: MoEParams(gate=cfg.gate.unconstrain(p.gate), expert=cfg.expert.unconstrain(p.expert))  # noqa: E731
    con = lambda u: MoEParams(gate=cfg.gate.constrain(u.gate), expert=cfg.expert.constrain(u.expert))    # noqa: E731
    sq = lambda t: sum(jnp.sum(a * a) for a in jax.tree_util.tree_leaves(t))                             # noqa: E731
    cycles = max(cfg.max_iter // 3, 1)

    def cond(s: _SqState):
        return jnp.logical_and(jnp.logical_not(s.base.done), s.base.it < cycles)

    def extrapolate(s: _SqState, theta2):
        u0, u1, u2 = unc(s.base.params), unc(s.current), unc(theta2)
        r = tmap(lambda a, c: a - c, u1, u0)
        v = tmap(lambda a, c, d: a - 2.0 * c + d, u2, u1, u0)
        raw = jnp.sqrt(sq(r) / sq(v))
        step = jnp.clip(jnp.where(jnp.isfinite(raw), raw, 1.0), 1.0, s.step_max)
        ext = con(tmap(lambda a, c, d: a + 2.0 * step * c + step * step * d, u0, r, v))
        return tmap(lambda e, a, m: jnp.where(m, a, e), ext, theta2, fixed), step   # fixed entries stay

    def body(s: _SqState):
        ll, tau, _, _, lg = _e_step(s.current, data, cfg)
        nxt = m_step(s.current, tau, data, cfg, ctl, fixed, log_w=lg)
        # phase 0: ll is theta_0's; the cycle may stop here (tolerance against the previous cycle's start)
        s0 = s._replace(base=_advance(s.base, ll, ll, s.base.params, ctl, cfg), phase=jnp.asarray(1), current=nxt)
        # phase 1: ll is theta_1's, nxt = theta_2: extrapolate
        ext, step = extrapolate(s, nxt)
        s1 = s._replace(phase=jnp.asarray(2), current=ext, theta2=nxt, ll1=ll, step=step)
        # phase 2: ll is the extrapolation's, nxt its stabilised step
        ok = jnp.logical_and(jnp.isfinite(ll), ll >= s.ll1)
        new = _select(ok, nxt, s.theta2)
        grow = jnp.logical_and(ok, s.step_max <= s.step)
        step_max = jnp.where(ok, jnp.where(grow, SQUAREM_MSTEP * s.step_max, s.step_max),
                             jnp.maximum(1.0, s.step_max / SQUAREM_MSTEP))
        s2 = s._replace(base=s.base._replace(params=new), phase=jnp.asarray(0), current=new, step_max=step_max)
        out = _select(s.phase == 0, s0, _select(s.phase == 1, s1, s2))
        return out._replace(steps=s.steps + 1)

    init = _SqState(_initial_state(params0, None, f, cfg), jnp.asarray(0), params0, params0, jnp.asarray(-jnp.inf, f),
                    jnp.asarray(SQUAREM_STEP_MAX0, f), jnp.asarray(1.0, f), jnp.asarray(0))
    s = lax.while_loop(cond, body, init)
    b = s.base
    return FitResult(params=b.params, loglik=_final_loglik(b, b.params, data, cfg), n_iter=s.steps,
                     converged=b.done, trace=b.trace, gate_trace=b.gate_trace)


def _final_loglik(s: _State, params: MoEParams, data: Data, cfg: EMConfig):
    """The log-likelihood at the returned parameters: traced last when EM stopped converged (``params`` are
    then ``s.params``, whose log-likelihood the last iteration computed), else one more E-step."""
    return lax.cond(s.done, lambda: s.trace[s.it], lambda: loglik(params, data, cfg))


def _direct_sweep(data: Data, ctl: EMControl, fixed: MoEParams, cfg: EMConfig):
    """The speculative loop's iteration for any expert: E-step, guard test and M-step on the whole arrays.

    Returns ``sweep(params, t_prev, q_prev) -> (ll, T, passes_guard, (gate direction, gate objective),
    expert params, n_eff)``: the guard tests the gate at ``params`` under the previous responsibilities (their
    moments ``t_prev``, see :meth:`moestat.gating.softmax.Softmax.objective_from_moments`) against
    ``q_prev``; T are the moments of this E-step's responsibilities; the gate direction and the experts'
    update are the M-step from ``params``; n_eff (k,) the E-step's effective points per expert where the
    sweep has them for free (:func:`_moment_sweep`), else None.
    """
    def sweep(params, t_prev, q_prev):
        eta, lse_g, _ = cfg.gate.scores_and_probs(params.gate, data.Xg)
        ll, tau, _, _, _ = _e_step_from(eta - lse_g[None], params, data, cfg)
        ok = newton.no_decrease(cfg.gate.objective_from_moments(params.gate, t_prev, jnp.dot(lse_g, data.w)), q_prev,
                                ctl.ls_eps)
        gate = cfg.gate.direction(params.gate, tau, data.Xg, data.w, ctl, fixed.gate, eta - lse_g[None])
        expert = cfg.expert.m_step(params.expert, tau, data.X, data.y, data.w, ctl, cfg.max_halvings, fixed.expert)
        return ll, (tau * data.w) @ data.Xg.T, ok, gate, expert, None
    return sweep


def _use_moments(data: Data, cfg: EMConfig) -> bool:
    """The moment sweep applies: experts with a moment M-step, designs small enough (static: shapes only)."""
    N = data.w.shape[-1]
    return (cfg.expert.moment_design == "Xy" and moments.worthwhile(data.Xg.shape[0], N)
            and moments.worthwhile(data.X.shape[0] + 1, N))


def _moment_design(data: Data, cfg: EMConfig):
    """The product features of the gate design and of [X; y] for the moment sweeps, the maps that restore the
    full moment layout (:func:`moestat.fitting.moments.expand`) and whether the gate's design is the experts'.

    Returns (pg, Fg, Fe, gate_moments, expert_moments, shared).
    """
    pg = data.Xg.shape[0]
    Fg = moments.features(data.Xg, cfg.gate_intercept)
    Fe = moments.features(jnp.concatenate([data.X, data.y[None]]), cfg.expert_intercept)
    gate_moments = (lambda M: moments.expand(M, pg)) if cfg.gate_intercept else (lambda M: M)
    expert_moments = (lambda M: moments.expand(M, data.X.shape[0] + 1)) if cfg.expert_intercept else (lambda M: M)
    # (a static check as well: the flag promises equal values, the shapes must agree for the slicing)
    shared = cfg.shared_design and data.Xg.shape == data.X.shape
    return pg, Fg, Fe, gate_moments, expert_moments, shared


def _joint_features(data: Data, cfg: EMConfig, shared: bool):
    """Where the gate's product features sit among the experts' (static indices), or None.

    When the gate's design is the experts' (``shared``, same intercept flag), the features of the gate design
    are rows of the features of [X; y] (:func:`moestat.fitting.moments.leading_features`): the gate's rows can
    be contracted with the experts' features and the gate's own are never formed.
    """
    if not shared or cfg.gate_intercept != cfg.expert_intercept:
        return None
    return moments.leading_features(data.Xg.shape[0], data.X.shape[0] + 1, cfg.gate_intercept)


#: most weight rows (gate's + experts') contracted in one dot when the designs coincide; more go in two dots
#: (n = 1e5, one core, benchmarks/contraction_shapes.py: 13 rows x 10 features one dot 11.8 ns/point, two 15.5;
#: 19 rows 24.2 vs 21.1)
JOINT_CONTRACTION_ROWS = 16


def _moment_sweep(data: Data, ctl: EMControl, fixed: MoEParams, cfg: EMConfig):
    """:func:`_direct_sweep` for moment experts: every statistic from one contraction per design (one in all
    when the gate's design is the experts', up to :data:`JOINT_CONTRACTION_ROWS` rows).

    One pass over the data computes the gate's scores eta, their log-sum-exp
    lse_g and probabilities (k exponentials, one log), the joint log densities
    eta_i + log f_i (log g_i + log f_i up to the per-point constant lse_g, which
    the responsibilities do not see), their log-sum-exp (k exponentials, one
    log) and the responsibilities, and writes the weight rows: for the gate the
    softmax Newton rows, w tau_i (i >= 1: the moments T of the guard) and w lse_g;
    for the experts tau_i w.  The rows are
    contracted with the designs' product features (:mod:`moestat.fitting.moments`),
    formed once per fit, and everything else is small dense algebra.

    With the data flags of :func:`with_intercepts` the features skip the products that repeat the
    intercept, and when the gate's design is the experts' the guard's moments T come from the experts'
    contraction, so the gate's rows are the Newton rows alone (at k = 3, d = 2: 5 rows x 6 features and
    3 x 10 instead of 8 x 10 and 3 x 15; the EM loop 0.81-0.85x the time at n = 1e5, ``benchmarks/README.md``);
    the gate's features being rows of the experts', the 5 + 3 rows then go in one 8 x 10 contraction (the
    loop 0.82-0.83x the time with the mask change below, tenth session).  The mask of the points that count
    is read off the posterior sum s (in [1, k] exactly when the joint log densities have a finite maximum),
    so the passes that write the rows need not re-read the k rows of joint log densities.
    """
    pg, Fg, Fe, gate_moments, expert_moments, shared = _moment_design(data, cfg)
    total = jnp.sum(data.w)
    xw = None if shared else data.Xg @ data.w     # sum_n w_n x_n: T_0 = xw - sum_{i >= 1} T_i
    k = cfg.k
    joint = _joint_features(data, cfg, shared)

    def sweep(params, t_prev, q_prev):
        eta, lse_g, probs = cfg.gate.scores_and_probs(params.gate, data.Xg)
        lj = eta + cfg.expert.log_density(params.expert, data.X, data.y)
        m = kmax(lj)
        m = jnp.where(jnp.isfinite(m), m, 0.0)      # as in _posterior
        e = jnp.exp(lj - m[None])
        s = ksum(e)
        # = (w > 0) & isfinite(max lj): with a finite maximum s is in [1, k]; with -inf, +inf or NaN it is 0,
        # inf or NaN.  Read off s, the later passes need not re-read the k rows lj (see _posterior)
        live = jnp.logical_and(data.w > 0, jnp.logical_and(s >= 1.0, s <= k))
        ll_n = jnp.where(live, m + log_positive(s) - lse_g, 0.0)
        tau = jnp.where(live[None], e / s[None], 1.0 / k)
        tw = tau * data.w
        if shared:   # the guard's T_i = sum_n w tau_i x_n are in the experts' moments; sum_n w lse_n its own dot
            rows = cfg.gate.moment_rows(probs, tau, data.w)
            r = rows.shape[0]
            if joint is not None and r + k <= JOINT_CONTRACTION_ROWS:
                # the gate's features are rows of the experts' ([X; y] starts with X): one contraction of all
                # the rows with the experts' features reads them once (k = 3, d = 2: 8 rows x 10 features
                # 5.0 ns/point against 9.1 for 5 x 6 and 3 x 10, benchmarks/contraction_shapes.py)
                M = moments.contract(jnp.concatenate([rows, tw]), Fe)
                Me = expert_moments(M[r:])
                _, lin, gram = moments.split(gate_moments(M[:r, joint]), pg)
            else:
                Me = expert_moments(moments.contract(tw, Fe))
                _, lin, gram = moments.split(gate_moments(moments.contract(rows, Fg)), pg)
            T, lse_sum = Me[:, 1:1 + pg], jnp.dot(lse_g, data.w)
        else:        # rows w tau_i (i >= 1; T_0 from sum_n w x_n) and w lse_n join the gate's contraction
            Me = expert_moments(moments.contract(tw, Fe))
            rows = jnp.concatenate([cfg.gate.moment_rows(probs, tau, data.w), tw[1:], (lse_g * data.w)[None]])
            tot, lin, gram = moments.split(gate_moments(moments.contract(rows, Fg)), pg)
            r = rows.shape[0] - k
            T = jnp.concatenate([(xw - jnp.sum(lin[r:r + k - 1], axis=0))[None], lin[r:r + k - 1]])
            lse_sum = tot[-1]
        ok = newton.no_decrease(cfg.gate.objective_from_moments(params.gate, t_prev, lse_sum), q_prev, ctl.ls_eps)
        gate = (cfg.gate.direction_from_moments(params.gate, lin[:r], gram[:r], ctl, fixed.gate),
                cfg.gate.objective_from_moments(params.gate, T, lse_sum))
        expert = cfg.expert.m_step_from_moments(params.expert, Me, total, ctl, fixed.expert)
        # the log-likelihood as its own dot (not a row of the contraction): the same rounding as loglik(), so
        # that EM's stopping test and trace at tol = 0 are not noisier than the plain E-step's
        # Me[:, 0] = sum_n w_n tau_in (the features' row of ones, or the intercept's square)
        return jnp.dot(ll_n, data.w), T, ok, gate, expert, Me[:, 0]
    return sweep


def map_batched(f, xs, batch_size: int = 1):
    """``lax.map`` of f over the leading axis of xs, ``batch_size`` at a time (traceable).

    With ``batch_size`` <= 1 the items run one after another and f is traced
    once as it is; larger batches run vectorised (``vmap``), whose batching
    rules for loops take several times longer to trace and compile.
    """
    if batch_size <= 1:
        return lax.map(f, xs)
    return lax.map(f, xs, batch_size=batch_size)


@partial(jax.jit, static_argnames=("cfg", "batch_size"))
def fit_restarts(params0: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, keys, cfg: EMConfig,
                 batch_size: int = 1) -> FitResult:
    """Fit from each of a batch of starting values (leading axis) on the same data."""
    return map_batched(lambda a: fit_one(a[0], data, ctl, fixed, a[1], cfg), (params0, keys), batch_size)


def fit_restarts_weighted(params0: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, keys, cfg: EMConfig,
                          batch_size: int = 1) -> tuple:
    """:func:`fit_restarts` and each fit's effective points per expert (S, k) (:func:`fit_one_weighted`)."""
    return map_batched(lambda a: fit_one_weighted(a[0], data, ctl, fixed, a[1], cfg), (params0, keys), batch_size)


@partial(jax.jit, static_argnames=("cfg", "batch_size"))
def fit_replicates(params0: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, keys, cfg: EMConfig,
                   batch_size: int = 1) -> FitResult:
    """Fit a batch of data sets (leading axis on params0, data and keys), one start each."""
    return map_batched(lambda a: fit_one(a[0], a[1], ctl, fixed, a[2], cfg), (params0, data, keys), batch_size)


#: M-steps that turn starting responsibilities into parameters (closed-form blocks need one; the gate's
#: Newton steps stop earlier at their fixed point, see START_RTOL)
START_STEPS = 25
#: relative move below which repeated start M-steps count as converged (a few units in the last place)
START_RTOL = 1e-15
#: a start's Newton step below this (relative) is taken without its check and ends the steps: Newton's error
#: after a step of size delta is about C delta^2 (C ~ 0.4 on benchmarks/first_fit.py's k-means start), so the
#: point it reaches is the fixed point to rounding, and the pass at it would only confirm that
START_TAIL = 1e-8


@partial(jax.jit, static_argnames=("cfg", "n_steps", "batch_size"))
def params_from_resp(tau, base: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, cfg: EMConfig,
                     n_steps: int = START_STEPS, batch_size: int = 1) -> MoEParams:
    """Starting parameters from a batch of responsibilities (b, k, N): repeated M-steps from ``base``.

    Closed-form blocks converge in one step; Newton blocks (the gate) get
    ``n_steps`` guarded steps on the fixed responsibilities.
    """
    return map_batched(lambda t: start_from_resp(t, base, data, ctl, fixed, cfg, n_steps), tau, batch_size)


def start_from_resp(t, base: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, cfg: EMConfig,
                    n_steps: int = START_STEPS) -> MoEParams:
    """One start: up to ``n_steps`` M-steps from ``base`` on fixed responsibilities t (k, N) (traceable).

    The steps stop early at a fixed point to rounding (:func:`_repeat`).
    """
    # no observed-likelihood gate moves here: they ignore t, and top-K's re-routing moves would cost more
    # than the whole EM run; EM runs them from iteration 1
    if cfg.gate.hold_in_starts:   # the gate stays at base; static switch
        return base._replace(expert=_repeat(lambda e: cfg.expert.m_step(
            e, t, data.X, data.y, data.w, ctl, cfg.max_halvings, fixed.expert), base.expert, n_steps))
    if _speculative(cfg, data) and _use_moments(data, cfg):
        return _start_from_moments(t, base, data, ctl, fixed, cfg, n_steps)
    return _repeat(lambda p: m_step(p, t, data, cfg, ctl, fixed, observed=False), base, n_steps)


def _start_from_moments(t, base: MoEParams, data: Data, ctl: EMControl, fixed: MoEParams, cfg: EMConfig,
                        n_steps: int) -> MoEParams:
    """:func:`start_from_resp` for the moment experts and a speculative (softmax) gate, from moments.

    The responsibilities t are fixed, so the experts' moments are one contraction and their repeated
    M-steps small algebra; each guarded Newton step of the gate is one pass at its trial point: the
    scores give the guard (the objective sum_i coef_i . T_i - sum_n w_n lse_n,
    :meth:`moestat.gating.softmax.Softmax.objective_from_moments`) and, contracted with the gate's
    features, the next Newton direction (:func:`_speculative_newton`), instead of the direct products and
    objective passes of :func:`m_step`.  The gate and expert blocks
    do not depend on each other given t, so each is repeated to its own fixed point: the same starting
    values as :func:`m_step` repeated, to rounding.  With an intercept the gate's steps begin at its
    closed-form guess from the responsibilities' moments (:meth:`moestat.gating.base.Gate.start_guess_from_moments`,
    linear discriminant analysis for the softmax) when it is no worse than the neutral start: the same fixed
    point in fewer passes (5-6 passes over the data per k-means start instead of 9-10).
    """
    pg, Fg, Fe, gate_moments, expert_moments, shared = _moment_design(data, cfg)
    joint = _joint_features(data, cfg, shared)   # then Fg goes unused (and unformed): same cost per step
    tw = t * data.w
    Ce = moments.contract(tw, Fe)
    Me = expert_moments(Ce)
    W, T, G = moments.split(gate_moments(Ce[:, joint] if joint is not None else moments.contract(tw, Fg)), pg)
    total = jnp.sum(data.w)
    expert = _repeat(lambda e: cfg.expert.m_step_from_moments(e, Me, total, ctl, fixed.expert), base.expert, n_steps)

    flat0, unflat = ravel_pytree(base.gate)

    def at(c):
        """One pass at the flat gate c: its Newton direction and its objective (guard) value."""
        g = unflat(c)
        _, lse_g, probs = cfg.gate.scores_and_probs(g, data.Xg)
        rows = cfg.gate.moment_rows(probs, t, data.w)
        M = moments.contract(rows, Fg) if joint is None else moments.contract(rows, Fe)[:, joint]
        _, lin, gram = moments.split(gate_moments(M), pg)
        d = ravel_pytree(cfg.gate.direction_from_moments(g, lin, gram, ctl, fixed.gate))[0]
        return d, cfg.gate.objective_from_moments(g, T, jnp.dot(lse_g, data.w))

    guess = cfg.gate.start_guess_from_moments(W, T, G) if cfg.gate_intercept else None
    if guess is not None:   # where the guess is finite and no worse than the neutral start (objective at zero
        # coefficients: -log(k) sum_n w_n), the Newton steps begin there, other entries at base
        g = jax.tree_util.tree_map(lambda b, c, f: jnp.where(f, b, c), base.gate, guess, fixed.gate)
        flat_g = ravel_pytree(g)[0]
        q_base = cfg.gate.objective_from_moments(base.gate, T, jnp.log(float(cfg.k)) * total)
        guess = flat_g, jnp.logical_and(jnp.all(jnp.isfinite(flat_g)), jnp.all(flat0 == 0)), q_base
    theta = _speculative_newton(at, flat0, ctl.ls_eps, cfg.max_halvings, n_steps, guess=guess)
    return MoEParams(gate=unflat(theta), expert=expert)


class _NewtonState(NamedTuple):
    i: Any          # steps taken
    theta: Any      # the current (verified) point
    d: Any          # its Newton direction
    q: Any          # its objective
    j: Any          # halvings of the pending trial
    cand: Any       # the trial point theta + 2^-j d
    go: Any         # continue


def _speculative_newton(at, theta0, ls_eps, max_halvings: int, n_steps: int, guess=None):
    """:func:`_repeat` of :func:`moestat.fitting.newton.guarded_step` Newton steps, one pass per trial point.

    ``at(theta) -> (direction, objective)`` costs a pass over the data.  The repeated guarded step
    evaluates the direction at theta and then the objective at the trial point theta + d, two passes per
    step; here the pass at a trial point gives its objective (the guard) and, once it is accepted, its
    direction too, so an accepted step costs one pass.  The iterates, the halvings (up to
    ``max_halvings``; then theta is kept and the steps stop) and the stopping rule (no entry moved by more
    than :data:`START_RTOL`, or ``n_steps`` steps) are those of the repeated guarded step (to rounding),
    with fewer passes: once an accepted point's own Newton direction moves no entry by more than
    :data:`START_TAIL` (relative), that last step is taken without its check and ends the steps (quadratic
    convergence: the point it reaches is the fixed point to rounding; the checked steps would stop there or one
    step later, at the same point to rounding).

    ``guess`` (theta_g, usable, q_ref): begin at theta_g instead when ``usable`` and its objective is not
    below q_ref, the objective at theta0 (a concave objective has one optimum: the same point, fewer steps;
    otherwise a second pass at theta0).
    """
    def cond(s: _NewtonState):
        return s.go

    def body(s: _NewtonState):
        d_c, q_c = at(s.cand)
        ok = newton.no_decrease(q_c, s.q, ls_eps)
        moved = jnp.any(jnp.abs(s.cand - s.theta) > START_RTOL * (1.0 + jnp.abs(s.theta)))
        tail = jnp.logical_not(jnp.any(jnp.abs(d_c) > START_TAIL * (1.0 + jnp.abs(s.cand))))
        accepted = _NewtonState(s.i + 1, s.cand + jnp.where(tail, d_c, 0.0), d_c, q_c, jnp.asarray(0), s.cand + d_c,
                                jnp.logical_and(jnp.logical_and(moved, jnp.logical_not(tail)), s.i + 1 < n_steps))
        j = s.j + 1
        give_up = j > max_halvings
        halved = s._replace(j=j, cand=s.theta + (0.5 ** j) * s.d)
        stuck = s._replace(i=s.i + 1, go=jnp.asarray(False))       # no trial accepted: theta stays, steps stop
        return _select(ok, accepted, _select(give_up, stuck, halved))

    if guess is None:
        d0, q0 = at(theta0)
    else:
        theta_g, usable, q_ref = guess
        d_g, q_g = at(theta_g)
        good = jnp.logical_and(usable, newton.no_decrease(q_g, q_ref, ls_eps))
        theta0, d0, q0 = lax.cond(good, lambda: (theta_g, d_g, q_g), lambda: (theta0,) + tuple(at(theta0)))
    init = _NewtonState(jnp.asarray(0), theta0, d0, q0, jnp.asarray(0), theta0 + d0, jnp.asarray(n_steps > 0))
    return lax.while_loop(cond, body, init).theta


def _repeat(step, x0, n_steps: int):
    """``step`` applied to x0 up to n_steps times, stopping once no entry moves by more than START_RTOL (1 + |x|).

    Newton blocks converge quadratically and then only move in the last
    places, so the result equals n_steps applications to rounding at a
    fraction of the passes over the data.
    """
    def cond(c):
        i, _, moved = c
        return jnp.logical_and(i < n_steps, moved)

    def body(c):
        i, x, _ = c
        y = step(x)
        moved = jnp.asarray(False)
        for a, b in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)):
            moved = jnp.logical_or(moved, jnp.any(jnp.abs(b - a) > START_RTOL * (1.0 + jnp.abs(a))))
        return i + 1, y, moved

    return lax.while_loop(cond, body, (jnp.asarray(0), x0, jnp.asarray(True)))[1]


@stored_jit(static_argnames=("cfg",))
def evaluate(params: MoEParams, data: Data, cfg: EMConfig):
    """Log-likelihood, responsibilities and per-point log densities at ``params``."""
    ll, tau, lse, _ = e_step(params, data, cfg)
    return ll, tau, lse


def no_fixed(params: MoEParams) -> MoEParams:
    """A mask PyTree like ``params`` with nothing fixed."""
    return jax.tree_util.tree_map(lambda a: np.zeros(np.shape(a), dtype=bool), params)
