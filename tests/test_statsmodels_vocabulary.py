"""statsmodels' results vocabulary on moestat results, checked against statsmodels where k = 1 coincides.

GaussianMoE(1) is OLS fitted by maximum likelihood and MultinomialMoE(1) is
MNLogit.  moestat's covariance is the observed information at the MLE, so for
OLS it is statsmodels' covariance times (n - p) / n (sigma^2 = RSS / n rather
than RSS / (n - p)), and its tests are normal (statsmodels ``use_t=False``).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, stats

import moestat as ms

N, P = 160, 3


@pytest.fixture(scope="module")
def ols_pair():
    rng = np.random.default_rng(11)
    df = pd.DataFrame({"x1": rng.normal(size=N), "x2": rng.normal(size=N)}, index=np.arange(1000, 1000 + N))
    df["y"] = 0.5 + 1.2 * df.x1 + 1.0 * df.x2 + rng.normal(scale=0.7, size=N)
    res = ms.GaussianMoE(1).fit("y ~ x1 + x2", data=df)
    ols = sm.OLS(df["y"], sm.add_constant(df[["x1", "x2"]])).fit()
    return df, res, ols


def test_gaussian_k1_matches_ols(ols_pair):
    df, res, ols = ols_pair
    shrink = (N - P) / N
    assert res.llf == pytest.approx(ols.llf, rel=1e-10)
    assert res.llnull == pytest.approx(sm.OLS(df["y"], np.ones(N)).fit().llf, rel=1e-10)
    assert res.nobs == ols.nobs and res.df_model == ols.df_model and res.df_resid == ols.df_resid
    coef = res.params.loc["expert", 1]
    np.testing.assert_allclose(coef[["Intercept", "x1", "x2"]].to_numpy(), ols.params.to_numpy(), rtol=1e-8)
    assert coef["sigma"] == pytest.approx(np.sqrt(ols.ssr / N), rel=1e-8)
    bse = res.bse.loc["expert", 1][["Intercept", "x1", "x2"]].to_numpy()
    np.testing.assert_allclose(bse, ols.bse.to_numpy() * np.sqrt(shrink), rtol=1e-6)
    assert res.prsquared == pytest.approx(1 - ols.llf / sm.OLS(df["y"], np.ones(N)).fit().llf, rel=1e-10)
    cs = 1 - np.exp(2 * (sm.OLS(df["y"], np.ones(N)).fit().llf - ols.llf) / N)
    assert res.pseudo_rsquared("cs") == pytest.approx(cs, rel=1e-10)
    # fitted values and residuals keep the data's index
    pd.testing.assert_index_equal(res.fittedvalues.index, df.index)
    np.testing.assert_allclose(res.fittedvalues.to_numpy(), ols.fittedvalues.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(res.resid.to_numpy(), ols.resid.to_numpy(), atol=1e-9)


def test_gaussian_k1_tests_match_ols(ols_pair):
    df, res, ols = ols_pair
    cov = ols.cov_params() * (N - P) / N
    mine = res.t_test("expert1:x1 = expert1:x2")
    ref = ols.t_test("x1 = x2", cov_p=cov, use_t=False)
    for a in ("effect", "sd", "statistic", "pvalue"):
        np.testing.assert_allclose(np.ravel(getattr(mine, a)), np.ravel(getattr(ref, a)), rtol=1e-6)
    w = res.wald_test(["expert1:x1 = 1", "expert1:x2 = 0"])
    wref = ols.wald_test("x1 = 1, x2 = 0", cov_p=cov, use_f=False, scalar=True)
    assert w.statistic == pytest.approx(float(wref.statistic), rel=1e-6)
    assert w.df_denom == 2 and w.pvalue == pytest.approx(float(wref.pvalue), rel=1e-5, abs=1e-300)
    # an array R (one row per constraint) is the same test as the string
    R = np.zeros((1, len(res.param_names)))
    R[0, res.param_names.index("expert1:x1")], R[0, res.param_names.index("expert1:x2")] = 1, -1
    assert float(res.t_test(R).statistic[0]) == pytest.approx(float(mine.statistic[0]), rel=1e-12)


def test_gaussian_k1_prediction_intervals_match_ols(ols_pair):
    df, res, ols = ols_pair
    new = pd.DataFrame({"x1": [-1.0, 0.3, 2.0], "x2": [0.5, -0.2, 1.0]}, index=["a", "b", "c"])
    alpha = 0.1
    mine = res.get_prediction(new).summary_frame(alpha=alpha)
    ref = ols.get_prediction(sm.add_constant(new, has_constant="add")).summary_frame(alpha=alpha)
    assert list(mine.index) == ["a", "b", "c"]
    np.testing.assert_allclose(mine["mean"], ref["mean"], rtol=1e-9)
    se = ref["mean_se"].to_numpy() * np.sqrt((N - P) / N)          # MLE scale instead of RSS / (n - p)
    np.testing.assert_allclose(mine["mean_se"], se, rtol=1e-6)
    z = stats.norm.ppf(1 - alpha / 2)
    np.testing.assert_allclose(mine["mean_ci_upper"], ref["mean"] + z * se, rtol=1e-6)
    # statsmodels' observation interval is mean +- t * sqrt(s^2 + se^2); moestat's is the plug-in
    # predictive distribution N(mean, sigma_ML^2): recover s^2 from statsmodels' own interval
    t = stats.t.ppf(1 - alpha / 2, N - P)
    s2 = ((ref["obs_ci_upper"] - ref["mean"]) / t) ** 2 - ref["mean_se"] ** 2
    sigma_ml = np.sqrt(s2.to_numpy() * (N - P) / N)
    np.testing.assert_allclose(mine["obs_ci_lower"], ref["mean"] - z * sigma_ml, rtol=1e-7)
    np.testing.assert_allclose(mine["obs_ci_upper"], ref["mean"] + z * sigma_ml, rtol=1e-7)


def test_mixture_predictive_quantiles_against_a_root_finder(sim_fit):
    new = pd.DataFrame({"x": [-0.8, 0.05, 0.9]})
    f = sim_fit.get_prediction(new).summary_frame(alpha=0.2)
    P_ = sim_fit.params_tree
    X = np.column_stack([np.ones(3), new.x])
    eta = X @ P_.gate.coef.T
    g = np.exp(eta - eta.max(1, keepdims=True))
    g /= g.sum(1, keepdims=True)
    mu, sd = X @ P_.expert.coef.T, np.sqrt(P_.expert.sigma2)
    for i in range(3):
        cdf = lambda y: float(g[i] @ stats.norm.cdf((y - mu[i]) / sd))
        lo = optimize.brentq(lambda y: cdf(y) - 0.1, -20, 20, xtol=1e-14)
        hi = optimize.brentq(lambda y: cdf(y) - 0.9, -20, 20, xtol=1e-14)
        assert f["obs_ci_lower"].iloc[i] == pytest.approx(lo, abs=1e-10)
        assert f["obs_ci_upper"].iloc[i] == pytest.approx(hi, abs=1e-10)
    np.testing.assert_allclose(f["mean"], (g * mu).sum(1), rtol=1e-12)


def test_equal_slopes_across_experts(sim_fit):
    names = sim_fit.param_names
    assert names[:3] == ["expert1:Intercept", "expert1:x", "expert1:sigma"] and "gate2:x" in names
    t = sim_fit.t_test("expert1:x = expert2:x")
    i, j = names.index("expert1:x"), names.index("expert2:x")
    V = sim_fit.cov_params().to_numpy()
    est = sim_fit.params.to_numpy()
    sd = np.sqrt(V[i, i] + V[j, j] - 2 * V[i, j])
    assert float(t.statistic[0]) == pytest.approx((est[i] - est[j]) / sd, rel=1e-10)
    assert float(t.pvalue) == pytest.approx(2 * stats.norm.sf(abs((est[i] - est[j]) / sd)), rel=1e-8, abs=1e-300)
    with pytest.raises(ValueError, match="cannot parse the constraint 'expert3:x = 0'"):
        sim_fit.t_test("expert3:x = 0")
    with pytest.raises(ValueError, match="linearly dependent"):
        sim_fit.wald_test(["expert1:x = 0", "2 * expert1:x = 0"])


@pytest.mark.slow
def test_multinomial_k1_matches_mnlogit():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 2))
    eta = np.column_stack([np.zeros(300), 0.5 + x @ [1.0, -0.5], -0.3 + x @ [-1.0, 1.0]])
    p = np.exp(eta) / np.exp(eta).sum(1, keepdims=True)
    y = (rng.random(300)[:, None] > p.cumsum(1)).sum(1)
    res = ms.MultinomialMoE(1).fit(x, y)
    ref = sm.MNLogit(y, sm.add_constant(x)).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)
    assert res.llnull == pytest.approx(ref.llnull, rel=1e-10)
    assert res.prsquared == pytest.approx(ref.prsquared, rel=1e-8)
    assert res.df_model == ref.df_model and res.df_resid == ref.df_resid
    # statsmodels' parameter order is class-major: params.ravel(order="F")
    np.testing.assert_allclose(res.params.to_numpy(), np.asarray(ref.params).ravel(order="F"), atol=1e-7)
    np.testing.assert_allclose(res.bse.to_numpy(), np.asarray(ref.bse).ravel(order="F"), rtol=1e-5)
    names = res.param_names
    assert names[:3] == ["expert1:1:Intercept", "expert1:1:x1", "expert1:1:x2"]
    R = np.zeros((2, 6))
    R[0, names.index("expert1:1:x1")], R[0, names.index("expert1:2:x1")] = 1, 1
    R[1, names.index("expert1:2:x2")] = 1
    mine = res.wald_test(["expert1:1:x1 + expert1:2:x1 = 0", "expert1:2:x2 = 0"])
    # the Wald statistic from statsmodels' estimates and covariance (class-major order, as cov_params is);
    # statsmodels 0.14's own MNLogit.wald_test pairs a numeric R with the other order (fixed in 0.15)
    b, V = np.asarray(ref.params).ravel(order="F"), np.asarray(ref.cov_params())
    wref = R @ b @ np.linalg.solve(R @ V @ R.T, R @ b)
    assert mine.statistic == pytest.approx(wref, rel=1e-5)
    t = res.t_test("expert1:1:x1 = 0")
    assert float(t.statistic[0]) == pytest.approx(np.asarray(ref.tvalues).ravel(order="F")[1], rel=1e-5)
    fv = res.fittedvalues
    np.testing.assert_allclose(fv, ref.predict(), atol=1e-8)
    np.testing.assert_allclose(res.resid, np.eye(3)[y] - ref.predict(), atol=1e-8)
    with pytest.raises(TypeError, match="get_prediction needs Gaussian experts"):
        res.get_prediction()


@pytest.mark.slow
def test_predictions_keep_the_pandas_index(sim_fit):
    new = pd.DataFrame({"x": [0.1, -0.4]}, index=pd.Index(["u", "v"], name="id"))
    mean, gate = sim_fit.predict(new), sim_fit.predict(new, kind="gate")
    pd.testing.assert_index_equal(mean.index, new.index)
    assert list(gate.columns) == ["expert1", "expert2"] and gate.index.equals(new.index)
    assert isinstance(sim_fit.predict(data={"x": [0.1, -0.4]}), np.ndarray)   # no pandas index: an array
    rng = np.random.default_rng(2)
    x = pd.DataFrame({"x": rng.normal(size=200)}, index=np.arange(200) * 3)
    lab = np.where(x.x + rng.normal(size=200) > 0, "up", "down")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ms.MultinomialMoE(1).fit(x, lab)
    P = m.predict(x.iloc[:4])
    assert list(P.columns) == ["down", "up"] and list(P.index) == [0, 3, 6, 9]
