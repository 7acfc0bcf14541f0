"""Short EM before full EM (emEM): every start runs EM to a loose tolerance, only the best distinct ones go on.

The strategy of Biernacki, Celeux & Govaert (2003), Rmixmod's ``smallEM`` and
flexmix's ``initFlexmix``: most of the cost of running every start to the
full tolerance is starts that crawl (a plateau, a slow approach to a poor or
the same maximum); short runs rank the starts, and the best few distinct
ones (:func:`moestat.fitting.screen.distinct_best`) continue.  Used by every
estimator's default fit (:meth:`moestat.estimators.base.MoEModel.fit`,
``finalists``); :func:`moestat.fitting.pipeline.estimate`, which the Monte
Carlo harness calls with its own starts, is unchanged.
"""
from __future__ import annotations

import jax
import numpy as np

from . import pipeline
from .screen import SAME_BASIN, distinct_best, map_labels, partition_agreement

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
    (:func:`moestat.fitting.screen.distinct_best`).  The ``finalists`` best distinct fits continue to
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
