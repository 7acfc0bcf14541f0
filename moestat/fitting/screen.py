"""Screened starts: many cheap candidate partitions, a short EM run each, the best go on to full EM.

Random restarts fail on hard MoE designs because most random partitions of the
data lead EM to a local maximum.  A steep gate partitions the *gate covariates*
by hyperplanes, and a Voronoi partition around k points is exactly such a
partition (a softmax gate in the limit of large slopes), so candidates are
Voronoi partitions of the standardised gate covariates around random data
points, plus k-means partitions of the gate covariates and of the expert
features.  Every candidate gets M-steps on its partition and a short EM run
(EM stopped at a loose tolerance); the ``n_init`` candidates with the highest
log-likelihood are returned as starting values for the full EM.  Candidates
run in batches of ``n_init`` through the same compiled programs as ordinary
restarts, so screening adds no compilation.

Every estimator's default fit screens its own starts the same way
(:func:`estimate_screened`, the emEM strategy of Biernacki, Celeux & Govaert
2003): a short EM run from every start, then full EM from the best few
distinct ones only.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from . import em
from .._jax import to_device
from ..data.design import standardize_columns
from .starts import kmeans_labels, labels_to_resp, random_center_labels


def gate_features(Xg: np.ndarray) -> np.ndarray | None:
    """The non-constant gate columns (n, q), or None when the gate has no covariates."""
    cols = [j for j in range(Xg.shape[1]) if np.ptp(Xg[:, j]) > 0]
    return Xg[:, cols] if cols else None


def candidate_responsibilities(Fg, Fe, w, k, n_candidates, seed, expert_share: float = 0.5) -> np.ndarray:
    """(n_candidates, k, n) starting partitions as softened responsibilities.

    Candidate 0 is k-means of the gate features, candidate 1 k-means of the
    expert features (for MoE with categorical y: covariates and one-hot
    classes); the rest are Voronoi cells around random data points, a share
    ``expert_share`` of them in the expert features and the others in the
    gate features.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 104729]))
    w = np.asarray(w)
    Fg = standardize_columns(Fg, w) if Fg is not None else None
    Fe = standardize_columns(Fe, w)
    Fg = Fe if Fg is None else Fg
    out = [kmeans_labels(Fg, w, k, rng), kmeans_labels(Fe, w, k, rng)]
    n_expert = int(round(expert_share * (n_candidates - 2)))
    for j in range(n_candidates - 2):
        # spread the expert-feature candidates evenly through the list (batches stay mixed)
        use_e = int((j + 1) * n_expert / max(n_candidates - 2, 1)) > int(j * n_expert / max(n_candidates - 2, 1))
        out.append(random_center_labels(Fe if use_e else Fg, w, k, rng))
    return np.stack([labels_to_resp(lab, k, soften=0.05) for lab in out[:n_candidates]])


def partition_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of points two labellings put together, under the best matching of their labels."""
    table = np.bincount(a * k + b, minlength=k * k).reshape(k, k).astype(np.float64)
    return _matched_total(table) / max(a.size, 1)


def _matched_total(table: np.ndarray) -> float:
    """Largest sum of entries of a square table over a one-to-one matching of its rows and columns.

    Small tables are searched exhaustively (at most 8! matchings): a first fit
    then does not import ``scipy.optimize`` (about half a second).
    """
    k = table.shape[0]
    if k <= 8:
        perms = np.array(list(itertools.permutations(range(k))))
        return float(table[np.arange(k), perms].sum(1).max())
    from scipy.optimize import linear_sum_assignment
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum())


#: two fits whose MAP partitions agree on more than this share of the points are in one basin
SAME_BASIN = 0.99


def distinct_best(ll: np.ndarray, labels: np.ndarray, k: int, n_keep: int, same: float = SAME_BASIN,
                  fill: bool = True) -> np.ndarray:
    """Indices of the n_keep best candidates, skipping any whose partition repeats a better one's.

    Two candidates whose MAP partitions agree on more than ``same`` of the
    points are taken to be in the same basin; when fewer than ``n_keep``
    distinct basins exist, the best repeats fill the rest (``fill``), or
    only the distinct candidates with a finite ``ll`` are returned.
    """
    order = np.argsort(-ll, kind="stable")
    kept: list[int] = []
    for c in order:
        if not np.isfinite(ll[c]):
            continue
        if all(partition_agreement(labels[c], labels[j], k) < same for j in kept):
            kept.append(int(c))
        if len(kept) == n_keep:
            break
    if not fill:
        return np.array(kept, dtype=int)
    rest = [int(c) for c in order if int(c) not in kept]
    return np.array((kept + rest)[:n_keep])


def map_labels(params, dat, cfg, n_live: int) -> np.ndarray:
    """MAP expert of each of the first ``n_live`` points under each fit of a stack (S, n_live)."""
    S = jax.tree_util.tree_leaves(params)[0].shape[0]
    out = []
    for r in range(S):
        _, tau, _ = em.evaluate(jax.tree_util.tree_map(lambda a: a[r], params), dat, cfg)
        out.append(np.asarray(tau)[:, :n_live].argmax(0))
    return np.stack(out)


def screened_starts(R, base, dat, ctl, fixed, cfg, n_keep: int, seed: int, screen_tol: float = 1e-4,
                    batch_size: int = 1, n_live: int | None = None):
    """Short EM from every candidate (batches of ``n_keep``); the ``n_keep`` best distinct ones, stacked.

    R : (M, k, N) padded candidate responsibilities, M a multiple of n_keep.
    Returns (params stacked on a leading axis of n_keep, candidate log-likelihoods (M,)).
    """
    M = R.shape[0]
    n_live = R.shape[2] if n_live is None else n_live
    em1 = em.EMConfig(gate=cfg.gate, expert=cfg.expert, k=cfg.k, max_iter=1, algorithm="em")
    loose = ctl._replace(tol=jnp.asarray(screen_tol, dtype=ctl.tol.dtype))
    params, lls, labels = [], [], []
    for b in range(0, M, n_keep):
        p0 = em.params_from_resp(to_device(R[b:b + n_keep]), base, dat, ctl, fixed, em1,
                                 batch_size=min(batch_size, n_keep))
        keys = jax.random.split(jax.random.PRNGKey(seed + 7 * b + 1), n_keep)
        out = jax.device_get(em.fit_restarts(p0, dat, loose, fixed, keys, cfg, batch_size=min(batch_size, n_keep)))
        params.append(out.params)
        lls.append(np.asarray(out.loglik))
        labels.append(map_labels(out.params, dat, cfg, n_live))
    ll = np.concatenate(lls)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    best = distinct_best(ll, np.concatenate(labels), cfg.k, n_keep)
    stacked = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0)[best], *params)
    return jax.tree_util.tree_map(to_device, stacked), ll


# =========================================================================== short EM before full EM

#: relative tolerance that ends the short EM runs of :func:`estimate_screened`
SCREEN_TOL = 1e-6


def estimate_screened(R, base, data, ctl, fixed, cfg, info, *, finalists: int, n_live: int,
                      screen_tol: float = SCREEN_TOL, seed: int = 0, prefer_nondegenerate: bool = True,
                      polish_fit: bool = True, free=None, batch_size: int = 1, run_cfg=None):
    """Short EM from every start, full EM from the best few distinct ones (emEM), then the choice and the polish.

    Every start gets its M-steps and an EM run stopped at the loose relative
    tolerance ``screen_tol`` (the same compiled program as full EM from every
    start, :func:`moestat.fitting.pipeline.run_from_resp`).  The screened fits
    are ranked by log-likelihood, finite non-degenerate fits first (the
    spurious-maximum rule, :func:`moestat.fitting.pipeline.degenerate_starts`);
    fits whose MAP partitions repeat a better one's are in the same basin
    (:func:`distinct_best`).  The ``finalists`` best distinct fits continue to
    the full tolerance ``ctl.tol``, one at a time (the program of a fit from
    given parameters); while none of the continued fits is finite and
    non-degenerate, the next distinct candidate continues too.  The best
    continued fit is chosen and polished as by :func:`moestat.fitting.pipeline.finish`.

    Parameters
    ----------
    R : (S, k, N) padded starting responsibilities
    base, data, ctl, fixed, cfg, info
        As for :func:`moestat.fitting.pipeline.estimate`.
    finalists : int
        Distinct screened fits continued to the full tolerance (at least 1).
    n_live : int
        Rows of the data (the first ``n_live`` of the N padded points) whose MAP partitions are compared.
    screen_tol : float
        Relative tolerance of the short runs (``ctl.tol`` when that is looser).
    seed, prefer_nondegenerate, polish_fit, free, batch_size, run_cfg
        As for :func:`moestat.fitting.pipeline.estimate`.

    Returns
    -------
    moestat.fitting.pipeline.Estimate
        Every start's row: a continued start's screened and full runs joined
        (iterations added, log-likelihood paths one after the other), the
        others' screened runs; ``finalist`` (S,) marks the continued starts
        and ``basin`` (S,) names, for each start, the continued start whose
        screened partition it repeats (itself when none).

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=6, finalists=1)
    >>> int(res.restarts["finalist"].sum()), len(res.restarts)
    (1, 6)
    """
    from . import pipeline
    run_cfg = run_cfg or cfg
    S, k = R.shape[0], cfg.k
    seed = np.asarray(seed, dtype=np.int64 if jax.config.jax_enable_x64 else np.int32)
    tol = np.asarray(ctl.tol)
    loose = ctl._replace(tol=np.asarray(max(float(screen_tol), float(tol)), dtype=tol.dtype))
    params0, runs = pipeline.run_from_resp(R, base, data, loose, fixed, seed, run_cfg, batch_size=min(batch_size, S))
    fits, n_eff = jax.device_get(runs)
    n_eff = np.array(n_eff)
    degenerate = pipeline.degenerate_starts(cfg.expert, fits.params, n_eff, info)
    labels = map_labels(fits.params, data, cfg, n_live)
    ll = np.asarray(fits.loglik, dtype=np.float64)
    ok = np.isfinite(ll) & ~degenerate
    nondegenerate_first = prefer_nondegenerate and bool(ok.any())
    score = np.where(ok if nondegenerate_first else np.isfinite(ll), ll, -np.inf)
    ranked = list(distinct_best(score, labels, k, S, fill=False)) or list(range(min(finalists, S)))

    full = {}
    for c in ranked:
        good = any(np.isfinite(f.loglik) and not d for f, _, d in full.values())
        if len(full) >= finalists and (good or not nondegenerate_first):
            break
        one = jax.tree_util.tree_map(lambda a: np.asarray(a)[c:c + 1], fits.params)
        cf, cn = jax.device_get(pipeline.run(one, data, ctl, fixed, seed, run_cfg, batch_size=1))
        d = bool(pipeline.degenerate_starts(cfg.expert, cf.params, cn, info)[0])
        full[c] = (jax.tree_util.tree_map(lambda a: np.asarray(a)[0], cf), np.asarray(cn)[0], d)

    merged = _join_runs(fits, {c: f for c, (f, _, _) in full.items()}, run_cfg.max_iter)
    for c, (_, cn, _) in full.items():
        n_eff[c] = cn
    finalist = np.zeros(S, dtype=bool)
    finalist[list(full)] = True
    est = pipeline.finish(merged, n_eff, data, ctl, fixed, cfg, info, prefer_nondegenerate=prefer_nondegenerate,
                          polish_fit=polish_fit, free=free, starts=params0, eligible=finalist)
    est.finalist = finalist
    est.basin = _basins(labels, finalist, k)
    return est


def _join_runs(fits, full: dict, max_iter: int):
    """The screened runs (leading axis S, host arrays) with each continued start's run joined to its screened run.

    A continued start's row gets the full run's parameters, log-likelihood and
    convergence, the iterations of both runs, and the per-iteration records
    (``trace``, ``gate_trace``) of the screened run followed by the full run's
    (which begins where the screened run ended); the records are NaN-padded to
    a common length, at least ``max_iter``.
    """
    steps = {c: (int(fits.n_iter[c]), int(f.n_iter)) for c, f in full.items()}
    T = np.asarray(fits.trace).shape[1]
    length = max([max_iter] + [s + min(f + 1, T) for s, f in steps.values()])

    def path(screened, *continued):   # (S, T, ...) screened records, then one (T, ...) per continued start
        out = np.full((screened.shape[0], length) + screened.shape[2:], np.nan, dtype=screened.dtype)
        out[:, :T] = screened
        for (c, (s, f)), rec in zip(steps.items(), continued):
            m = min(f + 1, T)
            out[c, s:] = np.nan
            out[c, s:s + m] = rec[:m]
        return out

    def row(screened, *continued):    # (S, ...) with the continued starts' values in their rows
        out = np.array(screened)
        for c, value in zip(steps, continued):
            out[c] = value
        return out

    cont = list(full.values())
    tmap = jax.tree_util.tree_map
    n_iter = np.array(fits.n_iter)
    for c, (s, f) in steps.items():
        n_iter[c] = s + f
    return fits._replace(
        params=tmap(row, fits.params, *[f.params for f in cont]),
        loglik=row(fits.loglik, *[f.loglik for f in cont]), n_iter=n_iter,
        converged=row(fits.converged, *[f.converged for f in cont]),
        trace=path(np.asarray(fits.trace), *[np.asarray(f.trace) for f in cont]),
        gate_trace=None if fits.gate_trace is None else tmap(path, fits.gate_trace, *[f.gate_trace for f in cont]))


def _basins(labels: np.ndarray, finalist: np.ndarray, k: int, same: float = SAME_BASIN) -> np.ndarray:
    """(S,) for each start, the continued start whose MAP partition its own repeats best (itself when none)."""
    basin = np.arange(labels.shape[0])
    cont = np.flatnonzero(finalist)
    for j in np.flatnonzero(~finalist):
        agree = [partition_agreement(labels[j], labels[c], k) for c in cont]
        if agree and max(agree) >= same:
            basin[j] = cont[int(np.argmax(agree))]
    return basin
