"""The estimation pipeline: starting values, EM from every start, the best non-degenerate start, the Newton polish.

Every estimate moestat reports is made by these functions: :meth:`moestat.estimators.base.MoEModel.fit`,
every replicate of the bootstrap and of the bootstrap likelihood-ratio test
(:mod:`moestat.inference.bootstrap`) and every replicate of the Monte Carlo
harness (:mod:`moestat.montecarlo.worker`), so a replicate is started, run and
chosen exactly as a fit of the same data.

1. **Set-up** (:func:`initial_params`): the neutral parameters that
   responsibility starts begin from, and the identified entries of the
   parameter vector, in one compiled program per model shape.
2. **Starts** (:func:`start_responsibilities`): k-means / random-centre
   partitions, user labels or responsibilities (host NumPy), arranged by the
   gate and averaged within groups; M-steps turn them into parameters
   (:func:`moestat.fitting.em.start_from_resp`; a gate that ``hold_in_starts`` keeps its
   neutral parameters).  Multinomial experts screen many candidate
   partitions by short EM runs first (:func:`screened_starts`).
3. **EM from every start** and each start's effective number of points per
   expert, in one compiled program (:func:`run`).  An estimator's default
   fit runs this to a loose tolerance and continues only the best distinct
   starts to the full one (:func:`moestat.fitting.shortem.estimate_screened`).
4. **Choice** (:func:`degenerate_starts`, :func:`choose`): the highest
   log-likelihood among finite, non-degenerate fits (an expert with few
   effective points and a tiny variance is a spurious maximum).
5. **Polish** (:func:`polish`): Levenberg-damped Newton ascent on the observed
   log-likelihood to the MLE at machine precision (skipped when EM has
   converged so far that the polish would stop at once).

:func:`estimate` runs 3--5 from given starts with the harness's options
(near-truth starts, no polish) or the estimator's.  Programs are compiled
once per model configuration and shape (traced data, tolerances and seeds),
so a first fit in a fresh process compiles a handful of programs and later
fits of new data of a similar size none.
"""
from __future__ import annotations

import dataclasses
import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import numpy as np
from jax import lax

from . import em
from . import starts as initmod
from .parametrization import newton_polish
from .programs import stored_jit

#: M-steps that turn starting responsibilities into parameters (one constant for every start: em.START_STEPS)
START_STEPS = em.START_STEPS


# =========================================================================== set-up

class _HostValues:
    """Host values as a static jit argument: hashable, equal when their contents are equal."""

    def __init__(self, values: dict):
        self.values = values
        self._key = tuple(sorted((k, _fingerprint(v)) for k, v in values.items()))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _HostValues) and self._key == other._key

    def __repr__(self):
        return "_HostValues(%r)" % (self._key,)


def _fingerprint(v):
    if isinstance(v, np.ndarray):
        return ("array", v.dtype.str, v.shape, v.tobytes())
    try:
        hash(v)
        return (type(v).__name__, v)
    except TypeError:
        return ("repr", repr(v))


def _split_info(info: dict):
    """Floating values of ``info`` (traced: new data do not recompile) and the rest (static)."""
    traced, static = {}, {}
    for key, v in info.items():
        if isinstance(v, (float, np.floating)) or (isinstance(v, np.ndarray) and v.dtype.kind == "f"):
            traced[key] = np.asarray(v, dtype=np.float64)
        else:
            static[key] = v
    return traced, _HostValues(static)


@stored_jit(static_argnames=("gate", "expert", "k", "p", "pg", "static_info"))
def _setup(traced_info, gate, expert, k, p, pg, static_info):
    info = dict(static_info.values, **traced_info)
    base = em.MoEParams(gate=gate.init_params(k, pg), expert=expert.init_params(k, p, info))
    free = em.MoEParams(gate=gate.free_mask(base.gate), expert=expert.free_mask(base.expert))
    return base, free


def initial_params(gate, expert, k: int, p: int, pg: int, info: dict):
    """Neutral parameters and the mask of identified entries of a model, as host arrays.

    Parameters
    ----------
    gate, expert : gate and expert family objects
    k : int
        Number of experts.
    p, pg : int
        Columns of the expert and the gate design.
    info : dict
        Summaries of the response (``expert.prepare``), e.g. ``{"var_y": 2.0}``.

    Returns
    -------
    base : MoEParams
        ``gate.init_params(k, pg)`` and ``expert.init_params(k, p, info)``: the
        parameters responsibility starts begin from (e.g. softmax coef (k, pg)
        zero, Gaussian coef (k, p) zero and sigma2 (k,) = var_y).
    free : MoEParams
        Booleans like ``base``: the identified entries (``free_mask``).

    Notes
    -----
    Evaluated as one compiled program per (families, k, p, pg) with the
    floating values of ``info`` traced, instead of a compilation per eager
    array operation; a family whose ``init_params`` needs concrete values is
    evaluated eagerly instead (which also raises any genuine error).

    Examples
    --------
    >>> import moestat as ms
    >>> base, free = ms.fitting.pipeline.initial_params(ms.gating.get_gate("softmax"),
    ...                                                 ms.experts.get_expert("linear"), 2, 2, 2, {"var_y": 4.0})
    >>> base.expert.sigma2.tolist(), free.gate.coef.tolist()
    ([4.0, 4.0], [[False, False], [True, True]])
    """
    traced, static = _split_info(info)
    key = (gate, expert, k, p, pg, static, tuple((name, v.tobytes()) for name, v in sorted(traced.items())))
    global _LAST_SETUP
    last_key, result = _LAST_SETUP   # one read: another thread may replace the pair meanwhile
    if last_key != key:   # a fit asks twice (the start's parameters, then the mask): one program run
        try:
            out = _setup(traced, gate, expert, k, p, pg, static)
        except (TypeError, ValueError):   # e.g. a family that needs concrete info values; eager repeats real errors
            base = em.MoEParams(gate=gate.init_params(k, pg), expert=expert.init_params(k, p, info))
            out = base, em.MoEParams(gate=gate.free_mask(base.gate), expert=expert.free_mask(base.expert))
        result = jax.tree_util.tree_map(np.asarray, jax.device_get(out))
        _LAST_SETUP = (key, result)
    return jax.tree_util.tree_map(np.copy, result)   # copies: a caller may write into its arrays


#: the last :func:`initial_params` call's key and result, one tuple (replaced whole, never changed in place)
_LAST_SETUP: tuple = (None, None)


# =========================================================================== starts

def start_responsibilities(gate, expert, X, y, w, k: int, n_init: int, seed: int, init: Any = None,
                           group_codes=None) -> np.ndarray:
    """Starting responsibilities (S, k, n) on the host.

    Parameters
    ----------
    gate, expert : gate and expert family objects
    X : (n, p) expert design; y : (n,) response (class codes for categorical experts); w : (n,) weights
    k, n_init, seed : experts, number of default starts, seed of the partitions
    init : None, "kmeans", "random", "random_centers", labels (n,) or responsibilities (n, k)
        None mixes k-means and random-centre partitions of the expert
        features (:func:`moestat.fitting.starts.starting_responsibilities`);
        with one expert every default start is the same, so one is made.
    group_codes : (n,) int, optional
        Group of each row: responsibilities are averaged within groups.

    Returns
    -------
    R : ndarray (S, k, n), S = n_init for default starts and 1 for user labels or responsibilities.
    """
    n = X.shape[0]
    if init is None or isinstance(init, str):
        if k == 1 and init is None:
            n_init = 1
        F = expert.init_features(X, y)
        R = initmod.starting_responsibilities(init, F, w, k, n_init, seed)
        R = gate.arrange_starts(R)  # e.g. shared vs routed roles
    else:
        arr = np.asarray(init)
        R = initmod.user_responsibilities(arr, n, k) if arr.ndim == 2 else initmod.user_labels(arr, n, k)
    return group_average(R, group_codes)


def group_average(R: np.ndarray, group_codes) -> np.ndarray:
    """Responsibilities (S, k, n) averaged within each group (unchanged without groups)."""
    if group_codes is None:
        return R
    c = np.asarray(group_codes)
    cnt = np.bincount(c)
    mean = np.stack([np.stack([np.bincount(c, weights=r, minlength=cnt.size) for r in Rb]) for Rb in R]) / cnt
    return mean[:, :, c]


def pad_responsibilities(R: np.ndarray, N: int) -> np.ndarray:
    """(S, k, n) -> (S, k, N): padded points get uniform responsibilities (they carry weight 0)."""
    k, n = R.shape[1], R.shape[2]
    return np.pad(R, ((0, 0), (0, 0), (0, N - n)), constant_values=1.0 / k)


def start_config(cfg: em.EMConfig) -> em.EMConfig:
    """The configuration the start M-steps are compiled for (independent of max_iter and the algorithm)."""
    return em.plain_config(cfg, max_iter=1, algorithm="em")  # data flags kept


@partial(jax.jit, static_argnames=("cfg", "n_steps", "batch_size"))
def params_from_variants(tau, base, data, W, Y, ctl, fixed, cfg, n_steps: int = START_STEPS, batch_size: int = 1):
    """Starting parameters from responsibilities tau (b, k, N), start b on data variant (W[b], Y[b]).

    The bootstrap's replicates share the covariates and differ in weights W (b, N)
    and responses Y (b, N); every start is made as
    :func:`moestat.fitting.em.params_from_resp` makes it on the original data.
    """
    def one(a):
        t, w, y = a
        return em.start_from_resp(t, base, data._replace(w=w, y=y), ctl, fixed, cfg, n_steps)
    return em.map_batched(one, (tau, W, Y), batch_size)


def screened_starts(gate, expert, design, data, base, ctl, fixed, cfg, n_init: int, seed: int, screen: int,
                    screen_tol: float, batch_size: int = 1):
    """Multinomial default starts: ``screen * n_init`` candidate partitions, a short EM run each, the best kept.

    Returns (stacked parameters (n_init leading), candidate log-likelihoods); see :mod:`moestat.fitting.screen`.
    """
    from .screen import candidate_responsibilities, gate_features, screened_starts as screen_run
    k = cfg.k
    Fe = expert.init_features(design.X, design.y)
    Fg = gate_features(design.Xg)
    R = candidate_responsibilities(Fg if Fg is not None else Fe, Fe, design.w, k, n_init * screen, seed)
    R = pad_responsibilities(group_average(R, design.group_codes), data.w.shape[0])
    return screen_run(R, base, data, ctl, fixed, cfg, n_init, seed, screen_tol, batch_size, n_live=design.n)


# =========================================================================== EM from every start

class Runs(NamedTuple):
    """EM from every start: the fits (leading axis S) and each fit's effective points per expert (S, k)."""

    fits: em.FitResult
    n_eff: Any


def _runs(params0, data, ctl, fixed, seed, cfg, batch_size):
    S = jax.tree_util.tree_leaves(params0)[0].shape[0]
    keys = jax.random.split(jax.random.PRNGKey(seed), S)
    return Runs(*em.fit_restarts_weighted(params0, data, ctl, fixed, keys, cfg, batch_size=batch_size))


@stored_jit(static_argnames=("cfg", "batch_size"))
def run(params0, data, ctl, fixed, seed, cfg: em.EMConfig, batch_size: int = 1) -> Runs:
    """EM from each start (leading axis of params0), keys ``split(PRNGKey(seed), S)``; one compiled program."""
    return _runs(params0, data, ctl, fixed, seed, cfg, batch_size)


@stored_jit(static_argnames=("cfg", "batch_size", "n_steps"))
def run_from_resp(R, base, data, ctl, fixed, seed, cfg: em.EMConfig, batch_size: int = 1,
                  n_steps: int = START_STEPS) -> tuple:
    """Starting parameters from responsibilities R (S, k, N), then :func:`run`; one compiled program.

    Returns (the starting parameters, :class:`Runs`).
    """
    params0 = em.params_from_resp(R, base, data, ctl, fixed, start_config(cfg), n_steps=n_steps,
                                  batch_size=batch_size)
    return params0, _runs(params0, data, ctl, fixed, seed, cfg, batch_size)


@partial(jax.jit, static_argnames=("cfg",))
def effective_points(params, data, cfg):
    """(S, k) effective points per expert, sum_n w_n tau_in, of each fit in a stack of parameters."""
    return lax.map(lambda p: em.effective_points(p, data, cfg), params)


@partial(jax.jit, static_argnames=("cfg", "batch_size"))
def run_variants(params0, data, W, Y, keys, ctl, fixed, cfg, batch_size: int = 1):
    """EM from params0[r] on data variant r (weights W[r], responses Y[r]); no traces kept.

    Returns (params, loglik, n_iter, converged, n_eff (R, k)).
    """
    def one(a):
        p0, w, y, key = a
        d = data._replace(w=w, y=y)
        out = em.fit_one(p0, d, ctl, fixed, key, cfg)
        return out.params, out.loglik, out.n_iter, out.converged, em.effective_points(out.params, d, cfg)
    return em.map_batched(one, (params0, W, Y, keys), batch_size)


# =========================================================================== choice

def degenerate_starts(expert, params, n_eff, info) -> np.ndarray:
    """(S,) booleans: fits (stacked on a leading axis) with a degenerate expert (``expert.degenerate``).

    ``info`` None (the data cannot be summarised, e.g. a constant response) marks every fit degenerate.
    """
    n_eff = np.asarray(n_eff)
    if info is None:
        return np.ones(n_eff.shape[0], dtype=bool)
    ex = jax.tree_util.tree_map(np.asarray, params.expert)
    return np.array([bool(np.any(expert.degenerate(jax.tree_util.tree_map(lambda a: a[s], ex), n_eff[s], info)))
                     for s in range(n_eff.shape[0])], dtype=bool)


def choose(loglik, degenerate, prefer_nondegenerate: bool = True) -> int:
    """Index of the best start: highest log-likelihood among finite non-degenerate fits.

    When no fit is both finite and non-degenerate (or ``prefer_nondegenerate``
    is False) the highest finite log-likelihood wins.

    Parameters
    ----------
    loglik : (S,) log-likelihoods; degenerate : (S,) booleans
    prefer_nondegenerate : bool

    Returns
    -------
    int

    Examples
    --------
    >>> from moestat.fitting.pipeline import choose
    >>> choose([-10.0, -5.0, float("nan")], [False, True, False])
    0
    >>> choose([-10.0, -5.0], [False, True], prefer_nondegenerate=False)
    1
    """
    score = np.asarray(loglik, dtype=np.float64).copy()
    score[~np.isfinite(score)] = -np.inf
    ok = ~np.asarray(degenerate, dtype=bool) & np.isfinite(score)
    if prefer_nondegenerate and ok.any():
        score = np.where(ok, score, -np.inf)
    return int(np.argmax(score))


# =========================================================================== polish

#: the Newton polish stops when the log-likelihood still to gain falls below this
POLISH_GTOL = 1e-9


def remaining_gain(trace) -> float:
    """EM's own estimate of the log-likelihood still to gain after its last iteration (inf when unknown).

    EM converges linearly: increments d_t shrink by a rate r, and what is left
    after an increment d is about d r / (1 - r).  The rate comes from the last
    two consecutive increments above rounding (16 units in the last place of
    the log-likelihood), the tail from the last of them, less what EM gained
    after it; so increments lost in rounding at the end of a converged run
    (tol = 0) do not hide a slow rate.
    """
    ll = np.asarray(trace, dtype=np.float64)
    ll = ll[np.isfinite(ll)]
    if ll.size < 3:
        return np.inf
    d = np.diff(ll)
    big = np.flatnonzero(d > 16.0 * np.spacing(abs(ll[-1])))
    if big.size < 2 or big[-1] != big[-2] + 1:
        return np.inf
    j = big[-1]
    r = d[j] / d[j - 1]
    if not 0.0 <= r < 1.0:
        return np.inf
    return max(float(d[j] * r / (1.0 - r) - (ll[-1] - ll[j + 1])), 0.0)


def polish(fit: em.FitResult, data, cfg, fixed, ctl, free=None):
    """Newton polish of an EM fit on the observed log-likelihood; never lowers it, never loses the fit.

    Skipped (0 steps) when EM converged and its own estimate of the gain left
    (:func:`remaining_gain`, with a safety factor of 10) is below the polish's
    stopping rule ``POLISH_GTOL``: the polish would stop at once, after the
    cost of a Hessian.  Returns (fit with the polished parameters and
    log-likelihood, Newton steps taken); a failure warns
    (:class:`moestat.exceptions.MoEWarning`) and keeps the EM fit.
    """
    from ..exceptions import MoEWarning
    if bool(fit.converged) and 10.0 * remaining_gain(fit.trace) < POLISH_GTOL:
        return fit, 0
    params = jax.tree_util.tree_map(np.asarray, fit.params)
    try:
        new, ll, steps = newton_polish(cfg, params, data, fixed, ctl, gtol=POLISH_GTOL, free=free)
    except Exception as exc:  # a polish failure must never lose the EM fit
        warnings.warn("Newton polish skipped: %s" % exc, MoEWarning, stacklevel=3)
        return fit, 0
    if steps == 0 or not ll >= float(fit.loglik):
        return fit, 0
    return fit._replace(params=jax.tree_util.tree_map(np.asarray, new), loglik=np.asarray(ll)), steps


# =========================================================================== the whole estimate

@dataclasses.dataclass
class Estimate:
    """The result of :func:`estimate`.

    Attributes
    ----------
    fit : FitResult of the chosen start (host arrays), polished when asked
    runs : FitResult of every start (leading axis S, host arrays)
    n_eff : (S, k) effective points per expert of every start
    degenerate : (S,) booleans
    best : index of the chosen start
    n_polish : Newton steps of the polish (0 when skipped)
    starts : the starting parameters (leading axis S)
    finalist : (S,) booleans, starts run to the full tolerance (None: every start;
        :func:`moestat.fitting.shortem.estimate_screened` continues only a few)
    basin : (S,) for each start, the continued start whose screened partition it repeats (None: itself)
    """

    fit: Any
    runs: Any
    n_eff: np.ndarray
    degenerate: np.ndarray
    best: int
    n_polish: int
    starts: Any
    finalist: Any = None
    basin: Any = None


def estimate(starts, data, ctl, fixed, cfg: em.EMConfig, info, *, seed: int = 0, base=None,
             prefer_nondegenerate: bool = True, polish_fit: bool = True, free=None, batch_size: int = 1,
             run_cfg: em.EMConfig | None = None) -> Estimate:
    """EM from every start, the best non-degenerate start, and the Newton polish.

    Parameters
    ----------
    starts : MoEParams stacked on a leading axis S, or responsibilities (S, k, N) (then ``base`` is needed)
    data : Data; ctl : EMControl; fixed : MoEParams of boolean masks; cfg : EMConfig
    info : dict
        Summaries of the response, with ``n_total`` (the degeneracy rule reads them).
    seed : int
        EM's keys are ``split(PRNGKey(seed), S)`` (SEM draws).
    base : MoEParams, optional
        What responsibility starts begin from (:func:`initial_params`).
    prefer_nondegenerate : bool
        Skip degenerate fits when a non-degenerate one exists.
    polish_fit : bool
        Newton-polish the chosen fit (EM only, not for a degenerate fit).  The
        Monte Carlo harness turns it off: its replicates are judged at EM's tolerance.
    free : MoEParams, optional
        Identified entries (from :func:`initial_params`); computed when omitted.
    batch_size : int
        Starts run ``batch_size`` at a time (vectorised).
    run_cfg : EMConfig, optional
        The configuration EM runs with when it differs from ``cfg`` (e.g. recording the gate path).

    Returns
    -------
    Estimate
    """
    run_cfg = run_cfg or cfg
    seed = np.asarray(seed, dtype=np.int64 if jax.config.jax_enable_x64 else np.int32)
    if isinstance(starts, em.MoEParams):
        S = jax.tree_util.tree_leaves(starts)[0].shape[0]
        params0, runs = starts, run(starts, data, ctl, fixed, seed, run_cfg, batch_size=min(batch_size, S))
    else:
        S = starts.shape[0]
        params0, runs = run_from_resp(starts, base, data, ctl, fixed, seed, run_cfg, batch_size=min(batch_size, S))
    fits, n_eff = jax.device_get(runs)
    return finish(fits, n_eff, data, ctl, fixed, cfg, info, prefer_nondegenerate=prefer_nondegenerate,
                  polish_fit=polish_fit, free=free, starts=params0)


def finish(fits, n_eff, data, ctl, fixed, cfg: em.EMConfig, info, *, prefer_nondegenerate: bool = True,
           polish_fit: bool = True, free=None, starts=None, eligible=None) -> Estimate:
    """The choice and the polish of :func:`estimate`, given EM's fits from every start (host arrays).

    For callers that run EM themselves (the harness's batched replicates).
    ``eligible`` (S,) booleans restricts the choice to some starts (e.g. those
    run to the full tolerance).
    """
    degenerate = degenerate_starts(cfg.expert, fits.params, n_eff, info)
    ll = fits.loglik if eligible is None else np.where(eligible, np.asarray(fits.loglik, dtype=np.float64), np.nan)
    best = choose(ll, degenerate, prefer_nondegenerate)
    fit = jax.tree_util.tree_map(lambda a: np.asarray(a)[best], fits)
    n_polish = 0
    if polish_fit and cfg.algorithm == "em" and not degenerate[best]:
        fit, n_polish = polish(fit, data, cfg, fixed, ctl, free=free)
    return Estimate(fit=fit, runs=fits, n_eff=np.asarray(n_eff), degenerate=degenerate, best=best,
                    n_polish=n_polish, starts=starts)
