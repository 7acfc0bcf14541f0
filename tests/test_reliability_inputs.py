"""Restart adequacy (``n_best_starts``, RestartWarning) and object-dtype numeric inputs."""
import warnings
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import moestat as ms
from moestat.data.design import as_float_matrix, as_weights


# ---------------------------------------------------------------------------------------------- restarts

def one_expert_data(n=200, seed=0):
    """200 points from ONE linear Gaussian expert: a k = 2 fit has a flat, multimodal likelihood."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, 1 + 2 * x + rng.normal(size=n)


def fit_recording(x, y, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = ms.GaussianMoE(2).fit(x, y, **kw)
    return res, [w for w in caught if issubclass(w.category, ms.RestartWarning)]


@pytest.mark.slow
def test_ten_starts_missing_the_maximum_are_flagged_over_eight_row_orders():
    """The issue's check: over eight row orders of the same data, every 10-start fit that misses the maximum
    found by 100 starts reports n_best_starts == 1 and warns; the MLE does not depend on the row order."""
    x, y = one_expert_data()
    best, _ = fit_recording(x, y, n_init=100, seed=0)
    missed = 0
    for order in range(8):
        perm = np.random.default_rng(order).permutation(len(x)) if order else np.arange(len(x))
        res, warned = fit_recording(x[perm], y[perm], n_init=10, seed=0)
        ll = res.restarts["loglik"].to_numpy()
        # independent count: starts within 1e-6 (relative) of the best start's EM log-likelihood, a start
        # stopped after its short EM run through the continued start whose partition it repeats ("basin")
        top = ll[res.best_start]
        reached = ll[res.restarts["basin"].to_numpy()]
        assert res.n_best_starts == int(np.sum(np.abs(reached - top) <= 1e-6 * abs(top)))
        assert res.loglik <= best.loglik + 1e-6
        if res.loglik < best.loglik - 1e-3:
            missed += 1
            assert res.n_best_starts == 1 and len(warned) == 1
            assert "only 1 of 10 starts reached the best log-likelihood" in str(warned[0].message)
        assert bool(warned) == (res.n_best_starts == 1)
    assert missed >= 1   # the default 10 starts do miss on this data (one order in eight when measured)


def test_agreeing_starts_do_not_warn_and_one_start_never_does():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 200)
    z = rng.random(200) < 1 / (1 + np.exp(-6 * x))
    y = np.where(z, 3 + 2 * x, -3 - 2 * x) + 0.3 * rng.normal(size=200)   # two well-separated experts
    res, warned = fit_recording(x, y, n_init=6, seed=1)
    assert res.n_best_starts >= 2 and not warned
    assert "%d reached its log-lik." % res.n_best_starts in str(res.summary())
    single, warned = fit_recording(x, y, n_init=1, seed=1)
    assert single.n_best_starts == 1 and not warned   # nothing to compare with


# ---------------------------------------------------------------------------------------------- object arrays

def mixed_frame(n=120, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    z = rng.random(n) < 1 / (1 + np.exp(-6 * x))
    y = np.where(z, 3 + 2 * x, -3 - 2 * x) + 0.3 * rng.normal(size=n)
    return pd.DataFrame({"x": x, "y": y, "w": rng.integers(1, 3, n), "label": np.where(z, "a", "b")})


def test_object_arrays_of_numbers_fit_like_float_arrays():
    df = mixed_frame()
    obj = df[["x", "y", "w", "label"]].values          # what a mixed frame gives: dtype object
    assert obj.dtype == object
    ref = ms.GaussianMoE(2).fit(df["x"].to_numpy(), df["y"].to_numpy(), weights=df["w"].to_numpy(), n_init=3)
    res = ms.GaussianMoE(2).fit(obj[:, :1], obj[:, 1], weights=obj[:, 2], gate_X=obj[:, :1], n_init=3)
    assert res.loglik == ref.loglik
    assert np.array_equal(res.predict(obj[:, :1], gate_X=obj[:, :1]), ref.predict(df[["x"]].to_numpy()))


def test_object_values_convert_to_the_same_floats():
    a = np.array([[1, 2.5], [np.int32(3), Decimal("0.1")], [Fraction(1, 3), True]], dtype=object)
    expect = np.array([[1.0, 2.5], [3.0, 0.1], [1 / 3, 1.0]])
    assert np.array_equal(as_float_matrix(a, "X"), expect)
    assert np.array_equal(as_weights(np.array([1, 2.0, Decimal(3)], dtype=object), 3), [1.0, 2.0, 3.0])
    nullable = pd.DataFrame({"a": pd.array([1, 2, 3], dtype="Int64"), "b": [0.5, 1.5, 2.5]})
    assert np.array_equal(as_float_matrix(nullable, "X"), [[1, 0.5], [2, 1.5], [3, 2.5]])


def test_non_numeric_content_is_refused_naming_its_column():
    df = mixed_frame()
    with pytest.raises(TypeError, match=r"X column 'label' must be numeric: row 0 holds '[ab]' \(str\)"):
        ms.GaussianMoE(2).fit(df[["x", "label"]], df["y"])
    with pytest.raises(TypeError, match=r"gate_X column 1 must be numeric: row 0 holds '[ab]'"):
        ms.GaussianMoE(2).fit(df["x"], df["y"], gate_X=df[["x", "label"]].values)
    y = df["y"].to_numpy().astype(object)
    y[7] = "3.1"
    with pytest.raises(TypeError, match=r"y must be numeric: row 7 holds '3.1' \(str\)"):
        ms.GaussianMoE(2).fit(df["x"], y)
    w = df["w"].to_numpy().astype(object)
    w[4] = 1 + 2j
    with pytest.raises(TypeError, match=r"weights must be numeric: row 4 holds \(1\+2j\) \(complex\)"):
        ms.GaussianMoE(2).fit(df["x"], df["y"], weights=w)
    missing = df[["x"]].astype(object)
    missing.iloc[5, 0] = None
    with pytest.raises(ValueError, match=r"X has 1 non-finite value\(s\) \(NaN or inf\), first at row 5"):
        ms.GaussianMoE(2).fit(missing, df["y"])
