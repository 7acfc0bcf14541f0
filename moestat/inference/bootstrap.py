"""Inference for fitted MoE models: observed-information standard errors, bootstrap, bootstrap LRT.

Observed information
    The Hessian of the full observed-data log-likelihood (``jax.hessian``) in
    the identified, unconstrained parametrisation of
    :mod:`moestat.fitting.parametrization` (softmax reference expert removed,
    variances as log-variances, user-fixed entries removed).  Its inverse is
    the covariance of that vector; the reported estimates (``describe`` order,
    e.g. sigma rather than log sigma^2) get theirs by the delta method through
    each family's JAX-traceable ``report`` map.  At a maximum this equals the
    observed information computed directly in the reported parametrisation.

Bootstrap
    Empirical (case resampling as multinomial case weights on the same padded
    data, so every replicate reuses one compiled program) or parametric
    (responses drawn from the fitted model at the observed covariates).  Each
    replicate is fitted from the original estimate plus optional extra starts,
    its experts are matched to the original ones (Hungarian assignment on the
    fitted gate probabilities and expert means), and replicates run in
    fixed-size chunks, in process or on a 'spawn' process pool; every random
    draw of replicate b derives from (seed, b), so results do not depend on the
    number of workers.

Bootstrap likelihood-ratio test
    k against k+1 experts (McLachlan 1987; flexmix's ``LR_test``): the LR
    statistic's null distribution is simulated by parametric bootstrap from
    the k-expert fit, refitting both models on every replicate.
"""
from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats

from ..fitting import em, pipeline
from .._jax import backend, to_device
from .._parallel import threadpools
from ..data.design import Data, group_first_rows, make_groups
from ..exceptions import InferenceWarning, MoEWarning
from ..data.validation import check_int
from ..fitting.parametrization import _Masks, free_masks, loglik_derivatives, unpack

BOOTSTRAP_KINDS = ("empirical", "parametric")
ROW_INDEX = ["block", "expert", "term"]


# =========================================================================== reported vector

def report_vector(cfg: em.EMConfig, params: em.MoEParams):
    """Reported estimates in ``params_frame`` order: experts' ``report`` then the gate's."""
    return jnp.concatenate([jnp.ravel(cfg.expert.report(params.expert)), jnp.ravel(cfg.gate.report(params.gate))])


@partial(jax.jit, static_argnames=("cfg", "masks"))
def _report_jacobian(theta, params, cfg, masks):
    f = lambda th: report_vector(cfg, unpack(cfg, th, params, masks.masks))
    return f(theta), jax.jacobian(f)(theta)


@partial(jax.jit, static_argnames=("cfg",))
def _report_many(params, cfg):
    """Reported vectors of a stack of parameters (leading axis), gate canonicalised."""
    def one(p):
        return report_vector(cfg, em.MoEParams(gate=cfg.gate.canonical(p.gate), expert=p.expert))
    return jax.vmap(one)(params)


# =========================================================================== observed information

@dataclass
class Information:
    """Observed-information covariance of a fit, in the unconstrained and the reported parametrisation.

    Attributes
    ----------
    rows : DataFrame (block, expert, term) of the reported estimates
    estimate : (m,) reported estimates
    cov : (m, m) delta-method covariance (NaN where not identified, fixed entries NaN)
    theta, grad, hessian : the unconstrained free vector, and the log-likelihood's gradient and Hessian there
    cov_theta : inverse observed information of theta (pseudo-inverse on the identified subspace)
    jacobian : (m, len(theta)) d estimate / d theta
    messages : problems found (singular information, boundary, not a stationary point)
    """

    rows: pd.DataFrame
    estimate: np.ndarray
    cov: np.ndarray
    theta: np.ndarray
    grad: np.ndarray
    hessian: np.ndarray
    cov_theta: np.ndarray
    jacobian: np.ndarray
    messages: list = field(default_factory=list)
    masks: Any = None   # the free-entry masks of theta (parametrization._Masks)

    @property
    def index(self) -> pd.MultiIndex:
        return pd.MultiIndex.from_frame(self.rows[ROW_INDEX])

    @property
    def bse(self) -> pd.Series:
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.diag(self.cov))
        return pd.Series(se, index=self.index, name="std_err")

    def cov_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.cov, index=self.index, columns=self.index)

    def frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """block, expert, term, estimate, std_err, z, p_value, ci_low, ci_high (Wald, level 1 - alpha)."""
        alpha = check_alpha(alpha)
        se = self.bse.to_numpy()
        q = stats.norm.ppf(1.0 - alpha / 2.0)
        out = self.rows[ROW_INDEX].copy()
        out["estimate"] = self.estimate
        out["std_err"] = se
        with np.errstate(divide="ignore", invalid="ignore"):
            out["z"] = self.estimate / se
        out["p_value"] = 2.0 * stats.norm.sf(np.abs(out["z"].to_numpy()))
        out["ci_low"] = self.estimate - q * se
        out["ci_high"] = self.estimate + q * se
        return out.reset_index(drop=True)


def check_alpha(alpha) -> float:
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ValueError("alpha must lie strictly between 0 and 1, got %r" % (alpha,))
    return a


def _identified_inverse(negH: np.ndarray, rtol: float = 1e-10):
    """Pseudo-inverse of the information on its well-conditioned subspace.

    Works on the correlation-scaled matrix D^-1/2 I D^-1/2, so that covariates
    on very different scales do not look singular.  Returns (cov, bad basis
    (columns, in theta coordinates), smallest scaled eigenvalue).
    """
    d = np.diag(negH).copy()
    pos = d > 0
    s = np.where(pos, 1.0 / np.sqrt(np.where(pos, d, 1.0)), 0.0)
    C = negH * s[:, None] * s[None, :]
    lam, V = np.linalg.eigh(C)          # a parameter without information is an eigenvector with eigenvalue 0
    good = lam > rtol
    Vg = V[:, good] * s[:, None]
    cov = (Vg / lam[good]) @ Vg.T
    bad = V[:, ~good] * np.where(pos, s, 1.0)[:, None]
    return cov, bad, (float(lam.min()) if lam.size else np.inf)


def observed_information(res, rtol: float = 1e-10, warn: bool = True) -> Information:
    """Observed-information covariance of a fitted model (see the module docstring).

    Warns (:class:`InferenceWarning`) instead of failing when the information
    is singular or not positive definite (the affected estimates get NaN
    standard errors), when the fit sits on a boundary of the parameter space,
    or when it is not a stationary point (CEM/SEM fits, unconverged EM).
    """
    cfg, data = res._cfg, res._data
    params = res._device_params
    # entries on a bound (a variance at its floor) are held fixed, as in the Newton polish: the others'
    # SEs are conditional on them, and they get NaN (the information there says nothing about them)
    bound = em.MoEParams(gate=jax.tree_util.tree_map(lambda a: np.zeros(np.shape(a), bool), params.gate),
                         expert=jax.tree_util.tree_map(np.asarray, cfg.expert.at_bound(params.expert, res._ctl)))
    fixed = jax.tree_util.tree_map(lambda f, b: np.asarray(f) | b, res.fixed, bound)
    rows = res.params_frame()
    m = _Masks(free_masks(cfg, params, fixed))
    theta, ll, g, H = loglik_derivatives(cfg, params, data, fixed)
    est, J = (np.asarray(a) for a in _report_jacobian(jnp.asarray(theta), params, cfg, m))
    messages = _check_report(rows, est, cfg)
    if messages:  # estimates from describe(), no covariance
        est, J = rows["estimate"].to_numpy(), np.zeros((len(rows), theta.size))
    negH = -(H + H.T) / 2.0
    if not np.all(np.isfinite(negH)):
        messages.append("the Hessian of the log-likelihood is not finite at the estimate")
        cov_t, bad, lam_min = np.full_like(negH, np.nan), np.eye(theta.size), -np.inf
    else:
        cov_t, bad, lam_min = _identified_inverse(negH, rtol)
    cov = J @ cov_t @ J.T
    # estimates that load on a non-identified direction get NaN; fixed ones (no theta dependence) too
    jn = np.linalg.norm(J, axis=1)
    leak = np.linalg.norm(J @ bad, axis=1) if bad.size else np.zeros(J.shape[0])
    undefined = (jn == 0) | (leak > 1e-6 * np.maximum(jn, 1e-300)) | ~np.isfinite(est)
    cov[undefined, :] = np.nan
    cov[:, undefined] = np.nan
    if bad.shape[1]:
        kind = "not positive definite (the estimate is not a local maximum)" if lam_min < -rtol else "singular"
        names = ", ".join("%s %d %s" % tuple(r) for r in rows.loc[undefined & (jn > 0), ROW_INDEX].to_numpy()[:6])
        messages.append("the observed information matrix is %s (smallest scaled eigenvalue %.3g); standard errors "
                        "of %s are set to NaN" % (kind, lam_min, names or "the affected parameters"))
    messages += _stationarity(g, cov_t, res) + _boundary(res, bound.expert) + cfg.gate.boundary(params.gate, res._ctl)
    info = Information(rows=rows.drop(columns="estimate"), estimate=est, cov=cov, theta=theta, grad=g,
                       hessian=H, cov_theta=cov_t, jacobian=J, messages=messages, masks=m)
    if warn:
        for msg in messages:
            warnings.warn(msg, InferenceWarning, stacklevel=3)
    return info


def _check_report(rows, est, cfg) -> list[str]:
    """A family whose ``report`` disagrees with its ``describe`` would mislabel SEs: refuse them, loudly."""
    ref = rows["estimate"].to_numpy()
    if est.shape == ref.shape and np.allclose(est, ref, rtol=1e-7, atol=1e-9):
        return []
    return ["the report() vector of gate %r / expert %r (%d values) does not match describe() (%d rows); "
            "standard errors are not available until the family lists its estimates in describe() order"
            % (cfg.gate.name, cfg.expert.name, est.size, ref.size)]


def _stationarity(g, cov_t, res) -> list[str]:
    if not np.all(np.isfinite(cov_t)):  # already reported as a non-finite Hessian
        return []
    dec = 0.5 * float(g @ cov_t @ g)
    if dec > 1e-4 * max(1.0, 1e-6 * abs(res.loglik)):
        return ["the estimate is not a stationary point of the log-likelihood (about %.3g log-likelihood units "
                "from one; algorithm=%r, converged=%s): standard errors from the observed information there are "
                "approximate" % (dec, res.algorithm, res.converged)]
    return []


def _boundary(res, bound_expert) -> list[str]:
    msgs = []
    for name, m in zip(getattr(bound_expert, "_fields", [""] * 99), jax.tree_util.tree_leaves(bound_expert)):
        m = np.asarray(m)
        if m.any():
            experts = np.unique(np.argwhere(m)[:, 0]) + 1 if m.ndim else []
            msgs.append("%s of expert(s) %s is on a bound of the parameter space (e.g. the variance floor): its "
                        "standard error is NaN and the others are conditional on it" % (name, list(map(int, experts))))
    wts = res.expert_weights
    low = np.flatnonzero(wts < max(1.0, 1e-3 * res.nobs))
    if low.size:
        msgs.append("expert(s) %s carry almost no weight (%s effective points): the fit is at the boundary of the "
                    "parameter space; standard errors there are not reliable"
                    % ((low + 1).tolist(), np.round(wts[low], 3).tolist()))
    return msgs


# =========================================================================== relabelling

def permute_params(cfg: em.EMConfig, params: em.MoEParams, perm) -> em.MoEParams:
    """Relabel the experts (new expert i = old ``perm[i]``), gate canonicalised."""
    g = cfg.gate.canonical(cfg.gate.permute(params.gate, perm))
    return em.MoEParams(gate=g, expert=cfg.expert.permute(params.expert, perm))


def relabel(res, order):
    """A copy of the results with the experts reordered: new expert i is old expert ``order[i]``."""
    k = res.n_experts
    order = np.asarray(order)
    if order.shape != (k,) or sorted(order.tolist()) != list(range(k)):
        raise ValueError("order must be a permutation of 0..%d, got %r" % (k - 1, order.tolist()))
    new = copy.copy(res)
    for name in ("responsibilities", "_device_params", "information"):
        new.__dict__.pop(name, None)
    new.params_internal = jax.tree_util.tree_map(np.asarray, permute_params(res._cfg, res.params_internal, order))
    fixed = res.fixed
    new.fixed = em.MoEParams(gate=res.model.gate.permute(fixed.gate, order),
                             expert=res.model.expert.permute(fixed.expert, order))
    return new


# =========================================================================== batched fits (bootstrap engine)
#
# A *spec* describes B replicate data sets of one fitted model (case weights or
# responses redrawn, the covariates shared) and one or more *jobs* (models to fit
# to every replicate, each from a given start plus optional default starts).
# Replicates run in fixed-size chunks; a chunk is a pure function of (spec,
# replicate indices), so it can run in this process or in a worker.

@dataclass(frozen=True)
class FitJob:
    """One model to fit to every replicate: config, given start, base values, fixed mask, extra starts."""

    model: Any
    cfg: em.EMConfig
    given: Any          # MoEParams (host) started from on every replicate, or None
    base: Any           # MoEParams (host) that responsibility starts begin from (holds fixed values)
    fixed: Any          # MoEParams of boolean masks (host)
    n_extra: int = 0    # default (k-means / random-centre) starts per replicate


@dataclass(frozen=True)
class ReplicateSpec:
    """B replicate data sets drawn from a fitted model (host arrays only: picklable)."""

    data: tuple         # (X, Xg, y, w) padded, features-major, as in moestat.data.Data
    n: int              # unpadded number of rows
    kind: str           # "empirical" | "parametric"
    seed: int
    ctl: tuple          # EMControl values
    jobs: tuple         # FitJob, ...
    sampler: Any = None  # (cfg, MoEParams) the parametric bootstrap draws from
    batch_size: int = 1
    groups: Any = None   # (n,) group codes 0..G-1, or None


@partial(jax.jit, static_argnames=("cfg",))
def _sample_many(params, X, Xg, keys, cfg, first=None):
    """Responses drawn from the model at fixed covariates, one row per key: (R, N).

    first : (N,) int, optional: each row takes the expert drawn for row ``first[n]``
        (its group's first row), so that all rows of a group share one expert.
    """
    def one(key):
        kz, ky = jax.random.split(key)
        z = jax.random.categorical(kz, cfg.gate.log_weights(params.gate, Xg), axis=0)
        z = z if first is None else z[first]
        return cfg.expert.sample(ky, params.expert, X, z)
    return jax.vmap(one)(keys)


def _seed_int(*entropy) -> int:
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0])


def _replicate_data(spec: ReplicateSpec, idx: np.ndarray):
    """Weights W (c, N) and responses Y (c, N) of replicates ``idx``; replicate b depends on (seed, b) only."""
    X, Xg, y, w = spec.data
    n, N = spec.n, w.shape[0]
    W = np.repeat(w[None], idx.size, axis=0)
    Y = np.repeat(y[None], idx.size, axis=0)
    if spec.kind == "empirical" and spec.groups is not None:  # resample whole groups
        codes = np.asarray(spec.groups)
        G = int(codes.max()) + 1
        live = np.bincount(codes, weights=w[:n], minlength=G) > 0
        for r, b in enumerate(idx):
            rng = np.random.default_rng(np.random.SeedSequence([spec.seed, int(b), 0]))
            W[r, :n] = w[:n] * rng.multinomial(int(live.sum()), live / live.sum())[codes]
    elif spec.kind == "empirical":
        wl = w[:n]
        integer = np.all(np.mod(wl, 1.0) == 0.0)
        live = wl > 0
        for r, b in enumerate(idx):
            rng = np.random.default_rng(np.random.SeedSequence([spec.seed, int(b), 0]))
            if integer:   # frequency weights: resample the individuals they stand for
                W[r, :n] = rng.multinomial(int(wl.sum()), wl / wl.sum())
            else:         # general case weights: resample rows, each keeping its weight
                W[r, :n] = wl * rng.multinomial(int(live.sum()), live / live.sum())
    else:
        cfg, params = spec.sampler
        root = jax.random.PRNGKey(spec.seed)
        keys = jnp.stack([jax.random.fold_in(root, int(b)) for b in idx])
        P = jax.tree_util.tree_map(to_device, params)
        first = None if spec.groups is None else to_device(group_first_rows(spec.groups, N))
        Y = np.asarray(_sample_many(P, to_device(X), to_device(Xg), keys, cfg, first)).astype(y.dtype)
        Y[:, n:] = 0
    return W, Y


def _control(spec: ReplicateSpec) -> em.EMControl:
    return em.make_control(*spec.ctl)


def _job_starts(spec, job: FitJob, j: int, idx, dat, W, Y):
    """Starting parameters (c, S) for job ``j``: the given start, then ``n_extra`` default starts.

    The default starts of a replicate are made as ``fit`` makes them on that
    data (:mod:`moestat.fitting.pipeline`): the same partitions, arranged by the
    gate, averaged within groups, and the same start M-steps.
    """
    c, k = idx.size, job.cfg.k
    parts = []
    if job.given is not None:
        parts.append(jax.tree_util.tree_map(lambda a: np.repeat(np.asarray(a)[None, None], c, axis=0), job.given))
    if job.n_extra:
        n, N = spec.n, W.shape[1]
        Xrows = spec.data[0][:, :n].T
        R = [pipeline.start_responsibilities(job.cfg.gate, job.cfg.expert, Xrows, Y[r, :n], W[r, :n], k, job.n_extra,
                                             _seed_int(spec.seed, b, j + 1), group_codes=spec.groups)
             for r, b in enumerate(idx)]
        e = R[0].shape[0]   # one start with one expert: every default start is the same
        tau = pipeline.pad_responsibilities(np.concatenate(R), N)
        rep = lambda a: to_device(np.repeat(a, e, axis=0))
        P = pipeline.params_from_variants(to_device(tau), jax.tree_util.tree_map(to_device, job.base), dat, rep(W),
                                          rep(Y), _control(spec), jax.tree_util.tree_map(jnp.asarray, job.fixed),
                                          pipeline.start_config(job.cfg), batch_size=min(spec.batch_size, c * e))
        parts.append(jax.tree_util.tree_map(lambda a: np.asarray(a).reshape((c, e) + a.shape[1:]), P))
    if not parts:
        raise ValueError("a bootstrap fit needs a start: a given estimate or n_extra > 0")
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=1), *parts)


def _fit_job(spec, job: FitJob, j: int, idx, dat, W, Y) -> dict:
    """Fit job ``j`` to replicates ``idx`` from all its starts; keep each replicate's best non-degenerate fit."""
    starts = _job_starts(spec, job, j, idx, dat, W, Y)
    c = idx.size
    S = jax.tree_util.tree_leaves(starts)[0].shape[1]
    flat = jax.tree_util.tree_map(lambda a: to_device(a.reshape((c * S,) + a.shape[2:])), starts)
    root = jax.random.PRNGKey(spec.seed)
    keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(root, int(b)), 1000 * (j + 1) + s)
                      for b in idx for s in range(S)])
    rep = lambda a: to_device(np.repeat(a, S, axis=0))
    out = pipeline.run_variants(flat, dat, rep(W), rep(Y), keys, _control(spec),
                                jax.tree_util.tree_map(jnp.asarray, job.fixed), job.cfg,
                                batch_size=min(spec.batch_size, c * S))
    params, ll, n_iter, conv, n_eff = jax.device_get(out)
    ll = np.asarray(ll).reshape(c, S)
    n_eff = np.asarray(n_eff).reshape(c, S, -1)
    params = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape((c, S) + a.shape[1:]), params)
    n = spec.n
    best, degen = np.zeros(c, dtype=int), np.zeros(c, dtype=bool)
    for r in range(c):
        info = _replicate_info(job.model, Y[r, :n], W[r, :n])
        bad = pipeline.degenerate_starts(job.cfg.expert, jax.tree_util.tree_map(lambda a: a[r], params), n_eff[r],
                                         info)
        best[r] = pipeline.choose(ll[r], bad)
        degen[r] = bad[best[r]]
    pick = lambda a: a[np.arange(c), best]
    return {"params": jax.tree_util.tree_map(pick, params), "loglik": pick(ll),
            "converged": pick(np.asarray(conv).reshape(c, S)), "n_iter": pick(np.asarray(n_iter).reshape(c, S)),
            "degenerate": degen}


def _replicate_info(model, y, w):
    try:
        info = model.expert.prepare(y, w)
    except ValueError:  # e.g. a resample with a constant response
        return None
    info["n_total"] = float(w.sum())
    return info


def run_chunk(spec: ReplicateSpec, idx) -> list[dict]:
    """Draw replicates ``idx`` and fit every job to them (a pure function of its arguments)."""
    idx = np.asarray(idx, dtype=int)
    with threadpools().limit(limits=1):
        W, Y = _replicate_data(spec, idx)
        X, Xg, y, w = spec.data
        dat = Data(X=to_device(X), Xg=to_device(Xg), y=to_device(y), w=to_device(w),
                   groups=None if spec.groups is None else make_groups(spec.groups, w.shape[0]))  # (grouped)
        return [_fit_job(spec, job, j, idx, dat, W, Y) for j, job in enumerate(spec.jobs)]


def chunk_length(B: int, chunk_size: int | None, target: int = 16) -> int:
    """Replicates per chunk: ``chunk_size``, or about ``target`` with as little padding as possible."""
    if chunk_size is not None:
        return check_int(chunk_size, "chunk_size", 1)
    n_chunks = -(-B // target)
    return -(-B // n_chunks)


def run_replicates(spec: ReplicateSpec, B: int, chunk_size: int | None = None, n_jobs: int = 1) -> list[dict]:
    """Run all B replicates in chunks (in process, or on ``n_jobs`` spawned workers).

    Chunks depend on B and ``chunk_size`` only, never on ``n_jobs`` (the last
    one is padded by repeating its final replicate, so every chunk has one
    shape and one compiled program), hence results do not depend on the
    number of workers.
    """
    chunk_size = chunk_length(B, chunk_size)
    chunks = []
    for start in range(0, B, chunk_size):
        idx = list(range(start, min(start + chunk_size, B)))
        chunks.append(idx + [idx[-1]] * (chunk_size - len(idx)))
    if n_jobs == 1:
        outs = [run_chunk(spec, c) for c in chunks]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from .._parallel import BrokenProcessPool, broken_pool_error, init_worker, worker_environment
        with worker_environment(cpu_only=True), ProcessPoolExecutor(max_workers=min(n_jobs, len(chunks)),
                                                        mp_context=mp.get_context("spawn"),
                                                        initializer=init_worker) as pool:
            try:
                outs = list(pool.map(run_chunk, [spec] * len(chunks), chunks))
            except BrokenProcessPool as exc:
                raise broken_pool_error(exc) from exc
    merged = []
    for j in range(len(spec.jobs)):
        parts = [o[j] for o in outs]
        cat = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *parts)
        merged.append(jax.tree_util.tree_map(lambda a: a[:B], cat))
    return merged


# =========================================================================== label matching

@partial(jax.jit, static_argnames=("cfg",))
def _signatures(params, X, Xg, live, scale, cfg):
    """(R, k, F) per-expert fingerprints: gate probabilities and scaled expert means on the fitted data."""
    def one(p):
        g = jnp.exp(cfg.gate.log_weights(p.gate, Xg)) * live
        mu = cfg.expert.mean(p.expert, X)
        mu = (mu.reshape(mu.shape[0], -1, mu.shape[-1]) * live / scale).reshape(mu.shape[0], -1)
        return jnp.concatenate([g, mu], axis=1)
    return jax.vmap(one)(params)


def match_experts(cfg, reference, params, data, scale: float = 1.0) -> np.ndarray:
    """For each fit in ``params`` (stacked), the permutation that best matches the reference's experts.

    Returns perms (R, k) with new expert i = old expert ``perms[r, i]``; the cost is
    the squared distance between gate probabilities plus mean functions (in
    units of ``scale``) over the fitted data -- invariant to parametrisation
    and usable for every gate / expert family.
    """
    from scipy.optimize import linear_sum_assignment
    live = (data.w > 0).astype(data.w.dtype)
    stack1 = jax.tree_util.tree_map(lambda a: to_device(np.asarray(a)[None]), reference)
    dev = jax.tree_util.tree_map(to_device, params)
    s0 = np.asarray(_signatures(stack1, data.X, data.Xg, live, scale, cfg))[0]
    sb = np.asarray(_signatures(dev, data.X, data.Xg, live, scale, cfg))
    cost = (s0 ** 2).sum(1)[None, :, None] + (sb ** 2).sum(2)[:, None, :] - 2.0 * np.einsum("if,rjf->rij", s0, sb)
    perms = np.empty((sb.shape[0], cfg.k), dtype=int)
    for r in range(sb.shape[0]):
        rows, cols = linear_sum_assignment(cost[r])
        perms[r, rows] = cols
    return perms


def _align(cfg, reference, params, data, scale):
    """Permute every replicate's experts to match the reference; return (aligned stack, perms)."""
    perms = match_experts(cfg, reference, params, data, scale)
    R = perms.shape[0]
    one = lambda r: permute_params(cfg, jax.tree_util.tree_map(lambda a: np.asarray(a)[r], params), perms[r])
    aligned = [jax.tree_util.tree_map(np.asarray, one(r)) for r in range(R)]
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *aligned), perms


# =========================================================================== bootstrap

def _spec_for(res, kind, seed, jobs, sampler=None, tol=None) -> ReplicateSpec:
    d = res._data
    ctl = [float(v) for v in res._ctl]
    if tol is not None:
        ctl[0] = float(tol)
    bs = 1 if backend() == "cpu" else 1 << 30
    return ReplicateSpec(data=tuple(np.asarray(a) for a in (d.X, d.Xg, d.y, d.w)), n=res.design.n, kind=kind,
                         seed=seed, ctl=tuple(ctl), jobs=tuple(jobs), sampler=sampler, batch_size=bs,
                         groups=res.design.group_codes)


def _host(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def bootstrap(res, B: int = 200, kind: str = "empirical", seed: int = 0, *, n_init: int = 0, n_jobs: int = 1,
              chunk_size: int | None = None, tol: float = 1e-10, alpha: float = 0.05) -> "BootstrapResults":
    """Empirical or parametric bootstrap of a fitted model.

    Parameters
    ----------
    res : MoEResults
    B : int
        Number of bootstrap replicates.
    kind : "empirical" or "parametric"
        empirical: resample cases (as multinomial case weights on the same
        data; integer weights are treated as frequency weights and the
        individuals they stand for are resampled).  parametric: draw responses
        from the fitted model at the observed covariates (case weights kept).
    seed : int
        Replicate b's draws depend on (seed, b) only.
    n_init : int
        Default starts per replicate *in addition to* the fitted estimate,
        which every replicate starts from; the best non-degenerate fit is kept.
    n_jobs : int
        Worker processes ('spawn' context, single-threaded, CPU); results do
        not depend on it.
    chunk_size : int, optional
        Replicates per compiled batch (and per task sent to a worker); default
        about 16, chosen from B alone.
    tol : float
        EM tolerance of the replicate fits (relative change of the log-likelihood).
    alpha : float
        Default level of the percentile intervals.

    Returns
    -------
    BootstrapResults
        Replicate estimates (experts matched to the fitted ones), bootstrap
        standard errors, percentile intervals.

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
    >>> boot = ms.bootstrap(res, B=5, seed=0)
    >>> boot.estimates.shape, boot.bse.shape
    ((5, 8), (8,))
    """
    B = check_int(B, "B", 2)
    seed = check_int(seed, "seed", 0)
    n_init = check_int(n_init, "n_init", 0)
    n_jobs = check_int(n_jobs, "n_jobs", 1)
    check_alpha(alpha)
    if kind not in BOOTSTRAP_KINDS:
        raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, BOOTSTRAP_KINDS)), kind))
    if kind == "parametric" and res.model.gate.joint:
        raise ValueError("a parametric bootstrap draws y given the covariates, but the %r gate models the covariates "
                         "too (a joint likelihood); use kind='empirical'" % res.model.gate.name)
    # the fit's configuration (its data flags hold for resampled weights and new responses too)
    cfg = em.plain_config(res._cfg, algorithm=res.algorithm)
    P = _host(res.params_internal)
    problem = _check_report(res.params_frame(), np.asarray(report_vector(cfg, P)), cfg)
    if problem:
        raise ValueError(problem[0].replace("standard errors are", "a bootstrap is"))
    job = FitJob(model=res.model, cfg=cfg, given=P, base=P, fixed=_host(res.fixed), n_extra=n_init)
    spec = _spec_for(res, kind, seed, [job], sampler=(cfg, P), tol=tol)
    out = run_replicates(spec, B, chunk_size=chunk_size, n_jobs=n_jobs)[0]
    scale = float(np.sqrt(res.info["var_y"])) if "var_y" in res.info else 1.0
    aligned, perms = _align(cfg, P, out["params"], res._data, scale)
    est = np.asarray(_report_many(jax.tree_util.tree_map(to_device, aligned), cfg))
    return BootstrapResults(res=res, kind=kind, seed=seed, estimates=est, loglik=out["loglik"],
                            converged=out["converged"], degenerate=out["degenerate"], n_iter=out["n_iter"],
                            perms=perms, params=aligned, alpha=alpha)


class BootstrapResults:
    """Replicate estimates of a bootstrap, bootstrap standard errors and percentile intervals.

    Attributes
    ----------
    estimates : DataFrame (B, m), columns (block, expert, term) as in ``summary_frame``; experts are
        matched to the original fit
    loglik, converged, degenerate, n_iter : (B,) per replicate
    valid : (B,) replicates used (finite, non-degenerate fits)
    n_relabelled : replicates whose experts came out in another order and were matched back
    """

    def __init__(self, res, kind, seed, estimates, loglik, converged, degenerate, n_iter, perms, params, alpha):
        self.res = res
        self.kind = kind
        self.seed = seed
        self.B = estimates.shape[0]
        self.estimates = pd.DataFrame(estimates, columns=pd.MultiIndex.from_frame(res.params_frame()[ROW_INDEX]))
        self.loglik = np.asarray(loglik)
        self.converged = np.asarray(converged, dtype=bool)
        self.degenerate = np.asarray(degenerate, dtype=bool)
        self.n_iter = np.asarray(n_iter)
        self.perms = perms
        self.params = params
        self.alpha = alpha
        self.valid = np.isfinite(self.loglik) & ~self.degenerate & np.all(np.isfinite(estimates), axis=1)
        self.n_relabelled = int(np.sum(np.any(perms != np.arange(perms.shape[1]), axis=1)))
        n_bad = int((~self.valid).sum())
        if n_bad:
            warnings.warn("%d of %d bootstrap replicates failed or ended at a degenerate fit and are left out"
                          % (n_bad, self.B), InferenceWarning, stacklevel=3)
        if self.valid.sum() < 2:
            raise ValueError("fewer than 2 usable bootstrap replicates: cannot estimate standard errors")

    @property
    def bse(self) -> pd.Series:
        """Bootstrap standard errors (standard deviation over the valid replicates)."""
        return self.estimates[self.valid].std(ddof=1).rename("std_err")

    def cov_params(self) -> pd.DataFrame:
        return self.estimates[self.valid].cov()

    def conf_int(self, alpha: float | None = None) -> pd.DataFrame:
        """Percentile intervals (columns lower, upper) at level 1 - alpha."""
        a = check_alpha(self.alpha if alpha is None else alpha)
        v = self.estimates[self.valid].to_numpy()
        lo, hi = np.quantile(v, [a / 2.0, 1.0 - a / 2.0], axis=0)
        return pd.DataFrame({"lower": lo, "upper": hi}, index=self.estimates.columns)

    def summary_frame(self, alpha: float | None = None) -> pd.DataFrame:
        """block, expert, term, estimate (original fit), boot_mean, std_err, ci_low, ci_high (percentile)."""
        ci = self.conf_int(alpha)
        out = self.res.params_frame()
        out["boot_mean"] = self.estimates[self.valid].mean().to_numpy()
        out["std_err"] = self.bse.to_numpy()
        out["ci_low"] = ci["lower"].to_numpy()
        out["ci_high"] = ci["upper"].to_numpy()
        return out

    def __repr__(self):
        return ("<BootstrapResults: %s, B=%d (%d valid, %d relabelled), seed=%d>\n%s"
                % (self.kind, self.B, int(self.valid.sum()), self.n_relabelled, self.seed,
                   self.summary_frame().to_string(index=False, float_format=lambda v: "%.4f" % v)))


# =========================================================================== bootstrap likelihood-ratio test

def bootstrap_lrt(null, alternative=None, B: int = 99, *, n_init: int = 5, seed: int = 0, n_jobs: int = 1,
                  chunk_size: int | None = None, tol: float = 1e-10) -> "LRTResults":
    """Parametric-bootstrap likelihood-ratio test of k experts against k + 1 (McLachlan 1987).

    The LR statistic 2 (l_{k+1} - l_k) has no chi-square limit here (the null
    sits on the boundary of the k+1 model and some parameters are not
    identified under it), so its null distribution is simulated: B data sets
    are drawn from the fitted k-expert model at the observed covariates, and
    both models are refitted to each (the null from its estimate, the
    alternative from its estimate on the observed data, each plus ``n_init - 1``
    default starts).  p = (1 + #{LR*_b >= LR}) / (B + 1).

    Parameters
    ----------
    null : MoEResults
        The fitted k-expert model.
    alternative : MoEResults, optional
        The fitted (k+1)-expert model on the same data; fitted with ``n_init``
        starts when omitted.
    B : int
        Bootstrap replicates (99 or 199 are usual; the p-value is a multiple of 1 / (B + 1)).
    n_init, seed, n_jobs, chunk_size, tol : as in :func:`bootstrap`

    Returns
    -------
    LRTResults
        ``statistic`` (the observed LR), ``pvalue``, ``boot_statistics`` (B,)
        and the two fits.

    Examples
    --------
    >>> import moestat as ms
    >>> df = ms.datasets.load_sim_moe2()
    >>> one = ms.GaussianMoE(1).fit("y ~ x", data=df, n_init=1)
    >>> two = ms.GaussianMoE(2).fit("y ~ x", data=df, n_init=2)
    >>> test = ms.bootstrap_lrt(one, two, B=4, n_init=1, seed=0)
    >>> test.pvalue                  # (1 + 0) / (4 + 1): no simulated LR reaches the observed one
    0.2
    """
    from .selection import with_k
    B = check_int(B, "B", 1)
    n_init = check_int(n_init, "n_init", 1)
    seed = check_int(seed, "seed", 0)
    n_jobs = check_int(n_jobs, "n_jobs", 1)
    if null.model.gate.joint:
        raise ValueError("the bootstrap LRT draws y given the covariates, which does not fit the joint likelihood of "
                         "the %r gate" % null.model.gate.name)
    if any(np.any(np.asarray(f)) for f in jax.tree_util.tree_leaves(null.fixed)):
        raise ValueError("the bootstrap LRT needs a fit without fixed parameters")
    k0 = null.n_experts
    if alternative is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MoEWarning)  # an over-fitted alternative warns about non-unique maxima
            alternative = with_k(null.model, k0 + 1).fit(null.design, n_init=n_init, seed=seed)
    elif alternative.n_experts != k0 + 1 or alternative.design.n != null.design.n:
        raise ValueError("alternative must be a fit with %d experts to the same data" % (k0 + 1))
    stat = 2.0 * (alternative.loglik - null.loglik)
    if stat < -1e-6 * max(1.0, abs(null.loglik)):
        warnings.warn("the %d-expert fit has a lower log-likelihood than the %d-expert fit (LR = %.4g): the "
                      "alternative is a local maximum; refit it with more starts" % (k0 + 1, k0, stat),
                      InferenceWarning, stacklevel=2)
    stat = max(stat, 0.0)
    jobs = [_lrt_job(null, k0), _lrt_job(alternative, k0 + 1)]
    jobs = [FitJob(model=m, cfg=c, given=p, base=p, fixed=f, n_extra=n_init - 1) for m, c, p, f in jobs]
    spec = _spec_for(null, "parametric", seed, jobs, sampler=(jobs[0].cfg, jobs[0].given), tol=tol)
    out0, out1 = run_replicates(spec, B, chunk_size=chunk_size, n_jobs=n_jobs)
    boot = 2.0 * (np.maximum(out1["loglik"], out0["loglik"]) - out0["loglik"])
    ok = np.isfinite(boot)
    if (~ok).any():
        warnings.warn("%d of %d bootstrap replicates failed and are left out" % (int((~ok).sum()), B),
                      InferenceWarning, stacklevel=2)
    pval = (1.0 + np.sum(boot[ok] >= stat)) / (1.0 + ok.sum())
    return LRTResults(statistic=stat, pvalue=float(pval), k0=k0, k1=k0 + 1, boot_statistics=boot, null=null,
                      alternative=alternative, seed=seed, n_init=n_init)


def _lrt_job(res, k):
    cfg = em.plain_config(res._cfg, k=k, algorithm="em")
    return res.model, cfg, _host(res.params_internal), _host(res.fixed)


@dataclass
class LRTResults:
    """Bootstrap likelihood-ratio test of k0 against k1 = k0 + 1 experts.

    statistic : LR = 2 (l_k1 - l_k0) on the data; pvalue : bootstrap p-value;
    boot_statistics : (B,) LR under the fitted null; null, alternative : the two fits.
    """

    statistic: float
    pvalue: float
    k0: int
    k1: int
    boot_statistics: np.ndarray
    null: Any
    alternative: Any
    seed: int
    n_init: int

    @property
    def B(self) -> int:
        return int(self.boot_statistics.size)

    def __repr__(self):
        q = np.nanquantile(self.boot_statistics, [0.5, 0.95])
        return ("<Bootstrap LR test: k=%d vs k=%d experts  LR=%.4f  p=%.4f  (B=%d; null LR median %.3f, "
                "95%% %.3f)>" % (self.k0, self.k1, self.statistic, self.pvalue, self.B, q[0], q[1]))
