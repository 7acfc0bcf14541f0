"""Term names from DataFrames and formulas; prediction and simulation on new data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

import moestat as ms
from _inference_helpers import sim_moe2_fit


def _categorical_data(n=500, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.uniform(-1, 1, n), "g": rng.choice(["a", "b", "c"], n), "z": rng.normal(size=n)})
    first = rng.random(n) < 1 / (1 + np.exp(-2 * df["z"]))
    df["y"] = (np.where(first, 1 + 2 * df["x"], -1 - 2 * df["x"]) + 0.5 * (df["g"] == "b")
               + 0.3 * rng.standard_normal(n))
    return df


def test_dataframe_columns_become_term_names():
    df, _ = sim_moe2_fit()
    X = df[["x"]].rename(columns={"x": "dose"})
    res = ms.GaussianMoE(2).fit(X, df["y"].rename("response"), gate_X=df[["gate_p2"]], init=sim_moe2_fit()[1])
    f = res.summary_frame()
    assert list(f[f.block == "expert"].term[:3]) == ["Intercept", "dose", "sigma"]
    assert list(f[f.block == "gate"].term) == ["Intercept", "gate_p2"]
    assert "response" in str(res.summary())
    with pytest.raises(ValueError, match="fitted with separate gate covariates: pass gate_X"):
        res.predict(X)


def test_formula_with_categorical_terms_and_a_gate_formula():
    df = _categorical_data()
    res = ms.GaussianMoE(2).fit("y ~ x + C(g)", gate_X="~ z", data=df)
    f = res.summary_frame()
    assert list(f[(f.block == "expert") & (f.expert == 1)].term) == ["Intercept", "C(g)[T.b]", "C(g)[T.c]", "x",
                                                                     "sigma"]
    assert list(f[f.block == "gate"].term) == ["Intercept", "z"]
    # new data with a subset of the levels, in another order: encoded with the fitted levels
    new = pd.DataFrame({"x": [0.1, -0.4, 0.7], "g": ["c", "a", "c"], "z": [0.0, 1.0, -2.0]})
    X = np.column_stack([np.ones(3), new.g == "b", new.g == "c", new.x]).astype(float)
    Xg = np.column_stack([np.ones(3), new.z])
    eta = Xg @ res.params_tree.gate.coef.T
    gate = np.exp(eta - logsumexp(eta, axis=1, keepdims=True))
    means = X @ res.params_tree.expert.coef.T
    np.testing.assert_allclose(res.predict(new, kind="gate"), gate, rtol=1e-12)
    np.testing.assert_allclose(res.predict(new, kind="experts"), means, rtol=1e-12)
    np.testing.assert_allclose(res.predict(new), (gate * means).sum(1), rtol=1e-12)
    np.testing.assert_allclose(res.predict(data=new), (gate * means).sum(1), rtol=1e-12)
    with pytest.raises(ValueError, match="cannot encode the new data with the fitted formula.*'d'"):
        res.predict(pd.DataFrame({"x": [0.1], "g": ["d"], "z": [0.0]}))
    with pytest.raises(ValueError, match="cannot encode the new data.*name 'g' is not defined"):
        res.predict(pd.DataFrame({"x": [0.1], "z": [0.0]}))


def test_formula_term_names_and_intercepts():
    """Designs only (no fit): '- 1' removes the intercept of the experts, and of the gate when the gate
    uses the same covariates; a separate gate formula keeps its own."""
    df, _ = sim_moe2_fit()
    model = ms.GaussianMoE(2)
    d = model.design("y ~ x - 1", data=df)
    assert d.expert_block.names == ["x"] and d.gate_block.names == ["x"] and d.y_name == "y"
    d = model.design("y ~ x - 1", gate_X="~ gate_p2", data=df)
    assert d.gate_block.names == ["Intercept", "gate_p2"]
    d = model.design("y ~ np.log(x + 2) + I(x ** 2)", data=df)
    assert d.expert_block.names == ["Intercept", "np.log(x + 2)", "I(x ** 2)"]
    np.testing.assert_allclose(d.X[:, 2], df["x"] ** 2)
    with pytest.raises(ValueError, match="cannot evaluate X formula 'y ~ w'"):
        model.design("y ~ w", data=df)
    with pytest.raises(ValueError, match="pass the data frame as data="):
        model.design("y ~ x")


def test_prediction_kinds_against_numpy():
    df, res = sim_moe2_fit()
    new = pd.DataFrame({"x": [-0.9, -0.1, 0.3, 0.8], "y": [0.5, -1.0, 0.2, -1.5]})
    P = res.params_tree
    X = np.column_stack([np.ones(4), new.x])
    eta = X @ P.gate.coef.T
    lg = eta - logsumexp(eta, axis=1, keepdims=True)
    lf = norm.logpdf(new.y.to_numpy()[:, None], X @ P.expert.coef.T, np.sqrt(P.expert.sigma2))
    post = np.exp(lg + lf - logsumexp(lg + lf, axis=1, keepdims=True))
    np.testing.assert_allclose(res.predict(new, kind="posterior"), post, rtol=1e-10)   # y taken from the frame
    np.testing.assert_allclose(res.predict(new, kind="logpdf"), logsumexp(lg + lf, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(res.predict(new, kind="labels"), post.argmax(1))
    np.testing.assert_allclose(res.predict(new[["x"]], kind="posterior", y=new.y), post, rtol=1e-10)
    with pytest.raises(ValueError, match="kind='posterior' needs the response: pass y"):
        res.predict(new[["x"]], kind="posterior")
    with pytest.raises(ValueError, match="kind must be one of"):
        res.predict(new, kind="median")
    # fitted data: the posterior is the responsibilities, the log densities sum to the log-likelihood
    np.testing.assert_allclose(res.predict(kind="posterior"), res.responsibilities, rtol=1e-12)
    assert res.predict(kind="logpdf").sum() == pytest.approx(res.loglik, rel=1e-12)


def test_sample_from_the_fitted_model():
    _, res = sim_moe2_fit()
    new = pd.DataFrame({"x": np.full(500, 0.05)})   # the fitted size: no new programs
    y, z = res.sample(new, seed=1, return_labels=True)
    g = res.predict(new.iloc[:1], kind="gate").to_numpy()[0]
    m = res.predict(new.iloc[:1], kind="experts").to_numpy()[0]
    sd_mix = np.sqrt(g @ (res.params_tree.expert.sigma2 + m ** 2) - (g @ m) ** 2)
    assert abs(z.mean() - g[1]) < 4 * np.sqrt(g[0] * g[1] / 500)
    assert abs(y.mean() - g @ m) < 4 * sd_mix / np.sqrt(500)
    for i in range(2):   # within an expert: its mean and sigma
        assert abs(y[z == i].mean() - m[i]) < 4 * np.sqrt(res.params_tree.expert.sigma2[i] / (z == i).sum())
        n_i, s_i = (z == i).sum(), np.sqrt(res.params_tree.expert.sigma2[i])
        assert abs(np.std(y[z == i]) - s_i) < 4 * s_i / np.sqrt(2 * n_i)
    np.testing.assert_array_equal(res.sample(new, seed=1), y)
    assert not np.array_equal(res.sample(new, seed=2), y)
    assert res.sample(seed=0).shape == (500,)       # default: the fitted covariates
