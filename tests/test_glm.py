"""GLM experts (Poisson, binomial) and the GLMMoE estimator against independent references.

References: statsmodels' GLM for one expert (coefficients, standard errors,
log-likelihood; offset, exposure, frequency weights, trials and
(successes, failures) responses, every link offered); a NumPy/scipy
transcription of the two-expert softmax-gated likelihood maximised directly by
scipy; flexmix's log-likelihoods and refit() standard errors on its NPreg data
(``benchmarks/glm/flexmix_npreg_glm.json``, written by the R script beside it).
All fits use n <= 256 (one padded size bucket) so that they share compiled programs.
"""
from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so
import scipy.stats as st
import statsmodels.api as sm
from scipy.special import logsumexp

import moestat as ms

from _inference_helpers import bootstrap_variance_ratio

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLEXMIX_JSON = ROOT / "benchmarks" / "glm" / "flexmix_npreg_glm.json"


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        return fn(*args, **kwargs)


def expert_bse(res, i=1):
    return res.bse.loc[("expert", i)].to_numpy()


# ------------------------------------------------------------------ data

def poisson_data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, n)
    expo = rng.uniform(0.5, 3.0, n)
    off = rng.normal(0.0, 0.2, n)
    z = rng.random(n) < 1.0 / (1.0 + np.exp(-(0.3 + 3.0 * x)))
    eta = np.where(z, 0.5 + 1.0 * x, 1.8 - 0.8 * x) + off + np.log(expo)
    return x, rng.poisson(np.exp(eta)).astype(float), off, expo


def binomial_data(n=240, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, n)
    t = rng.integers(1, 12, n).astype(float)
    z = rng.random(n) < 1.0 / (1.0 + np.exp(-(-0.2 + 2.0 * x)))
    p = 1.0 / (1.0 + np.exp(-np.where(z, 1.0 + 1.5 * x, -1.0 - 1.0 * x)))
    return x, rng.binomial(t.astype(int), p).astype(float), t


# ------------------------------------------------------------------ one expert = statsmodels GLM

def test_poisson_k1_equals_statsmodels_with_offset_exposure_and_weights():
    x, y, off, expo = poisson_data()
    w = np.random.default_rng(5).integers(1, 4, x.size).astype(float)
    res = ms.GLMMoE(1, family="poisson").fit(x, y, weights=w, offset=off, exposure=expo)
    ref = sm.GLM(y, sm.add_constant(x), family=sm.families.Poisson(), offset=off, exposure=expo,
                 freq_weights=w).fit(tol=1e-12)
    np.testing.assert_allclose(res.params_tree.expert.coef[0], ref.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(expert_bse(res), ref.bse, rtol=1e-6)
    assert res.loglik == pytest.approx(ref.llf, rel=1e-10)
    # predict at the fitted rows (their exposure) and at new rows with an exposure
    np.testing.assert_allclose(res.predict(), ref.fittedvalues, rtol=1e-7)
    xn, en = np.array([-0.5, 0.25]), np.array([2.0, 0.7])
    np.testing.assert_allclose(res.predict(xn, exposure=en),
                               ref.predict(sm.add_constant(xn), exposure=en), rtol=1e-7)


@pytest.mark.parametrize("link, sm_link", [("logit", "Logit"), ("probit", "Probit"), ("cloglog", "CLogLog")])
def test_binomial_k1_equals_statsmodels_for_each_link(link, sm_link):
    x, s, t = binomial_data()
    fam = sm.families.Binomial(link=getattr(sm.families.links, sm_link)())
    # newton: statsmodels' covariance from the observed Hessian (IRLS reports the expected one)
    ref = sm.GLM(np.column_stack([s, t - s]), sm.add_constant(x), family=fam).fit(method="newton", tol=1e-12,
                                                                                   maxiter=200)
    res = ms.GLMMoE(1, family="binomial", link=link).fit(x, s, trials=t)
    np.testing.assert_allclose(res.params_tree.expert.coef[0], ref.params, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(expert_bse(res), ref.bse, rtol=1e-5)
    assert res.loglik == pytest.approx(ref.llf, rel=1e-10)
    ll_scipy = st.binom.logpmf(s, t, ref.predict(sm.add_constant(x))).sum()   # constants included
    assert res.loglik == pytest.approx(ll_scipy, rel=1e-9)


def test_binomial_response_forms_agree():
    """trials=, a (successes, failures) array and the formulas 's + f ~ x' / 'cbind(s, f) ~ x' are one model."""
    x, s, t = binomial_data()
    df = pd.DataFrame({"x": x, "s": s, "f": t - s, "t": t})
    m = ms.GLMMoE(1, family="binomial")
    fits = [m.fit(x, s, trials=t), m.fit(x, np.column_stack([s, t - s])), m.fit("s + f ~ x", data=df),
            m.fit("cbind(s, f) ~ x", data=df), m.fit("s ~ x", data=df, trials="t")]
    for r in fits[1:]:
        assert r.loglik == pytest.approx(fits[0].loglik, rel=1e-12)
        np.testing.assert_allclose(r.params_tree.expert.coef, fits[0].params_tree.expert.coef, rtol=1e-9)
    assert fits[2].design.y_name == "s + f"
    # predict on new rows reads the (successes, failures) pair from the frame: log densities = scipy's
    b = fits[3].params_tree.expert.coef[0]
    p_hat = 1.0 / (1.0 + np.exp(-(b[0] + b[1] * x[:5])))
    np.testing.assert_allclose(fits[3].predict(df.iloc[:5], kind="logpdf"), st.binom.logpmf(s[:5], t[:5], p_hat),
                               rtol=1e-10)
    assert list(fits[2].params_frame()["term"]) == ["Intercept", "x"]
    # 0/1 responses: the Bernoulli likelihood, equal to statsmodels' Logit
    yb = (s > t / 2).astype(int)
    ref = sm.Logit(yb, sm.add_constant(x)).fit(disp=0, tol=1e-12)
    r01 = m.fit(x, yb)
    assert r01.loglik == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(expert_bse(r01), ref.bse, rtol=1e-6)


# ------------------------------------------------------------------ two experts = direct maximisation

def np_loglik_poisson(theta, X, y, off):
    """Independent transcription: sum_n log sum_i g_i(x_n) Poisson(y_n | exp(b_i' x_n + off_n))."""
    B = theta[:4].reshape(2, 2)
    c = theta[4:]
    lp = st.poisson.logpmf(y[:, None], np.exp(X @ B.T + off[:, None]))
    lg = np.column_stack([np.zeros(len(y)), X @ c])
    lg -= logsumexp(lg, axis=1, keepdims=True)
    return logsumexp(lg + lp, axis=1).sum()


def np_loglik_binomial(theta, X, s, t):
    B = theta[:4].reshape(2, 2)
    c = theta[4:]
    lp = st.binom.logpmf(s[:, None], t[:, None], 1.0 / (1.0 + np.exp(-(X @ B.T))))
    lg = np.column_stack([np.zeros(len(s)), X @ c])
    lg -= logsumexp(lg, axis=1, keepdims=True)
    return logsumexp(lg + lp, axis=1).sum()


def _direct(f, theta0):
    r = so.minimize(lambda th: -f(th), theta0, method="BFGS", options={"gtol": 1e-7, "maxiter": 2000})
    return r.x, -r.fun


def _theta(res):
    """(b_1, b_2, gate row 2) with expert 1 = the gate's reference."""
    return np.concatenate([res.params_tree.expert.coef.ravel(), res.params_tree.gate.coef[1]])


def _swap(theta):
    """The same model with the experts relabelled (softmax gate: the gate row changes sign)."""
    return np.concatenate([theta[2:4], theta[0:2], -theta[4:]])


@pytest.fixture(scope="module")
def k2_fits():
    """Two-expert fits (4 starts: every fit of this file with k = 2 shares their compiled programs)."""
    x, y, off, expo = poisson_data()
    res_p = quiet(ms.GLMMoE(2, family="poisson").fit, x, y, offset=off + np.log(expo), n_init=4)
    x, s, t = binomial_data()
    res_b = quiet(ms.GLMMoE(2, family="binomial").fit, x, s, trials=t, n_init=4)
    return {"poisson": res_p, "binomial": res_b}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_k2_equals_direct_scipy_maximisation(family, k2_fits):
    res = k2_fits[family]
    if family == "poisson":
        x, y, off, expo = poisson_data()
        f = lambda th: np_loglik_poisson(th, np.column_stack([np.ones_like(x), x]), y, off + np.log(expo))
        truth = np.array([0.5, 1.0, 1.8, -0.8, -0.3, -3.0])          # expert 1 = the truth's second class
    else:
        x, s, t = binomial_data()
        f = lambda th: np_loglik_binomial(th, np.column_stack([np.ones_like(x), x]), s, t)
        truth = np.array([1.0, 1.5, -1.0, -1.0, 0.2, -2.0])
    th_scipy, ll_scipy = _direct(f, truth)                                # started at the truth, not at moestat
    th = _theta(res)
    if np.linalg.norm(_swap(th) - th_scipy) < np.linalg.norm(th - th_scipy):
        th = _swap(th)
    assert res.loglik == pytest.approx(f(_theta(res)), rel=1e-11)        # moestat's likelihood = the transcription
    assert res.loglik >= ll_scipy - 1e-7
    np.testing.assert_allclose(th, th_scipy, atol=2e-4)
    # the observed-information SEs equal the inverse Hessian of the transcription (finite differences)
    H = _num_hessian(f, _theta(res))
    se = np.sqrt(np.diag(np.linalg.inv(-H)))
    mine = np.concatenate([res.bse.loc["expert"].to_numpy(), res.bse.loc["gate"].to_numpy()])
    np.testing.assert_allclose(mine, se, rtol=2e-4)


def _num_hessian(f, th, h=1e-4):
    d = th.size
    H = np.empty((d, d))
    E = np.eye(d) * h
    for i in range(d):
        for j in range(i, d):
            H[i, j] = H[j, i] = (f(th + E[i] + E[j]) - f(th + E[i] - E[j]) - f(th - E[i] + E[j])
                                 + f(th - E[i] - E[j])) / (4 * h * h)
    return H


@pytest.mark.slow
def test_em_is_monotone_for_both_families(k2_fits):
    """The best start's EM trace never decreases, and the Newton polish keeps the best start's value."""
    for res in k2_fits.values():
        tr = res.loglik_trace
        assert tr.size > 10
        assert np.min(np.diff(tr) / np.abs(tr[1:])) >= -1e-13
        assert res.loglik >= res.restarts["loglik"].max() - 1e-9


# ------------------------------------------------------------------ flexmix's NPreg data

@pytest.fixture(scope="module")
def npreg():
    return ms.datasets.load_npreg()


@pytest.fixture(scope="module")
def npreg_poisson(npreg):
    return quiet(ms.GLMMoE(2, family="poisson").fit, "yp ~ x", data=npreg, n_init=4)


def test_npreg_loader(npreg):
    assert npreg.shape == (200, 5)
    assert list(npreg.columns) == ["x", "yn", "yp", "yb", "class"]
    assert npreg["class"].value_counts().to_dict() == {1: 100, 2: 100}
    assert set(npreg["yb"].unique()) == {0, 1}
    sums = json.loads(FLEXMIX_JSON.read_text())["column_sums"]            # R's colSums(NPreg)
    for col in ("x", "yn", "yp", "yb", "class"):
        assert npreg[col].sum() == pytest.approx(sums[col], rel=1e-12), col


def _flexmix(model):
    return json.loads(FLEXMIX_JSON.read_text())["models"][model]


def test_npreg_poisson_reaches_flexmix_and_matches_its_standard_errors(npreg_poisson):
    """moestat's maximum (4 starts) is at least flexmix's best of 2 x 3 x 10 stepFlexmix starts; refit() SEs agree."""
    res, ref = npreg_poisson, _flexmix("poisson")
    best = max(ref["default"]["loglik_best"], ref["tight"]["loglik_best"])
    assert res.loglik >= best - 1e-6, (res.loglik, best)
    assert res.df == ref["df"]
    # match moestat's experts to flexmix's components by their coefficients
    fx = np.array([c["estimate"] for c in ref["refit"]["experts"]])
    coef = res.params_tree.expert.coef
    order = [0, 1] if np.abs(coef - fx).sum() < np.abs(coef[::-1] - fx).sum() else [1, 0]
    r = res.relabel(order)
    np.testing.assert_allclose(r.params_tree.expert.coef, fx, atol=1e-3)
    fse = np.array([c["std_err"] for c in ref["refit"]["experts"]])
    np.testing.assert_allclose(r.bse.loc["expert"].to_numpy().reshape(2, 2), fse, rtol=1e-3)
    np.testing.assert_allclose(r.bse.loc["gate"].to_numpy(), ref["refit"]["gate"]["std_err"], rtol=1e-3)


def test_npreg_binomial_reaches_flexmix_and_warns_of_separation(npreg):
    """Binary responses with x in gate and experts: the likelihood has no maximum (only P(y = 1 | x) is
    identified, and the fit sharpens towards a step function).  moestat still ends at least at flexmix's
    value and says why its coefficients are meaningless."""
    with pytest.warns(ms.MoEWarning, match="separation"):
        res = ms.GLMMoE(2, family="binomial").fit("cbind(yb, 1 - yb) ~ x", data=npreg, n_init=4)
    ref = _flexmix("binomial")
    best = max(ref["default"]["loglik_best"], ref["tight"]["loglik_best"])
    assert res.loglik >= best - 1e-6, (res.loglik, best)


# ------------------------------------------------------------------ results API

def test_predict_kinds_match_numpy(npreg_poisson, npreg):
    res = npreg_poisson
    xn = np.array([0.5, 3.0, 9.0])
    new = pd.DataFrame({"x": xn, "yp": [3, 0, 7]})
    X = np.column_stack([np.ones(3), xn])
    B, C = res.params_tree.expert.coef, res.params_tree.gate.coef
    g = np.exp(X @ C.T - logsumexp(X @ C.T, axis=1, keepdims=True))
    mu = np.exp(X @ B.T) * 2.0                                           # exposure 2
    np.testing.assert_allclose(res.predict(new, kind="gate"), g, rtol=1e-10)
    np.testing.assert_allclose(res.predict(new, kind="experts", exposure=np.full(3, 2.0)), mu, rtol=1e-10)
    np.testing.assert_allclose(res.predict(new, exposure=np.full(3, 2.0)), (g * mu).sum(1), rtol=1e-10)
    lj = np.log(g) + st.poisson.logpmf(np.array([3, 0, 7])[:, None], np.exp(X @ B.T))
    np.testing.assert_allclose(res.predict(new, kind="posterior"), np.exp(lj - logsumexp(lj, 1, keepdims=True)),
                               rtol=1e-9)
    np.testing.assert_allclose(res.predict(new, kind="logpdf"), logsumexp(lj, 1), rtol=1e-10)
    # a new frame without the response column predicts the mean and keeps its index, as statsmodels does
    bare = pd.DataFrame({"x": xn}, index=["a", "b", "c"])
    mean = res.predict(bare, exposure=np.full(3, 2.0))
    assert list(mean.index) == ["a", "b", "c"]
    np.testing.assert_allclose(mean.to_numpy(), (g * mu).sum(1), rtol=1e-10)
    assert list(res.predict(bare, kind="gate").index) == ["a", "b", "c"]


@pytest.mark.slow
def test_sample_has_the_predicted_mean(k2_fits):
    res = k2_fits["binomial"]
    n = 4000
    xs = np.full(n, 0.7)
    y = res.sample(xs, trials=np.full(n, 5.0), seed=3)
    p = res.predict(xs[:1])[0]
    assert set(np.unique(y)) <= set(range(6))
    assert abs(y.mean() - 5 * p) < 4 * np.sqrt(5 * p * (1 - p) / n) + 0.05   # mixture variance <= 5/4 per draw


def test_summary_select_k_and_bootstrap(npreg_poisson, npreg):
    text = str(npreg_poisson.summary())
    assert "poisson (log link)" in text and "Intercept" in text
    sel = quiet(ms.select_k, ms.GLMMoE(family="poisson"), "yp ~ x", data=npreg, ks=(1, 2), n_init=4)
    assert sel.best_k == 2
    assert sel.table.set_index("k").loc[2, "loglik"] == pytest.approx(npreg_poisson.loglik, abs=1e-6)
    k1 = sm.GLM(npreg["yp"], sm.add_constant(npreg["x"]), family=sm.families.Poisson()).fit()
    assert sel.table.set_index("k").loc[1, "loglik"] == pytest.approx(k1.llf, rel=1e-10)
    # the bootstrap covariance of the expert coefficients against the observed information: S = tr(V^-1 C) / m
    # in its chi-square band ([0.62, 1.50] for B = 40, m = 4; a sqrt(2) error in the SEs gives S = 2 or 1/2)
    boot = quiet(npreg_poisson.bootstrap, B=40, seed=1)
    S, lo, hi = bootstrap_variance_ratio(boot, npreg_poisson, "expert")
    assert lo < S < hi, (S, lo, hi)
    ratio = boot.bse.loc["expert"].to_numpy() / npreg_poisson.bse.loc["expert"].to_numpy()
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("family, y, kwargs, message", [
    ("poisson", [1, -2, 3, 0], {}, "non-negative counts.*row 1 is -2"),
    ("poisson", [1, 2.5, 3, 0], {}, "whole-number counts.*row 1 is 2.5"),
    ("poisson", [1, 2, np.nan, 0], {}, "non-finite"),
    ("poisson", [1, 2, 3, 0], {"exposure": [1.0, 0.0, 2.0, 1.0]}, "exposure must be positive; row 1 is 0"),
    ("poisson", [1, 2, 3, 0], {"exposure": [1.0, -1.0, 2.0, 1.0]}, "exposure must be positive"),
    ("poisson", [1, 2, 3, 0], {"offset": [0.0, np.inf, 0.0, 0.0]}, "offset has 1 non-finite"),
    ("poisson", [1, 2, 3, 0], {"offset": [0.0, 1.0]}, "offset has 2 entries but there are 4"),
    ("poisson", [1, 2, 3, 0], {"trials": [3, 3, 3, 3]}, "trials apply to binomial experts"),
    ("poisson", [[1, 2], [2, 1], [0, 3], [1, 1]], {}, "only binomial experts take"),
    ("binomial", [0, 1, 2, 0], {}, "0 or 1 for binomial experts without trials, but row 2 is 2"),
    ("binomial", [0, 1, 4, 0], {"trials": [2, 2, 3, 2]}, "exceeds the number of trials at row 2"),
    ("binomial", [0, 1, 1, 0], {"trials": [2, 0, 3, 2]}, "trials must be whole numbers >= 1; row 1 is 0"),
    ("binomial", [0, 1, 1, 0], {"trials": [2, 1.5, 3, 2]}, "trials must be whole numbers"),
    ("binomial", [0, 1, 1, 0], {"exposure": [1, 1, 1, 1]}, "offset and exposure apply to Poisson"),
    ("binomial", [[1, 2], [2, -1], [0, 3], [1, 1]], {}, r"y\[:, 1\] \(failures\).*row 1 is -1"),
    ("binomial", [[1, 2], [2, 1], [0, 3], [1, 1]], {"trials": [3, 3, 3, 2]}, "give the number of trials once"),
])
def test_bad_input_is_a_clear_error(family, y, kwargs, message):
    x = np.array([0.1, 0.4, -0.3, 0.8])
    with pytest.raises(ValueError, match=message):
        ms.GLMMoE(1, family=family).fit(x, np.asarray(y, dtype=float), **kwargs)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="family must be one of 'poisson', 'binomial'"):
        ms.GLMMoE(2, family="gamma")
    with pytest.raises(ValueError, match="link 'probit' is not available for poisson experts; choose one of 'log'"):
        ms.GLMMoE(2, family="poisson", link="probit")
    with pytest.raises(ValueError, match="link 'log' is not available for binomial"):
        ms.GLMMoE(2, family="binomial", link="log")
    with pytest.raises(ValueError, match="GaussianMoE needs a Gaussian expert family"):
        ms.GaussianMoE(2, expert="poisson")
    with pytest.raises(TypeError, match="numeric counts"):
        ms.GLMMoE(1).fit(np.arange(4.0), np.array(["a", "b", "c", "d"]))


# ------------------------------------------------------------------ simulation streams (Monte Carlo harness)

def test_simulate_data_draws_counts_from_numpy_streams():
    """Count experts draw y with NumPy's Poisson on the documented stream: (x, z, y) from SeedSequence.spawn(3)."""
    from moestat.sampling import simulate_data
    gate = ms.gating.get_gate("softmax")
    P = ms.MoEParams(gate=ms.gating.SoftmaxParams(coef=np.array([[0.0, 0.0], [0.5, 2.0]])),
                     expert=ms.experts.GLMParams(coef=np.array([[1.0, 0.5], [2.0, -0.5]])))
    law = {"law": "uniform", "low": -2.0, "high": 2.0}
    x, y, z = simulate_data(gate, ms.experts.PoissonGLM(), P, n=200, x_law=law, seed=[4, 200])
    s_x, s_z, s_y = np.random.SeedSequence([4, 200]).spawn(3)
    x_ref = np.random.default_rng(s_x).uniform(-2.0, 2.0, size=(200, 1))[:, 0]
    eta = np.column_stack([np.zeros(200), 0.5 + 2.0 * x_ref])
    g = np.exp(eta - logsumexp(eta, axis=1, keepdims=True))
    z_ref = (np.random.default_rng(s_z).random(200)[:, None] > np.cumsum(g, axis=1)).sum(1)
    mu = np.exp(np.array([1.0, 2.0])[z_ref] + np.array([0.5, -0.5])[z_ref] * x_ref)
    np.testing.assert_allclose(x[:, 0], x_ref)
    np.testing.assert_array_equal(z, z_ref)
    np.testing.assert_array_equal(y, np.random.default_rng(s_y).poisson(mu))


def test_separated_binary_data_warn_and_the_box_gives_the_bounded_maximum():
    """Perfectly separated 0/1 data: no MLE (warning); with max_abs_coef the fit is L-BFGS-B's box maximum."""
    x = np.linspace(-2.0, 2.0, 60)
    y = (x > 0.3).astype(float)
    with pytest.warns(ms.MoEWarning, match="separation"):
        ms.GLMMoE(1, family="binomial").fit(x, y)
    res = quiet(ms.GLMMoE(1, family="binomial", max_abs_coef=4.0).fit, x, y)
    X = np.column_stack([np.ones_like(x), x])
    f = lambda b: -st.bernoulli.logpmf(y, 1.0 / (1.0 + np.exp(-(X @ b)))).sum()
    ref = so.minimize(f, np.zeros(2), method="L-BFGS-B", bounds=[(-4.0, 4.0)] * 2, options={"ftol": 1e-15})
    assert np.all(np.abs(res.params_tree.expert.coef) <= 4.0)
    assert res.loglik == pytest.approx(-ref.fun, abs=1e-7)
    np.testing.assert_allclose(res.params_tree.expert.coef[0], ref.x, atol=1e-4)
    assert np.abs(res.params_tree.expert.coef[0, 1]) == 4.0           # the slope sits on the box
