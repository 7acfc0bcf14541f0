"""Short EM before full EM (``fit(finalists=...)``, :func:`moestat.fitting.shortem.estimate_screened`)."""
import warnings

import jax
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import moestat as ms
from moestat.data.design import make_data
from moestat.fitting import em, pipeline, screen, shortem
from references import numpy_em as ref


def _problem(df, k=2, n_init=6, seed=0):
    model = ms.GaussianMoE(k)
    d = model.design("y ~ x", data=df)
    info = model.expert.prepare(d.y, d.w)
    info["n_total"] = float(d.w.sum())
    dat = make_data(d.X, d.Xg, d.y, d.w)
    base = model.base_params(d.X.shape[1], d.Xg.shape[1], info)
    R = pipeline.pad_responsibilities(pipeline.start_responsibilities(model.gate, model.expert, d.X, d.y, d.w, k,
                                                                      n_init, seed), dat.w.shape[0])
    return model, d, info, dat, base, R


def test_matching_equals_linear_sum_assignment():
    """The exhaustive best matching of small tables is scipy's assignment optimum; relabelled partitions agree fully."""
    rng = np.random.default_rng(3)
    for k in range(1, 10):
        for _ in range(5):
            table = rng.integers(0, 50, size=(k, k)).astype(float)
            r, c = linear_sum_assignment(-table)
            assert screen._matched_total(table) == table[r, c].sum()
    a = rng.integers(0, 4, size=300)
    perm = np.array([2, 0, 3, 1])
    assert screen.partition_agreement(a, perm[a], 4) == 1.0
    b = perm[a].copy()
    b[:30] = (b[:30] + 1) % 4           # 30 points moved to another expert
    assert screen.partition_agreement(a, b, 4) == pytest.approx(270 / 300)


def test_screened_path_is_numpy_em_from_its_start_and_short_runs_stop_at_the_loose_tolerance(sim_df):
    """The reported start's joined path (short run, then full run) is the NumPy EM path from its starting
    values; every other start stopped at the screening tolerance, read off its own path."""
    model, d, info, dat, base, R = _problem(sim_df)
    cfg, ctl = model.config(), model.control(info)
    est = shortem.estimate_screened(R, base, dat, ctl, em.no_fixed(base), cfg, info, finalists=1, n_live=d.n,
                                   polish_fit=False)
    assert est.finalist.sum() == 1 and est.finalist[est.best]
    p0 = jax.tree_util.tree_map(lambda a: np.asarray(a)[est.best], est.starts)
    n = int(est.fit.n_iter)
    trace = np.asarray(est.fit.trace)
    assert np.isfinite(trace[:n + 1]).all() and np.isnan(trace[n + 1:]).all()
    _, _, _, tr_ref = ref.fit(np.asarray(p0.gate.coef), np.asarray(p0.expert.coef), np.asarray(p0.expert.sigma2),
                              d.X, d.Xg, d.y, d.w, n)
    np.testing.assert_allclose(trace[:n], tr_ref, rtol=1e-10)
    # converged to tol = 1e-8 at the end of the joined path
    assert trace[n] - trace[n - 1] <= 1e-8 * abs(trace[n]) and est.fit.converged
    for j in np.flatnonzero(~est.finalist):
        path = np.asarray(est.runs.trace[j])
        path = path[np.isfinite(path)]
        steps = np.diff(path)
        loose = shortem.SCREEN_TOL * np.abs(path[1:])
        assert steps[-1] <= loose[-1] and (steps[:-1] > loose[:-1]).all()
        assert est.runs.loglik[j] <= est.fit.loglik


def test_default_fit_equals_every_start_fit_and_keeps_every_start_in_the_table(sim_df, sim_reference):
    res = ms.GaussianMoE(2).fit("y ~ x", data=sim_df)
    every = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, finalists=None)
    assert res.loglik == pytest.approx(sim_reference["mle"]["loglik"], abs=1e-6)
    assert abs(res.loglik - every.loglik) <= 1e-9 * abs(every.loglik)
    r = res.restarts
    assert len(r) == 10 and 1 <= r["finalist"].sum() <= 2 and r.loc[res.best_start, "finalist"]
    assert r["finalist"].to_numpy()[r["basin"].to_numpy()].all()      # every start stands for a continued one
    assert every.restarts["finalist"].all() and (every.restarts["basin"] == every.restarts["start"]).all()
    # far fewer EM iterations in all: the other starts stop after their short runs
    assert r["n_iter"].sum() < every.restarts["n_iter"].sum()


def test_degenerate_short_runs_do_not_go_on(sim_df):
    """A start whose short run ends at a spurious maximum (an expert on ~8 points, sd 0.01, log-likelihood above
    the proper fit) ranks after every non-degenerate one; with prefer_nondegenerate=False it goes on and wins."""
    with pytest.warns(ms.DegenerateFitWarning, match="higher log-likelihood .* at a degenerate solution"):
        res = ms.GaussianMoE(3).fit("y ~ x", data=sim_df, n_init=3, seed=3, init="random", finalists=2)
    r = res.restarts
    assert r["degenerate"].any() and not r.loc[res.best_start, "degenerate"]
    assert not r.loc[r["degenerate"], "finalist"].any() and r.loc[r["degenerate"], "loglik"].max() > res.loglik
    every = ms.GaussianMoE(3).fit("y ~ x", data=sim_df, n_init=3, seed=3, init="random", finalists=None)
    assert res.loglik == pytest.approx(every.loglik, abs=1e-9 * abs(every.loglik))
    with pytest.warns(ms.DegenerateFitWarning, match="the reported fit is degenerate"):
        kept = ms.GaussianMoE(3).fit("y ~ x", data=sim_df, n_init=3, seed=3, init="random", finalists=1,
                                     prefer_nondegenerate=False)
    assert kept.restarts.loc[kept.best_start, "finalist"] and kept.loglik > res.loglik
    assert np.sqrt(kept.params_tree.expert.sigma2).min() < 0.05


def test_finalists_is_validated(sim_df):
    with pytest.raises(ValueError, match="finalists"):
        ms.GaussianMoE(2).fit("y ~ x", data=sim_df, finalists=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, n_init=2, finalists=3)   # fewer starts: all run in full
    assert one.restarts["finalist"].all()
