"""select_k: restarts per k, AIC / BIC / ICL, and the choice (moestat.inference.selection)."""
from __future__ import annotations

import functools

import matplotlib
import numpy as np
import pytest

import moestat as ms
from _inference_helpers import REFERENCE_LOGLIK, ols_loglik

matplotlib.use("Agg")


@functools.lru_cache(maxsize=None)
def sel_moe2():
    return ms.select_k(ms.GaussianMoE(2), "y ~ x", data=ms.datasets.load_sim_moe2(), ks=[1, 2, 3])


@pytest.mark.slow
def test_select_k_on_sim_moe2_picks_two_by_bic():
    sel = sel_moe2()
    assert sel.best_k == 2 and sel.criterion == "bic"
    t = sel.table.set_index("k")
    df = ms.datasets.load_sim_moe2()
    assert t.loc[2, "loglik"] == pytest.approx(REFERENCE_LOGLIK, abs=1e-6)
    X = np.column_stack([np.ones(len(df)), df["x"]])
    assert t.loc[1, "loglik"] == pytest.approx(ols_loglik(X, df["y"].to_numpy()), abs=1e-6)
    assert list(t["df"]) == [3, 8, 13]
    n = 500
    np.testing.assert_allclose(t["bic"], -2 * t["loglik"] + np.log(n) * t["df"], rtol=1e-12)
    np.testing.assert_allclose(t["aic"], -2 * t["loglik"] + 2 * t["df"], rtol=1e-12)
    assert t.loc[1, "icl"] == pytest.approx(t.loc[1, "bic"])      # one expert: no classification entropy
    assert (t["icl"] > t["bic"]).loc[[2, 3]].all()
    assert list(t["selected"]) == [False, True, False]
    assert sel.best is sel.fits[2] and set(sel.fits) == {1, 2, 3}
    assert len(sel.best.restarts) == 10                           # every k got the restarts
    assert sel.choose("icl") == 2 and sel.choose("aic") == 2
    assert "BIC chooses k=2" in repr(sel)


@pytest.mark.slow
def test_select_k_recovers_three_experts():
    df = ms.datasets.simulate_moe3(500, seed=1)
    sel = ms.select_k(ms.GaussianMoE(2), "y ~ x", data=df, ks=[2, 3, 4])
    assert sel.best_k == 3
    ll = sel.table.set_index("k")["loglik"]
    assert ll[3] - ll[2] > 100 and 0 < ll[4] - ll[3] < 20


@pytest.mark.slow
def test_select_k_arguments_and_plot():
    df = ms.datasets.load_sim_moe2()
    with pytest.raises(ValueError, match="criterion must be one of 'bic', 'aic', 'icl'"):
        ms.select_k(ms.GaussianMoE(2), "y ~ x", data=df, criterion="hqic")
    with pytest.raises(ValueError, match="every k in ks must be >= 1"):
        ms.select_k(ms.GaussianMoE(2), "y ~ x", data=df, ks=[0, 1])
    with pytest.raises(ValueError, match="ks is empty"):
        ms.select_k(ms.GaussianMoE(2), "y ~ x", data=df, ks=[])
    with pytest.raises(TypeError, match="ks must be a sequence of integers"):
        ms.select_k(ms.GaussianMoE(2), "y ~ x", data=df, ks=3)
    ax = sel_moe2().plot()
    assert [l.get_label() for l in ax.get_lines()[:3]] == ["BIC", "AIC", "ICL"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), sel_moe2().table["bic"])


def test_select_k_records_a_k_that_cannot_be_fitted():
    df = ms.datasets.load_sim_moe2()
    w = np.zeros(len(df))
    w[:20] = 1.0          # 20 effective rows (weights keep the padded size, hence the compiled programs)
    sel = ms.select_k(ms.GaussianMoE(2), "y ~ x", data=df, weights=w, ks=[1, 5])
    t = sel.table.set_index("k")
    assert sel.best_k == 1
    assert "too few observations" in t.loc[5, "notes"] and np.isnan(t.loc[5, "bic"])
