"""Fitted results pickle, save/load, and travel back from process-pool and Dask tasks."""
from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest

import moestat as ms
from _persistence_tasks import fit_formula, formula_frame


def _same_results(a, b, new, **kw):
    """Predictions of every kind, the summary text and the standard errors agree exactly."""
    for kind in ("mean", "experts", "gate"):
        np.testing.assert_array_equal(np.asarray(a.predict(new, kind=kind, **kw)),
                                      np.asarray(b.predict(new, kind=kind, **kw)))
    assert str(a.summary()) == str(b.summary())
    pd.testing.assert_series_equal(a.bse, b.bse)
    assert a.llf == b.llf and type(a) is type(b)


@pytest.fixture(scope="module")
def formula_fit():
    return fit_formula()


def test_formula_fit_pickles_and_encodes_new_data_as_at_fit(formula_fit):
    res = formula_fit
    back = pickle.loads(pickle.dumps(res))
    # new rows: one category level only and a different mean of x, so that centring and the dummy
    # coding must come from the fitted data (the pickled formula columns), not from the new rows
    new = pd.DataFrame({"x": [3.0, 4.0], "z": [0.5, -0.5], "g": ["c", "c"]}, index=["r1", "r2"])
    _same_results(res, back, new)
    df = formula_frame()
    coef = res.params.loc["expert"]
    xc = 3.0 - df["x"].mean()    # center() uses the fitted mean
    # expert means by hand: Intercept + C(g)[T.c] + slope * centred x
    mine = back.predict(new.iloc[:1], kind="experts").to_numpy()[0]
    hand = [coef[(e, "Intercept")] + coef[(e, "C(g)[T.c]")] + coef[(e, "center(x)")] * xc for e in (1, 2)]
    np.testing.assert_allclose(mine, hand, rtol=1e-12)
    assert list(back.predict(new).index) == ["r1", "r2"]


def test_save_load_round_trip(formula_fit, tmp_path):
    path = tmp_path / "fit.pickle"
    formula_fit.save(path)
    back = ms.load(path)
    _same_results(formula_fit, back, formula_frame().iloc[:7])
    with pytest.raises(ValueError, match="remove_data=True is not supported"):
        formula_fit.save(tmp_path / "x.pickle", remove_data=True)


@pytest.mark.slow
def test_every_estimator_pickles():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 1))
    y = np.where(x[:, 0] > 0, 2 * x[:, 0], -x[:, 0]) + 0.3 * rng.normal(size=240)
    labels = np.where(rng.random(240) < 1 / (1 + np.exp(-2 * x[:, 0])), "yes", "no")
    fits = [ms.GaussianMoE(2, gating="modified_softmax").fit(x, y, n_init=1),
            ms.GaussianMoE(2, expert="relu").fit(x, y, n_init=1),
            ms.MultinomialMoE(2).fit(pd.DataFrame({"x": x[:, 0]}), labels, n_init=1),
            ms.DeepSeekMoE(n_shared=1, n_routed=2, shared_expert="linear", routed_expert="linear").fit(
                x, y, n_init=1, max_iter=50)]
    new = x[:5]
    for res in fits:
        back = pickle.loads(pickle.dumps(res))
        kinds = ("proba", "experts", "gate") if isinstance(res, ms.MultinomialResults) else ("mean", "experts", "gate")
        for kind in kinds:
            np.testing.assert_array_equal(np.asarray(back.predict(new, kind=kind)),
                                          np.asarray(res.predict(new, kind=kind)))
        pd.testing.assert_frame_equal(back.params_frame(), res.params_frame())
        assert back.llf == res.llf and back.aic == res.aic
    assert str(pickle.loads(pickle.dumps(fits[2])).summary()) == str(fits[2].summary())   # another results class


@pytest.mark.slow
def test_results_return_from_a_process_pool(formula_fit):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        remote = pool.submit(fit_formula).result(timeout=300)
    _same_results(formula_fit, remote, formula_frame().iloc[:5])


@pytest.mark.slow
def test_results_return_from_a_dask_task(formula_fit):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        remote = client.submit(fit_formula, pure=False).result(timeout=300)
    _same_results(formula_fit, remote, formula_frame().iloc[:5])
