"""MultinomialMoE: the MLE on a hard design, agreement with statsmodels MNLogit, monotone EM, labels, predict."""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.optimize import minimize

import moestat as ms
from moestat.fitting import em, newton
from moestat.truths import multinomial_regimes as mr
from references.direct import negloglik_grad, negloglik, direct_mle
from moestat.data.design import make_data

N_STEEP = 2000
#: replicates of the steep validation design checked here (benchmarks/multinomial_init.py runs all 20):
#: in reps 5 and 14 plain k-means / random-centre restarts stop 3.2 and 5.4 log-likelihood units below the MLE
STEEP_REPS = (5, 14)


def steep_data(rep):
    x, y, z = mr.simulate_steep(N_STEEP, seed=[2024, N_STEEP, rep])
    return x, y, z, np.column_stack([np.ones(N_STEEP), x])


@pytest.fixture(scope="module")
def steep_fit():
    x, y, z, X = steep_data(STEEP_REPS[0])
    return x, y, z, X, ms.MultinomialMoE(2).fit(x, y)


# ------------------------------------------------------------------ the MLE on a hard design

@pytest.mark.slow
@pytest.mark.parametrize("rep", STEEP_REPS)
def test_default_fit_reaches_direct_mle(rep, steep_fit):
    x, y, z, X = steep_data(rep)
    ref, G, A = direct_mle(X, X, y, mr.STEEP_GATE, mr.STEEP_EXPERTS)
    res = steep_fit[4] if rep == STEEP_REPS[0] else ms.MultinomialMoE(2).fit(x, y)
    assert abs(res.loglik - ref) < 1e-4
    # the same maximum, not only the same height (up to the labels of the two experts)
    gate, experts = res.params_tree.gate.coef, res.params_tree.expert.coef
    if np.abs(experts[::-1] - A).max() < np.abs(experts - A).max():
        gate, experts = -gate, experts[::-1]          # swap: the gate log-odds change sign
    np.testing.assert_allclose(gate, G, atol=1e-3 * np.abs(G).max())
    np.testing.assert_allclose(experts, A, atol=1e-3 * np.abs(A).max())


@pytest.mark.slow
def test_loglik_never_decreases(steep_fit):
    x, y, *_ , res = steep_fit
    tr = res.loglik_trace
    assert tr.size > 20
    assert np.all(np.diff(tr) >= -1e-12 * np.abs(tr[1:]))
    # a long run from random hard labels (the hardest start for EM) is monotone too
    r2 = ms.MultinomialMoE(2, screen=1).fit(x, y, init="random", polish=False)
    tr2 = r2.loglik_trace
    assert tr2.size > 50 and np.all(np.diff(tr2) >= -1e-12 * np.abs(tr2[1:]))


# ------------------------------------------------------------------ agreement with statsmodels MNLogit

def mnlogit_data(n=480, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    eta = np.column_stack([np.zeros(n), 0.5 + x @ [1.0, -0.5], -0.3 + x @ [-1.0, 1.0]])
    P = np.exp(eta)
    P /= P.sum(1, keepdims=True)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(P, 1)).sum(1)
    return x, y


def test_one_expert_matches_mnlogit():
    x, y = mnlogit_data()
    labels = np.array(["apple", "banana", "cherry"])[y]
    res = ms.MultinomialMoE(1).fit(x, labels)
    ref = sm.MNLogit(y, sm.add_constant(x)).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    assert res.loglik == pytest.approx(ref.llf, abs=1e-8)
    np.testing.assert_allclose(res.params_tree.expert.coef[0, 1:], np.asarray(ref.params).T, atol=1e-7)
    assert list(res.classes) == ["apple", "banana", "cherry"]
    assert res.params_frame()["term"].tolist()[:3] == ["banana:Intercept", "banana:x1", "banana:x2"]
    np.testing.assert_allclose(res.predict(x), ref.predict(sm.add_constant(x)), atol=1e-8)


def test_one_expert_bse_via_inference():
    x, y = mnlogit_data()
    res = ms.MultinomialMoE(1).fit(x, y)
    ref = sm.MNLogit(y, sm.add_constant(x)).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    np.testing.assert_allclose(np.asarray(res.bse), np.asarray(ref.bse).T.ravel(), rtol=1e-6)


@pytest.mark.slow
def test_hard_labels_reduce_to_mnlogit():
    """With responsibilities fixed to the true labels, the M-step and its curvature are MNLogit's."""
    x, y, z, X = steep_data(0)
    model = ms.MultinomialMoE(2)
    d = model.design(x, y)                       # the data and configuration exactly as fit() builds them
    info = model.expert.prepare(d.y, d.w)
    dat = make_data(d.X, d.Xg, model.expert.encode_y(d.y, info), d.w)
    cfg, ctl = model.config(max_iter=1), model.control(info)
    base = model.base_params(3, 3, info)
    tau = np.full((2, dat.w.shape[0]), 0.5)
    tau[:, :N_STEEP] = np.eye(2)[z].T
    # a batch of 10 like fit()'s starts, so that the compiled M-step program is reused
    batch = jnp.asarray(np.repeat(tau[None], 10, axis=0))
    params = jax.tree_util.tree_map(lambda a: a[0], em.params_from_resp(batch, base, dat, ctl, em.no_fixed(base), cfg))
    gate_ref = sm.MNLogit(z, X).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    experts_ref = [sm.MNLogit(y[z == i], X[z == i]).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
                   for i in range(2)]
    gate = np.asarray(params.gate.coef[1] - params.gate.coef[0])
    np.testing.assert_allclose(gate, np.asarray(gate_ref.params)[:, 0], atol=1e-7)
    for i in range(2):
        np.testing.assert_allclose(np.asarray(params.expert.coef[i, 1:]), np.asarray(experts_ref[i].params).T,
                                   atol=1e-7)
    # complete-data information from the Newton-statistics kernel that both M-steps use
    t, w, Xk, Xg = jnp.asarray(tau), dat.w, dat.X, dat.Xg
    pg = jnp.exp(model.gate.log_weights(params.gate, Xg))
    _, negH = newton.softmax_newton_stats(pg, t, w, Xg)
    np.testing.assert_allclose(np.sqrt(np.diag(np.linalg.inv(negH))), np.asarray(gate_ref.bse)[:, 0], rtol=1e-6)
    probs = model.expert.mean(params.expert, Xk)                                  # (k, C, N)
    onehot = jax.nn.one_hot(dat.y, 3, axis=0)
    for i in range(2):
        _, negH = newton.softmax_newton_stats(probs[i], onehot, w * t[i], Xk)
        np.testing.assert_allclose(np.sqrt(np.diag(np.linalg.inv(negH))), np.asarray(experts_ref[i].bse).T.ravel(),
                                   rtol=1e-6)


# ------------------------------------------------------------------ labels and predict

@pytest.mark.slow
def test_string_labels_predict_and_sample(steep_fit):
    x, y, z, X, _ = steep_fit
    names = np.array(["low", "mid", "top"])
    res = ms.MultinomialMoE(2).fit(x, names[y])
    P = res.predict(x[:50])
    E = res.predict(x[:50], kind="experts")
    g = res.predict(x[:50], kind="gate")
    assert P.shape == (50, 3) and E.shape == (50, 2, 3)
    np.testing.assert_allclose(P.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(P, np.einsum("nk,nkc->nc", g, E), atol=1e-12)
    np.testing.assert_allclose(res.predict(x[:50], kind="mean"), P, atol=0)
    assert set(res.predict(x[:50], kind="class")) <= set(names)
    post = res.predict(x[:50], y=names[y[:50]], kind="posterior")
    np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-12)
    # draws at one covariate value follow the fitted class probabilities
    x0 = np.repeat(x[:1], 20000, axis=0)
    draw = res.sample(x0, seed=1)
    assert draw.shape == (20000,) and set(draw) <= set(names)
    p0 = res.predict(x[:1])[0]
    freq = np.array([(draw == c).mean() for c in names])
    assert np.all(np.abs(freq - p0) < 4 * np.sqrt(p0 * (1 - p0) / 20000))
    assert "low (ref.), mid, top" in str(res.summary())


def test_bad_labels_give_clear_errors(steep_fit):
    x, y, z, X, res = steep_fit
    with pytest.raises(ValueError, match=r"label\(s\) \[7\] that were not among the classes"):
        res.predict(x[:3], y=np.array([0, 7, 1]), kind="posterior")
    with pytest.raises(ValueError, match="single class"):
        ms.MultinomialMoE(2).fit(x, np.ones(N_STEEP, dtype=int))
    frac = y.astype(float)
    frac[5] = 1.5
    with pytest.raises(ValueError, match="row 5 is 1.5 .*fractional part"):
        ms.MultinomialMoE(2).fit(x, frac)
    nan = y.astype(float)
    nan[2] = np.nan
    with pytest.raises(ValueError, match="missing/non-finite label"):
        ms.MultinomialMoE(2).fit(x, nan)
    with pytest.raises(ValueError, match="categorical expert family"):
        ms.MultinomialMoE(2, expert="linear")
    w = np.ones(N_STEEP)
    w[y == 2] = 0.0
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] occur only in rows with weight 0"):
        ms.MultinomialMoE(2).fit(x, y, weights=w)


def test_each_fit_keeps_its_class_order():
    x, y = mnlogit_data()
    model = ms.MultinomialMoE(1)
    r1 = model.fit(x, np.array(["c", "b", "a"])[y])
    r2 = model.fit(x, y + 10)
    assert list(r1.classes) == ["a", "b", "c"] and list(r2.classes) == [10, 11, 12]
    assert r1.params_frame()["term"][0] == "b:Intercept" and r2.params_frame()["term"][0] == "11:Intercept"
    assert model.expert.n_classes is None          # the estimator itself stays unbound
    # frequency weights equal replicated rows
    w = np.ones(len(y))
    w[:10] = 2.0
    rw = model.fit(x, y, weights=w)
    rr = model.fit(np.vstack([x, x[:10]]), np.concatenate([y, y[:10]]))
    assert rw.loglik == pytest.approx(rr.loglik, rel=1e-10)
    # formulas: a string response names the labels (patsy would expand it into dummy columns)
    df = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "species": np.array(["setosa", "versicolor", "virginica"])[y]})
    rf = model.fit("species ~ x1 + x2", data=df)
    assert rf.loglik == pytest.approx(r2.loglik, rel=1e-10)          # same data and model as r2
    assert rf.design.y_name == "species" and list(rf.classes) == ["setosa", "versicolor", "virginica"]
    post = rf.predict(df.iloc[:4], kind="posterior")          # y is read from the data frame
    assert post.shape == (4, 1)
    with pytest.raises(ValueError, match=r"label\(s\) \['rose'\]"):
        rf.predict(df.assign(species="rose").iloc[:2], kind="posterior")


# ------------------------------------------------------------------ regime truths

def test_regime_truths_and_sampler():
    t1, t2 = mr.truth(1), mr.truth(2)
    A1, A2 = np.array(t1["params"]["expert"]["coef"]), np.array(t2["params"]["expert"]["coef"])
    assert all(np.any(A1[i, 1:, 1:] != 0) for i in range(2))            # regime 1: every expert moves with x
    assert np.all(A2[1, :, 1:] == 0) and np.array_equal(A2[0], A1[0])   # regime 2: expert 1 ignores x
    x, y, z = mr.simulate_regime(40000, regime=2, seed=[7, 40000, 0])
    assert x.shape == (40000, 2) and x.min() >= -2.0 and x.max() <= 2.0 and x.min() < -1.99 and x.max() > 1.99
    # expert 1 of regime 2 ignores x: its class frequencies agree on both halves of the x range
    eta = A2[1, :, 0]
    p = np.exp(eta) / np.exp(eta).sum()
    for half in (x[:, 0] < 0, x[:, 0] >= 0):
        sel = half & (z == 1)
        freq = np.bincount(y[sel], minlength=3) / sel.sum()
        assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / sel.sum()))
    spec = mr.regime_spec(2, "modified_softmax", "tanh", k_fit=3)
    assert spec["name"] == "multinomial-regime2-modified-tanh" and spec["fit"]["k"] == 3
    assert spec["fit"]["expert"] == {"name": "multinomial", "n_classes": 3, "max_abs_coef": 25.0}
    assert spec["truth"]["gate"] == {"name": "modified_softmax", "transform": "tanh"}
    assert spec["x"] == {"law": "uniform", "low": -2.0, "high": 2.0, "d": 2}
    assert mr.regime_spec(1, design="d1")["x"] == {"law": "uniform", "low": -1.0, "high": 1.0, "d": 1}
    with pytest.raises(ValueError, match="design must be one of"):
        mr.truth(1, design="wide")


@pytest.mark.slow
def test_coefficient_box_keeps_fit_bounded_and_monotone():
    """On the box |coef| <= 0.5 (the unbounded MLE has |coef| up to 1.04) the fit stays inside and is
    monotone, the polish holds coefficients on the box fixed, and the family reports the expert on the box."""
    x, y = mnlogit_data()
    res = ms.MultinomialMoE(1, max_abs_coef=0.5).fit(x, y)
    coef = res.params_tree.expert.coef
    assert np.abs(coef).max() <= 0.5 + 1e-12 and np.isclose(np.abs(coef).max(), 0.5)
    fam = res.model.expert
    assert fam.experts_on_box(res.params_tree.expert).tolist() == [True]
    assert fam.feasible(res.params_tree.expert, None)
    tr = res.loglik_trace
    assert np.all(np.diff(tr) >= -1e-12 * np.abs(tr[1:]))
    free = ms.MultinomialMoE(1).fit(x, y)
    assert res.loglik < free.loglik - 1.0                 # the box costs likelihood here
    # and the fit is the maximum on the box (SciPy's bounded L-BFGS-B on the independent likelihood)
    X = np.column_stack([np.ones(len(y)), x])
    args = (jnp.asarray(X), jnp.asarray(X[:, :1]), jnp.asarray(y), 1, 3)
    ref = minimize(lambda t: float(negloglik(jnp.asarray(t), *args)), np.zeros(6), method="L-BFGS-B",
                   jac=lambda t: np.asarray(negloglik_grad(jnp.asarray(t), *args)), bounds=[(-0.5, 0.5)] * 6,
                   options={"ftol": 1e-15, "gtol": 1e-12})
    assert res.loglik == pytest.approx(-ref.fun, abs=1e-8)
    np.testing.assert_allclose(coef[0, 1:].ravel(), ref.x, atol=1e-6)
    with pytest.raises(ValueError, match="max_abs_coef must be a finite number > 0"):
        ms.MultinomialMoE(2, max_abs_coef=0.0)
