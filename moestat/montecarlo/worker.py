"""The worker side of the harness: one task = one sample size n and a block of replicates.

For each replicate r the worker draws the data from ``SeedSequence([seed, n, r])``
(:mod:`moestat.sampling`), pads them to the Monte Carlo size bucket of n
(:func:`mc_bucket`, so every n of one bucket reuses one compiled program),
builds the protocol's starts, runs EM, keeps the best start, and computes the
losses and per-parameter errors.

* CPU: every replicate is one call of the compiled program (its starts run
  through ``lax.map``), so a replicate's result does not depend on which other
  replicates share its task -- the stored table is identical whatever the
  executor, the task blocking or an interruption.
* GPU (``batch="auto"`` off-CPU, or ``batch="vmap"``): all (replicate, start)
  pairs of a task go through one ``em.fit_replicates`` call, vectorised
  ``batch_size`` at a time, with ``batch_size`` chosen from the compiled
  program's ``memory_analysis()`` and the device's free memory.  Results agree
  with the CPU path to rounding, not bit for bit.

The function :func:`run_task` takes and returns plain Python data so that it
runs unchanged in this process, a spawned process or a Dask worker.
"""
from __future__ import annotations

import os
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..fitting import em, pipeline
from .._jax import backend, to_device
from .._parallel import threadpools
from .._math import klogsumexp
from ..data.design import bucket_size, make_data
from ..losses import (DENSITY_KINDS, VORONOI_KINDS, DensityDistance, _per_x_distance, _simpson_weights,
                      conditional_distance, gauss_legendre_nodes, quadrature_error, regression_distance,
                      theory_loss)
from ..sampling import simulate_data
from . import protocols
from .adapters import model_atoms
from .setup import Experiment, params_to_json
from .spec import Spec
from .targets import is_target, spec_at

_CACHE: dict = {}

#: smallest padded length of a Monte Carlo replicate
MC_BUCKET_MIN = 1024
#: growth factor of the Monte Carlo bucket ladder MC_BUCKET_MIN * MC_BUCKET_RATIO^j up to MC_FINE_FROM
MC_BUCKET_RATIO = 2.0
#: from this size on the ladder grows by MC_FINE_RATIO: the padded points' work outweighs a program per bucket
MC_FINE_FROM = 16384
#: growth factor of the ladder above MC_FINE_FROM (padding at most 19 %, 9-10 % on average)
MC_FINE_RATIO = 2.0 ** 0.25


def mc_bucket(n: int) -> int:
    """Padded length of a Monte Carlo replicate of n points.

    ``1024 * 2^j`` (the smallest one >= n) up to 16384, then ``16384 * 2^(j/4)``
    (rounded up to a multiple of 8).  Coarser than the fitting buckets
    (:func:`moestat.data.design.bucket_size`, 256 * 1.25^j) for small n: a
    rate study's grid spans three decades, and compiling (or loading and
    tracing) one EM program per bucket costs more than the padded points'
    extra work there (padded points have weight 0, so results change only in
    rounding).  Finer above 16384, where a replicate's EM work is what
    counts: with powers of two the 200 sizes 1e4...1e5 of the demystifying
    grids carried 48 % padding (sum of padded over real sizes 1.476), with
    quarter powers 10 % (1.098) for 12 programs instead of 4.  The DeepSeekMoE
    grid (20 sizes 100...1e5) falls into 10 buckets (8 with powers of two, 18
    on the fitting ladder), its padding 15 % instead of 51 %.

    Examples
    --------
    >>> from moestat.montecarlo.worker import mc_bucket
    >>> mc_bucket(100), mc_bucket(1024), mc_bucket(1025), mc_bucket(16384), mc_bucket(16385), mc_bucket(100000)
    (1024, 1024, 2048, 16384, 19488, 110224)
    """
    n = int(n)
    if n <= MC_FINE_FROM:
        return bucket_size(n, MC_BUCKET_MIN, MC_BUCKET_RATIO)
    return bucket_size(n, MC_FINE_FROM, MC_FINE_RATIO)


def experiment_for(spec_raw: dict, reference=None, n: int | None = None) -> Experiment:
    """The per-process cached :class:`Experiment` of a spec (and reference).

    ``n``: the replicate size, for specs whose fitted k is a rule of n
    (:func:`moestat.montecarlo.targets.spec_at`; None: the smallest full-grid size).
    """
    if n is None:
        n = int(Spec(spec_raw).grid(False).min())
    spec = Spec(spec_at(spec_raw, n))
    key = (spec.hash, repr(reference))
    if key not in _CACHE:
        _CACHE.clear()
        exp = Experiment.build(spec, reference)
        if not is_target(spec.raw["truth"]):    # a named target has no mixing measure
            exp.extras["true_atoms"] = model_atoms(exp.truth, exp.truth.canonical(exp.true_params))
            exp.extras["true_atoms_alt"] = equivalent_true_atoms(exp)
        if exp.reference is not None:
            exp.extras["ref_atoms"] = model_atoms(exp.fit, exp.fit.canonical(exp.reference))
        _CACHE[key] = exp
    return _CACHE[key]


def replicate_data(exp: Experiment, n: int, rep: int, N: int | None = None):
    """(x, y, Data) of replicate ``rep`` of size ``n``: the same whatever runs it.

    ``N`` is the padded length (default :func:`mc_bucket` of n).
    """
    t = exp.truth
    x, y, _ = simulate_data(t.gate, t.expert, exp.true_params, n=n, x_law=exp.spec.raw.get("x"),
                            seed=[exp.spec.seed, int(n), int(rep)], intercept=t.intercept,
                            gate_intercept=t.gate_intercept)
    X, G = exp.fit.designs(x)
    return x, y, make_data(X, G, np.asarray(y, dtype=np.float64), np.ones(n), N=N or mc_bucket(n))


def key_seed(exp, n: int, rep: int) -> int:
    """Seed of replicate ``rep``'s EM keys (SEM draws): ``split(PRNGKey(key_seed), n_starts)``."""
    return int(protocols.init_stream(exp.spec.seed, n, rep).generate_state(2)[1] % (2**31 - 1))


def replicate_info(exp, n: int) -> dict:
    """The response summaries the degeneracy rule reads for a replicate of size n."""
    return dict(exp.info, n_total=float(n))


def fit_replicate_cpu(exp: Experiment, n: int, rep: int, drawn=None):
    """Fit one replicate through the estimation pipeline (its starts in one compiled program, no polish).

    ``drawn`` is the replicate's ``(x, y, data)`` (:func:`replicate_data`) when the caller has it.
    Returns a :class:`moestat.fitting.pipeline.Estimate`.
    """
    x, y, data = drawn or replicate_data(exp, n, rep)
    p0 = jax.tree_util.tree_map(to_device, protocols.starts(exp, n, rep, x, y, data))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    return pipeline.estimate(p0, data, exp.ctl, fixed, exp.cfg, replicate_info(exp, n), seed=key_seed(exp, n, rep),
                             polish_fit=False)


def batch_size_for(exp, params0, data, fixed, keys, cap: int) -> int:
    """Largest ``lax.map`` batch whose temporaries fit in half the device's free memory.

    Compiles the program for batch 1, reads ``memory_analysis().temp_size_in_bytes``
    (the per-fit temporaries) and divides the free memory by it.
    """
    try:
        lowered = em.fit_replicates.lower(params0, data, exp.ctl, fixed, keys, exp.cfg, batch_size=1)
        temp = max(int(lowered.compile().memory_analysis().temp_size_in_bytes), 1)
        stats = jax.devices()[0].memory_stats() or {}
        free = int(stats.get("bytes_limit", 0)) - int(stats.get("bytes_in_use", 0))
        if free <= 0:
            return 1
        return int(max(1, min(cap, (0.5 * free) // temp)))
    except Exception:  # a backend without memory statistics
        return 1


def fit_block_batched(exp: Experiment, n: int, reps, batch: int | None = None):
    """Fit all (replicate, start) pairs of a block in one vectorised ``em.fit_replicates`` call.

    Each replicate's start is then chosen as :func:`moestat.fitting.pipeline.estimate` chooses it.
    """
    datas, p0s, keys, S = [], [], [], None
    for r in reps:
        x, y, data = replicate_data(exp, n, r)
        p0 = protocols.starts(exp, n, r, x, y, data)
        S = jax.tree_util.tree_leaves(p0)[0].shape[0]
        datas += [data] * S
        p0s.append(p0)
        keys.append(jax.random.split(jax.random.PRNGKey(key_seed(exp, n, r)), S))
    stack = lambda *a: jnp.stack([jnp.asarray(v) for v in a])  # noqa: E731
    data_b = jax.tree_util.tree_map(stack, *datas)
    p0_b = jax.tree_util.tree_map(lambda *a: to_device(np.concatenate(a)), *p0s)
    keys_b = jnp.concatenate(keys)
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0_b))
    B = keys_b.shape[0]
    bs = batch or batch_size_for(exp, p0_b, data_b, fixed, keys_b, B)
    out = jax.device_get(em.fit_replicates(p0_b, data_b, exp.ctl, fixed, keys_b, exp.cfg, batch_size=min(bs, B)))
    results = []
    for i, r in enumerate(reps):
        sl = slice(i * S, (i + 1) * S)
        o = jax.tree_util.tree_map(lambda a: np.asarray(a)[sl], out)
        data = datas[i * S]
        n_eff = np.asarray(pipeline.effective_points(jax.tree_util.tree_map(to_device, o.params), data, exp.cfg))
        results.append(pipeline.finish(o, n_eff, data, exp.ctl, fixed, exp.cfg, replicate_info(exp, n),
                                       polish_fit=False))
    return results, bs


# --------------------------------------------------------------------------- losses

@partial(jax.jit, static_argnames=("gate", "expert"))
def _cond_logpdf(params, X, Xg, y, gate, expert):
    """(M, G) log p(y_g | x_m) of a model at X (p, M), Xg (pg, M) and a y grid (G,)."""
    M, G = X.shape[1], y.shape[0]
    lw = gate.log_weights(params.gate, Xg)                                  # (k, M)
    ld = expert.log_density(params.expert, jnp.repeat(X, G, axis=1), jnp.tile(y, M))
    return klogsumexp(lw[:, :, None] + ld.reshape(lw.shape[0], M, G))


@partial(jax.jit, static_argnames=("gate", "expert"))
def _cat_logpdf(params, X, Xg, gate, expert):
    """(C, M) log P(y = c | x_m) of a categorical-response model at X (p, M), Xg (pg, M)."""
    lw = gate.log_weights(params.gate, Xg)                                  # (k, M)
    lp = jnp.log(expert.mean(params.expert, X))                             # (k, C, M)
    return klogsumexp(lw[:, None, :] + lp)


def _logpdf_fn(setup, params):
    dev = jax.tree_util.tree_map(to_device, params)

    def f(xm, y):
        X, G = setup.designs(xm)
        if y is None:  # categorical: log sum_i g_i p_i(c | x)
            return np.asarray(_cat_logpdf(dev, to_device(X.T), to_device(G.T), setup.gate, setup.expert)).T
        return np.asarray(_cond_logpdf(dev, to_device(X.T), to_device(G.T), to_device(y), setup.gate, setup.expert))
    return f


def _y_range(exp, params, x_nodes):
    lo, hi = np.inf, -np.inf
    for setup, p in ((exp.truth, exp.true_params), (exp.fit, params)):
        X, _ = setup.designs(x_nodes)
        mean = np.asarray(setup.expert.mean(jax.tree_util.tree_map(to_device, p.expert), to_device(X.T)))
        sd = np.sqrt(np.max(setup.expert.noise_variances(p.expert)))
        lo, hi = min(lo, mean.min() - 12 * sd), max(hi, mean.max() + 12 * sd)
    return lo, hi


def _x_average(exp: Experiment):
    """How the losses average over X: ({"x_uniform": (lo, hi)} or {"x_sample": xs}, the X nodes (M, d)).

    The same for every replicate of an experiment: computed once per process (``exp.extras``).
    """
    if "x_average" not in exp.extras:
        exp.extras["x_average"] = _x_average_of(exp)
    kw, nodes = exp.extras["x_average"]
    return dict(kw), nodes


def _x_average_of(exp: Experiment):
    law = exp.spec.raw.get("x", {"law": "uniform"})
    if law.get("law", "uniform") in ("grid", "uniform") and int(law.get("d", 1)) == 1 \
            and not exp.truth.gate.joint:
        kw = {"x_uniform": (float(law.get("low", 0.0)), float(law.get("high", 1.0)))}
        return kw, gauss_legendre_nodes(*kw["x_uniform"], 16, 8)[0][:, None]
    t = exp.truth
    xs, _, _ = simulate_data(t.gate, t.expert, exp.true_params, n=512, x_law=law,
                             seed=[exp.spec.seed, 1, 2**31 - 2], intercept=t.intercept,
                             gate_intercept=t.gate_intercept)
    return {"x_sample": xs}, xs


#: the count support of the density losses reaches at most this far beyond the truth's own (see _count_support)
COUNT_SUPPORT_SLACK = 4


def _count_bound(mean: float) -> int:
    """Y leaving a negligible Poisson tail above mean: mean + 12 sqrt(mean) + 30."""
    return int(np.ceil(mean + 12.0 * np.sqrt(mean) + 30.0))


def _count_support(exp, params, x_nodes) -> np.ndarray:
    """0..Y for count responses: Y leaves a negligible Poisson tail above the largest expert mean (or the trials).

    The truth's experts always count; a fitted expert whose mean runs far
    beyond them (a wild expert where its gate weight is negligible: SQUAREM
    and over-parametrised fits reach such points) extends Y only up to
    ``COUNT_SUPPORT_SLACK`` times the truth's bound.  The fitted density's mass left
    above Y is then accounted for by :func:`moestat.losses.conditional_distance`
    (in the value and in the error bound), not by a support of 10^10 points.
    """
    tops = []
    for setup, p in ((exp.truth, exp.true_params), (exp.fit, params)):
        X, _ = setup.designs(x_nodes)
        mean = np.asarray(setup.expert.mean(jax.tree_util.tree_map(to_device, p.expert), to_device(X.T)))
        if getattr(setup.expert, "family", "") == "binomial":
            mean = np.asarray(X[:, -1])                       # successes <= trials
        tops.append(float(np.max(mean[np.isfinite(mean)], initial=0.0)))
    y_true = _count_bound(tops[0])
    return np.arange(min(_count_bound(max(tops)), COUNT_SUPPORT_SLACK * y_true) + 1)


#: points of the y grid of the continuous density losses (Simpson; the error estimate uses every other one)
Y_POINTS = 2001
assert Y_POINTS % 4 == 1, "every other point of the y grid must be a Simpson grid of its own"


def _grid_logpdf(setup, params, X, Xg, y):
    """(G, M) log p(y_g | x_m) of a model at X (p, M), Xg (pg, M) on a y grid (G,) (traceable).

    The experts' log densities are mapped over the grid (``vmap``), so what
    depends on x only (means, gate weights) is computed once per node.  The
    log-sum-exp over the experts reduces the middle axis of (G, k, M), which
    XLA:CPU vectorises along M (an unrolled sum over slices, as in
    :func:`moestat._math.klogsumexp`, or an (M, G) layout measured 2-5x
    slower here); a column whose terms are all -inf gives -inf.
    """
    lw = setup.gate.log_weights(params.gate, Xg)                                               # (k, M)
    M = X.shape[1]

    def at(v):
        a = lw + setup.expert.log_density(params.expert, X, jnp.full((M,), v))                 # (k, M)
        m = jnp.maximum(jnp.max(a, axis=0), -1e300)
        return m + jnp.log(jnp.sum(jnp.exp(a - m[None]), axis=0))
    return jax.vmap(at)(y)


@partial(jax.jit, static_argnames=("truth", "fit", "kind", "G", "monte_carlo"))
def _continuous_distance(true_params, params, designs, wx, sd, truth, fit, kind, G, monte_carlo):
    """One compiled program for a continuous density loss (:func:`moestat.losses.conditional_distance`'s rule).

    ``designs``: per X resolution (fine, coarse; one for Monte Carlo) the truth's and the fit's designs
    ((X, Xg) features-major); ``wx``: their node weights; ``sd``: the largest noise sd of truth and fit.
    The y range is the experts' means on the fine nodes -12 sd ... +12 sd, over both models; Simpson on
    G points, and on every other one of them (G // 2 + 1 points, the grid of ``(G // 2) | 1`` points
    when G = 1 mod 4) for the error estimate.  Returns (value, value on half the y points, value on the
    coarse X nodes or the per-node distances (Monte Carlo)).
    """
    (Xt, Gt, Xf, Gf) = designs[0]
    mt, mf = truth.expert.mean(true_params.expert, Xt), fit.expert.mean(params.expert, Xf)
    lo = jnp.minimum(jnp.min(mt) - 12.0 * sd[0], jnp.min(mf) - 12.0 * sd[1])
    hi = jnp.maximum(jnp.max(mt) + 12.0 * sd[0], jnp.max(mf) + 12.0 * sd[1])
    y = jnp.linspace(lo, hi, G)
    # Simpson weights as _simpson_weights(G, h) forms them: (1, 4, 2, ..., 4, 1) * h / 3
    wy = jnp.asarray(_simpson_weights(G, 3.0)) * (y[1] - y[0]) / 3.0
    wy2 = jnp.asarray(_simpson_weights(G // 2 + 1, 3.0)) * (y[2] - y[0]) / 3.0

    def per_x(d, w):
        lp, lq = _grid_logpdf(truth, true_params, d[0], d[1], y), _grid_logpdf(fit, params, d[2], d[3], y)
        return _per_x_distance(lp, lq, w, kind, xp=jnp, grid_first=True), lp, lq

    fine, lp, lq = per_x(designs[0], wy)
    value = fine @ wx[0]
    half = _per_x_distance(lp[::2], lq[::2], wy2, kind, xp=jnp, grid_first=True) @ wx[0]
    if monte_carlo:
        return value, half, fine
    return value, half, per_x(designs[1], wy)[0] @ wx[1]


def _loss_designs(exp: Experiment):
    """Device designs (features-major) of truth and fit at the loss's X nodes, and the node weights."""
    if "loss_designs" not in exp.extras:
        kw, nodes = _x_average(exp)
        if "x_uniform" in kw:
            res = [gauss_legendre_nodes(*kw["x_uniform"], pieces, 8) for pieces in (16, 8)]
            res = [(x[:, None], w) for x, w in res]
        else:
            X = np.asarray(kw["x_sample"], dtype=np.float64)
            X = X[:, None] if X.ndim == 1 else X
            res = [(X, np.full(X.shape[0], 1.0 / X.shape[0]))]
        designs, weights = [], []
        for xm, w in res:
            (Xt, Gt), (Xf, Gf) = exp.truth.designs(xm), exp.fit.designs(xm)
            designs.append(tuple(to_device(np.ascontiguousarray(a.T)) for a in (Xt, Gt, Xf, Gf)))
            weights.append(to_device(w))
        exp.extras["loss_designs"] = (tuple(designs), tuple(weights), "x_sample" in kw)
    return exp.extras["loss_designs"]


def _true_device(exp: Experiment):
    if "true_device" not in exp.extras:
        exp.extras["true_device"] = jax.tree_util.tree_map(to_device, exp.true_params)
    return exp.extras["true_device"]


def density_loss(exp: Experiment, params, kind: str):
    """E_X TV, Hellinger distance or KL(true, fitted) of the true and fitted conditional densities.

    Continuous responses with Gaussian noise run as one compiled program
    (:func:`_continuous_distance`); counts and classes through
    :func:`moestat.losses.conditional_distance` with host callables.
    """
    if kind not in DENSITY_KINDS:
        raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, DENSITY_KINDS)), kind))
    response = exp.fit.expert.response
    kw, nodes = _x_average(exp)
    sds = [setup.expert.noise_variances(p.expert) for setup, p in ((exp.truth, exp.true_params), (exp.fit, params))]
    if response not in ("count", "categorical") and all(v is not None for v in sds):
        designs, wx, mc = _loss_designs(exp)
        sd = np.sqrt([np.max(v) for v in sds])
        out = jax.device_get(_continuous_distance(_true_device(exp), jax.tree_util.tree_map(to_device, params),
                                                  designs, wx, sd, exp.truth, exp.fit, kind, Y_POINTS, mc))
        value = float(out[0])
        err = quadrature_error(value, float(out[1]), per_x=out[2]) if mc else \
            quadrature_error(value, float(out[1]), float(out[2]))
        return DensityDistance(value=value, error=err, method="monte-carlo" if mc else "quadrature")
    if response == "count":
        kw["y_support"] = _count_support(exp, params, nodes)
    elif response != "categorical":
        kw["y_range"] = _y_range(exp, params, nodes)
    return conditional_distance(_logpdf_fn(exp.truth, exp.true_params), _logpdf_fn(exp.fit, params), kind=kind,
                                categorical=response == "categorical", **kw)


def regression_loss(exp: Experiment, params):
    """||f_fit - f_true||_{L2(mu)}: the L2 distance of the regression functions E[Y | X] over the covariate law."""
    if exp.fit.expert.response == "categorical":
        raise ValueError("loss kind 'l2_mean' needs a numeric response (the regression function E[Y | X]); "
                         "this model has a categorical one")
    kw, _ = _x_average(exp)

    def mean_fn(setup, p):
        dev = jax.tree_util.tree_map(to_device, p)

        def f(xm):
            X, G = setup.designs(xm)
            w = np.exp(np.asarray(setup.gate.log_weights(dev.gate, to_device(G.T))))          # (k, M)
            return np.sum(w * np.asarray(setup.expert.mean(dev.expert, to_device(X.T))), axis=0)
        return f
    return regression_distance(mean_fn(exp.truth, exp.true_params), mean_fn(exp.fit, params), **kw)


def equivalent_true_atoms(exp: Experiment) -> list:
    """[(perm, atoms)]: the truth's other representations (:meth:`Gate.equivalent_relabellings`)."""
    out = []
    for perm in exp.truth.gate.equivalent_relabellings(exp.true_params.gate):
        alt = em.MoEParams(gate=exp.truth.gate.permute(exp.true_params.gate, perm),
                           expert=exp.truth.expert.permute(exp.true_params.expert, perm))
        out.append((np.asarray(perm), model_atoms(exp.truth, exp.truth.canonical(alt))))
    return out


def _relabel_errors(errors: dict, perm) -> dict:
    """Per-atom error keys "name[j]" of a permuted truth back to the truth's own atom labels."""
    out = {}
    for key, v in errors.items():
        head, sep, tail = key.rpartition("[")
        if sep and tail.endswith("]") and tail[:-1].isdigit():
            key = "%s[%d]" % (head, int(perm[int(tail[:-1])]))
        out[key] = v
    return out


def _voronoi_loss(exp: Experiment, kind: str, fit_atoms, opts: dict, name: str):
    """(value, per-parameter errors) of a Voronoi loss at its minimum over the truth's representations.

    Error keys keep the truth's own atom labels whichever representation attains the minimum.
    """
    reps = [(None, dict(exp.extras["true_atoms"]))]
    reps += [(perm, dict(atoms)) for perm, atoms in exp.extras.get("true_atoms_alt", [])]
    best = None
    for perm, true_atoms in reps:
        for g in opts.get("against_reference", []):
            if "ref_atoms" not in exp.extras:
                raise ValueError("loss %r compares with a reference, but the spec has none" % name)
            true_atoms[g] = exp.extras["ref_atoms"][g]
        lv = theory_loss(kind, fit_atoms, true_atoms, opts)
        if best is None or lv.value < best[0]:
            best = (lv.value, lv.errors if perm is None else _relabel_errors(lv.errors, perm))
    return best


def compute_losses(exp: Experiment, params):
    """Loss values, numerical errors of the density losses, per-parameter errors (first Voronoi loss)."""
    fit_atoms = model_atoms(exp.fit, params)
    losses, loss_err, errors = {}, {}, None
    for L in exp.spec.losses:
        kind, opts = L["kind"], L.get("options", {}) or {}
        if kind in VORONOI_KINDS:
            losses[L["name"]], errs = _voronoi_loss(exp, kind, fit_atoms, opts, L["name"])
            if errors is None:
                errors = errs
        elif kind in DENSITY_KINDS or kind == "l2_mean":
            d = density_loss(exp, params, kind) if kind in DENSITY_KINDS else regression_loss(exp, params)
            losses[L["name"]], loss_err[L["name"]] = d.value, d.error
        else:
            raise ValueError("unknown loss kind %r (Voronoi: %s; density: %s; regression function: l2_mean)"
                             % (kind, ", ".join(VORONOI_KINDS), ", ".join(DENSITY_KINDS)))
    return losses, loss_err, errors or {}


# --------------------------------------------------------------------------- the task

def routing_of(exp: Experiment, n: int, rep: int, params, data=None) -> dict | None:
    """Router summary of the fitted gate on the replicate's data (:func:`moestat.routing.routing_summary`).

    K is the router's own (1 for dense gates); None for joint (Gaussian) gates, which route on the
    covariates' density rather than a conditional router.  ``data`` is the replicate's padded
    :class:`~moestat.data.design.Data` when the caller has it (otherwise it is drawn again).
    """
    from ..routing import default_top_k, router_probs, routing_summary
    gate = exp.fit.gate
    if gate.joint:
        return None
    if data is None:
        _, _, data = replicate_data(exp, n, rep)
    try:
        p = router_probs(gate, jax.tree_util.tree_map(to_device, params.gate), data.Xg, n)
        return routing_summary(p, default_top_k(gate))
    except ValueError:              # e.g. non-finite gate parameters of a failed fit: no summary
        return None


def _row(exp, n, rep, est, data=None):
    best, out = est.best, est.runs
    pick = lambda a: np.asarray(a)[best]  # noqa: E731
    params = exp.fit.canonical(est.fit.params)
    ll = float(pick(out.loglik))
    row = {"n": int(n), "rep": int(rep), "loglik": ll, "n_iter": int(pick(out.n_iter)),
           "converged": bool(pick(out.converged)) and bool(np.isfinite(ll)), "degenerate": bool(est.degenerate[best]),
           "start": best, "n_starts": int(est.degenerate.size), "params": params_to_json(params)}
    row["routing"] = routing_of(exp, n, rep, params, data)
    try:
        row["losses"], row["loss_errors"], row["errors"] = compute_losses(exp, params)
        row["error"] = None
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:  # recorded, never dropped
        row["losses"], row["loss_errors"], row["errors"] = {}, {}, {}
        row["error"] = "%s: %s" % (type(exc).__name__, exc)
    return row


def run_task(task: dict) -> list[dict]:
    """Run one task ``{"spec": raw spec, "reference": ..., "n": n, "reps": [...], "batch": "auto"}``.

    Returns one result row (a plain dict) per replicate; ``seconds`` is the
    replicate's wall time (its share of the block's on the batched path).
    """
    n, reps = int(task["n"]), [int(r) for r in task["reps"]]
    exp = experiment_for(task["spec"], task.get("reference"), n)
    batch = task.get("batch", "auto")
    batched = batch == "vmap" or (batch == "auto" and backend() != "cpu")
    rows = []
    with threadpools().limit(limits=1):
        if batched:
            t0 = time.perf_counter()
            results, bs = fit_block_batched(exp, n, reps, task.get("batch_size"))
            share = (time.perf_counter() - t0) / len(reps)
            for r, est in zip(reps, results):
                t1 = time.perf_counter()
                rows.append(_row(exp, n, r, est))
                rows[-1]["seconds"] = share + time.perf_counter() - t1
        else:
            for r in reps:
                t0 = time.perf_counter()
                drawn = replicate_data(exp, n, r)
                rows.append(_row(exp, n, r, fit_replicate_cpu(exp, n, r, drawn), drawn[2]))
                rows[-1]["seconds"] = time.perf_counter() - t0
    for row in rows:
        row["host"] = os.uname().nodename
    return rows
