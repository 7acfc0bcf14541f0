"""Fuzzing the public API with drawn shapes, dtypes and values (hypothesis).

Every call must end in one of two ways: a valid result (finite log-likelihood, parameters, predictions, a summary
and bootstrap draws without NaN), or one of the documented exceptions -- ValueError or TypeError -- with a
message.  moestat's warnings (MoEWarning and its subclasses) are allowed; a crash (any other exception), a NaN
result or a hang (a per-example alarm) fails the test.  Examples are derandomized and few, so the file takes
well under a minute after compilation.
"""
import contextlib
import json
import math
import signal
import warnings

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import moestat as ms
from moestat.losses import Atoms, theory_loss
from moestat.montecarlo import load_spec

pytestmark = pytest.mark.slow   # skipped by the fast tier (pytest -m "not slow"); CI runs it

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
DOCUMENTED = (ValueError, TypeError)
#: seconds one example may take before it counts as a hang (a cold compilation included)
HANG = 240


@contextlib.contextmanager
def no_hang(seconds=HANG):
    def alarm(signum, frame):
        raise AssertionError("the call did not return within %d s" % seconds)
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def only_moestat_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    foreign = [w for w in caught if not issubclass(w.category, ms.MoEWarning)
               and not issubclass(w.category, DeprecationWarning)]
    assert not foreign, [str(w.message) for w in foreign]


SPECIAL = [np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-300, 0.0]


@st.composite
def column_values(draw, n, odd=False):
    """(n,) float values on a drawn scale; ``odd``: constant, or one NaN/inf/huge/tiny/zero value."""
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1.0, 1.0, 1e-6, 1e6]))
    v = rng.normal(0, 1, n) * scale
    if draw(st.booleans()):
        v = np.round(v * 3 / scale) * scale / 3   # ties
    if odd and n:
        if draw(st.booleans()):
            v[:] = 3.0
        else:
            v[draw(st.integers(0, n - 1))] = draw(st.sampled_from(SPECIAL))
    return v


VALID_DTYPES = ["f8", "f8", "f4", "i8", "object", "list"]
INVALID_DTYPES = ["object-text", "complex", "str"]


@st.composite
def as_dtype(draw, values, kinds):
    """The values in a drawn container: float64/float32/int/bool arrays, numeric or text object arrays, lists,
    complex, strings."""
    kind = draw(st.sampled_from(kinds))
    if kind == "f8":
        return values
    if kind == "f4":
        with np.errstate(over="ignore"):
            return values.astype(np.float32)
    if kind == "i8":
        return np.nan_to_num(values, posinf=1e9, neginf=-1e9).clip(-1e9, 1e9).astype(np.int64)
    if kind == "bool":
        return values > 0
    if kind == "object":
        return values.astype(object)
    if kind == "object-text":
        out = values.astype(object)
        if out.size:
            out.flat[0] = "3.5"
        return out
    if kind == "list":
        return values.tolist()
    if kind == "complex":
        return values + 0j
    return values.astype(str)


@st.composite
def fit_inputs(draw):
    """Valid inputs of drawn shapes and dtypes, with at most one thing broken (about a third of the draws)."""
    broken = draw(st.sampled_from([None] * 8 + ["X dtype", "y dtype", "y shape", "n", "k", "weights", "values"]))
    n = draw(st.sampled_from([0, 1, 3]) if broken == "n" else st.sampled_from([12, 40, 60]))
    d = draw(st.sampled_from([1, 1, 2]))
    odd = broken == "values"
    X = np.column_stack([draw(column_values(n, odd and j == 0)) for j in range(d)]) if n else np.empty((0, d))
    if draw(st.booleans()) and d == 1:
        X = X[:, 0]
    x0 = np.atleast_2d(X.T)[0]
    y = draw(column_values(n))
    if n and draw(st.booleans()):   # a response with structure, so that more fits converge
        y = 2.0 * np.nan_to_num(x0, posinf=0, neginf=0).clip(-1e3, 1e3) + np.sign(y) + 0.1 * y
    if broken == "y shape":
        y = draw(st.sampled_from([y[:-1], np.column_stack([y, y]), y[:, None, None]]))
    weights = draw(st.sampled_from([None, "positive", "zeros"]))
    if broken == "weights":
        weights = draw(st.sampled_from(["negative", "nan", "all zero", "short"]))
    if weights is not None:
        w = np.random.default_rng(n).integers(1, 4, n).astype(float)
        if weights == "zeros":
            w[: n // 4] = 0.0
        elif weights == "negative":
            w[0] = -1.0
        elif weights == "nan":
            w[-1] = np.nan
        elif weights == "all zero":
            w[:] = 0.0
        elif weights == "short":
            w = w[:-1]
        weights = w
    k = draw(st.sampled_from([0, -1, 2.5, "2", None]) if broken == "k" else st.sampled_from([1, 2, 2, 3]))
    X = draw(as_dtype(X, INVALID_DTYPES if broken == "X dtype" else VALID_DTYPES + ["bool"]))
    y = draw(as_dtype(y, INVALID_DTYPES if broken == "y dtype" else VALID_DTYPES))
    return X, y, weights, k


def check_result(res, X):
    assert math.isfinite(res.loglik)
    for leaf in jax.tree_util.tree_leaves(res.params_tree):
        assert np.all(np.isfinite(np.asarray(leaf)))
    text = str(res.summary())
    assert "Log-likelihood" in text
    pred = res.predict(X)
    assert np.all(np.isfinite(pred)) and pred.shape == (res.design.n,)
    assert np.all(np.isfinite(res.predict(X, kind="gate")))
    assert 1 <= res.n_best_starts <= len(res.restarts)
    assert np.all(np.isfinite(res.aic)) and np.all(np.isfinite(res.bic))


@settings(max_examples=40, **SETTINGS)
@given(fit_inputs())
def test_fit_predict_summary_never_crash_or_return_nan(inputs):
    X, y, weights, k = inputs
    with no_hang(), only_moestat_warnings():
        try:
            res = ms.GaussianMoE(n_experts=k).fit(X, y, weights=weights, n_init=2, seed=0)
        except DOCUMENTED as exc:
            assert str(exc)
            event("refused: %s" % type(exc).__name__)
            return
        check_result(res, X)
        event("fitted")


@pytest.fixture(scope="module")
def small_fit():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, 80)
    y = np.where(x > 0, 2 * x, -3 * x + 1) + 0.2 * rng.normal(size=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        return ms.GaussianMoE(2).fit(x, y, n_init=2, seed=0)


@settings(max_examples=25, **SETTINGS)
@given(st.sampled_from([0, 1, 5, 300]), st.sampled_from([1, 2]), st.data())
def test_predict_on_drawn_new_data(small_fit, n, d, data):
    X = np.column_stack([data.draw(column_values(n, data.draw(st.booleans()))) for _ in range(d)]) if n \
        else np.empty((0, d))
    X = data.draw(as_dtype(X[:, 0] if d == 1 and data.draw(st.booleans()) else X,
                           VALID_DTYPES + INVALID_DTYPES + ["bool"]))
    kind = data.draw(st.sampled_from(["mean", "experts", "gate", "posterior", "labels", "logpdf", "median"]))
    y = data.draw(column_values(n)) if kind in ("posterior", "labels", "logpdf") else None
    with no_hang(), only_moestat_warnings():
        try:
            out = small_fit.predict(X, kind=kind, y=y)
        except DOCUMENTED as exc:
            assert str(exc)
            return
    assert np.all(np.isfinite(np.asarray(out, dtype=float)))
    assert np.asarray(out).shape[0] == n


@settings(max_examples=6, **SETTINGS)
@example(B=2, kind="empirical", seed=0)
@example(B=3, kind="parametric", seed=1)
@given(st.sampled_from([0, 1, 2, 3, 2.5, "4"]), st.sampled_from(["empirical", "parametric", "jackknife"]),
       st.sampled_from([0, 1, -1]))
def test_bootstrap_with_drawn_options(small_fit, B, kind, seed):
    with no_hang(), only_moestat_warnings():
        try:
            boot = small_fit.bootstrap(B=B, kind=kind, seed=seed)
        except DOCUMENTED as exc:
            assert str(exc)
            return
    assert boot.B == B and boot.valid.any()
    assert np.all(np.isfinite(boot.estimates.to_numpy()[boot.valid]))
    assert np.all(np.isfinite(boot.loglik[boot.valid]))


@settings(max_examples=40, **SETTINGS)
@example(k_fit=0, k_true=1, d=1, gate="softmax", kind="D1", seed=0, special=1e300)   # no fitted atom
@example(k_fit=1, k_true=2, d=0, gate="none", kind="D1", seed=0, special=1e300)      # overflow
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 3), st.sampled_from(["softmax", "none", "sigmoid"]),
       st.sampled_from(["D1", "D2", "D3", "D1", "D2", "Dbar", "D9"]), st.integers(0, 2 ** 16),
       st.sampled_from([1.0] * 6 + SPECIAL))
def test_losses_on_drawn_atoms(k_fit, k_true, d, gate, kind, seed, special):
    rng = np.random.default_rng(seed)

    def atoms(k):
        mass = rng.uniform(0, 2, k)
        blocks = {"gate_slope": rng.normal(size=(k, d)), "intercept": rng.normal(size=k),
                  "slope": rng.normal(size=(k, d)), "variance": rng.uniform(0.1, 1, k)}
        if k and special != 1.0:
            blocks["intercept"][0] = special
        return Atoms(mass, blocks, gate)

    with no_hang(), only_moestat_warnings() as caught:
        try:
            value = theory_loss(kind, {"moe": atoms(k_fit)}, {"moe": atoms(k_true)}).value
            event("computed")
        except DOCUMENTED as exc:
            assert str(exc)
            return
    assert value >= 0   # False for NaN
    if math.isinf(value):
        assert any("overflows float64" in str(w.message) for w in caught)


def test_losses_of_huge_parameters_are_capped_or_inf_never_nan():
    """A fitted intercept of 1e200: its squared distance overflows float64.  A softmax loss is then the cap
    sum_j m*_j (every fitted mass shrunk away, module docstring); a loss without that infimum is inf, with a
    warning."""
    def atoms(intercept, gate):
        return {"moe": Atoms([1.0, 0.5], {"intercept": [intercept, 1.0], "slope": [[1.0], [-1.0]],
                                          "variance": [0.5, 0.5]}, gate)}
    true_mass = np.array([0.7, 0.6])
    true = {"moe": Atoms(true_mass, {"intercept": [0.0, 1.0], "slope": [[1.0], [-1.0]], "variance": [0.5, 0.5]},
                         "softmax")}
    capped = theory_loss("D1", atoms(1e200, "softmax"), true).value
    assert capped == pytest.approx(true_mass.sum(), rel=1e-12)
    true["moe"].gate = "none"
    with pytest.warns(ms.MoEWarning, match="overflows float64"):
        assert theory_loss("D1", atoms(1e200, "none"), true).value == math.inf
    assert math.isfinite(theory_loss("D1", atoms(1e10, "none"), true).value)


json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 10 ** 6) | st.floats(allow_nan=False)
                           | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)


@settings(max_examples=80, **SETTINGS)
@given(st.data())
def test_spec_loading_of_drawn_files(tmp_path_factory, data):
    from test_montecarlo import tiny_spec
    raw = json.loads(json.dumps(tiny_spec().raw))
    how = data.draw(st.sampled_from(["drop", "replace", "replace-nested", "text", "bytes"]))
    if how == "drop":
        raw.pop(data.draw(st.sampled_from(sorted(raw))))
        content = json.dumps(raw)
    elif how == "replace":
        raw[data.draw(st.sampled_from(sorted(raw)))] = data.draw(json_values)
        content = json.dumps(raw)
    elif how == "replace-nested":
        sec = data.draw(st.sampled_from(["grid", "replicates", "truth", "fit"]))
        if isinstance(raw[sec], dict) and raw[sec]:
            raw[sec][data.draw(st.sampled_from(sorted(raw[sec])))] = data.draw(json_values)
        content = json.dumps(raw)
    elif how == "text":
        content = data.draw(st.text(max_size=40))
    else:
        content = data.draw(st.binary(max_size=40)).decode("latin-1")
    path = tmp_path_factory.mktemp("spec") / "drawn.json"
    path.write_text(content, encoding="latin-1" if how == "bytes" else "utf-8")
    with no_hang(), only_moestat_warnings():
        try:
            spec = load_spec(str(path))
        except ValueError as exc:
            assert str(path) in str(exc)
            return
        assert spec.hash and spec.grid(True).min() >= 2 and spec.replicates(False) >= 1
