"""Bad input fails at the door with a ValueError/TypeError that names the problem."""
import re

import numpy as np
import pandas as pd
import pytest

import moestat as ms


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = x[:, 0] + rng.normal(size=200)
    return x, y


def _fit(x, y, **kw):
    model_kw = {k: kw.pop(k) for k in ("n_experts", "gating", "min_variance", "ridge") if k in kw}
    return ms.GaussianMoE(**{"n_experts": 2, **model_kw}).fit(x, y, n_init=1, **kw)


@pytest.mark.parametrize("where,value,msg", [
    ("x", np.nan, r"X has 1 non-finite value\(s\) \(NaN or inf\), first at row 3, column 1"),
    ("x", np.inf, r"X has 1 non-finite"),
    ("y", np.nan, r"y has 1 non-finite value\(s\) \(NaN or inf\), first at row 3"),
])
def test_non_finite_values(xy, where, value, msg):
    x, y = xy[0].copy(), xy[1].copy()
    if where == "x":
        x[3, 1] = value
    else:
        y[3] = value
    with pytest.raises(ValueError, match=msg):
        _fit(x, y)


def test_lengths_must_match(xy):
    x, y = xy
    with pytest.raises(ValueError, match="different numbers of observations: X has 200, y has 199"):
        _fit(x, y[:-1])
    with pytest.raises(ValueError, match="gate_X has 150"):
        _fit(x, y, gate_X=x[:150])


def test_weights(xy):
    x, y = xy
    with pytest.raises(ValueError, match="weights must be non-negative; row 5 has weight -1"):
        w = np.ones(200); w[5] = -1; _fit(x, y, weights=w)
    with pytest.raises(ValueError, match="all weights are zero"):
        _fit(x, y, weights=np.zeros(200))
    with pytest.raises(ValueError, match="weights has 10 entries but there are 200 observations"):
        _fit(x, y, weights=np.ones(10))
    with pytest.raises(ValueError, match="weights has 1 non-finite"):
        w = np.ones(200); w[0] = np.nan; _fit(x, y, weights=w)


def test_model_settings(xy):
    with pytest.raises(ValueError, match="n_experts must be >= 1, got 0"):
        ms.GaussianMoE(n_experts=0)
    with pytest.raises(TypeError, match="n_experts must be an integer"):
        ms.GaussianMoE(n_experts=2.5)
    with pytest.raises(ValueError, match="unknown gating 'softmx'"):
        ms.GaussianMoE(2, gating="softmx")
    with pytest.raises(ValueError, match="min_variance must be a finite number > 0"):
        ms.GaussianMoE(2, min_variance=0.0)
    x, y = xy
    with pytest.raises(ValueError, match="algorithm must be one of 'em', 'cem', 'sem'"):
        _fit(x, y, algorithm="gibbs")
    with pytest.raises(ValueError, match="n_init must be >= 1"):
        ms.GaussianMoE(2).fit(x, y, n_init=0)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        _fit(x, y, tol=-1)
    with pytest.raises(ValueError, match="init must be None, one of 'kmeans'"):
        _fit(x, y, init="kmeanz")


def test_too_few_points():
    x = np.arange(8.0)
    with pytest.raises(ValueError, match=re.escape("too few observations: 8 rows with positive weight for a model with 8 free parameters")):
        ms.GaussianMoE(2).fit(x, np.sin(x))


def test_wrong_dtypes(xy):
    x, y = xy
    with pytest.raises(TypeError, match="X must be numeric"):
        _fit(np.array([["a", "b"]] * 200), y)
    with pytest.raises(TypeError, match="y must be numeric for Gaussian experts"):
        _fit(x, np.array(["u"] * 200))
    with pytest.raises(ValueError, match="y must be one-dimensional"):
        _fit(x, np.ones((200, 2)))
    with pytest.raises(ValueError, match="y is constant"):
        _fit(x, np.ones(200))


def test_formula_errors(xy):
    x, y = xy
    df = pd.DataFrame({"a": x[:, 0], "y": y})
    with pytest.raises(ValueError, match="pass the data frame as data="):
        ms.GaussianMoE(2).fit("y ~ a")
    with pytest.raises(ValueError, match="cannot evaluate X formula 'y ~ b'"):
        ms.GaussianMoE(2).fit("y ~ b", data=df)


def test_init_labels_validated(xy):
    x, y = xy
    with pytest.raises(ValueError, match=r"init labels must lie in 0..1"):
        _fit(x, y, init=np.full(200, 2))
    with pytest.raises(ValueError, match=r"init responsibilities must sum to 1 in every row"):
        _fit(x, y, init=np.full((200, 2), 0.3))


def test_predict_checks_columns(sim_df, sim_fit):
    arr = ms.GaussianMoE(2).fit(sim_df[["x"]], sim_df["y"], n_init=2)
    with pytest.raises(ValueError, match=r"X has 2 column\(s\), but the model was fitted with 1"):
        arr.predict(np.ones((5, 2)))
    with pytest.raises(ValueError, match="kind='posterior' needs the response"):
        arr.predict(np.ones((5, 1)), kind="posterior")
    with pytest.raises(ValueError, match="fitted with the formula 'y ~ x': pass the new data as a DataFrame"):
        sim_fit.predict(np.ones((5, 1)))
    with pytest.raises(ValueError, match="cannot encode the new data with the fitted formula"):
        sim_fit.predict(pd.DataFrame({"z": [1.0]}))
    with pytest.raises(ValueError, match="kind must be one of"):
        sim_fit.predict(kind="median")
