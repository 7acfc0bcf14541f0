"""scikit-learn wrappers: Pipelines, cross-validation, get/set_params, classifiers (moestat.sklearn)."""
from __future__ import annotations

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone                                      # noqa: E402
from sklearn.model_selection import ShuffleSplit, cross_val_score    # noqa: E402
from sklearn.pipeline import make_pipeline                          # noqa: E402
from sklearn.preprocessing import StandardScaler                    # noqa: E402

from moestat.sklearn import MoEClassifier, MoERegressor             # noqa: E402
from _inference_helpers import sim_moe2_fit                         # noqa: E402


def test_regressor_in_a_pipeline_matches_a_direct_fit():
    df, ref = sim_moe2_fit()
    pipe = make_pipeline(StandardScaler(), MoERegressor(n_experts=2)).fit(df[["x"]], df["y"])
    reg = pipe[-1]
    assert reg.results_.loglik == pytest.approx(ref.loglik, abs=1e-6)  # rescaling x leaves the likelihood
    np.testing.assert_allclose(pipe.predict(df[["x"]]), ref.predict(kind="mean"), rtol=1e-6)
    y = df["y"].to_numpy()
    r2 = 1 - ((y - ref.predict(kind="mean")) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert pipe.score(df[["x"]], df["y"]) == pytest.approx(r2, rel=1e-6)
    assert reg.n_features_in_ == 1 and not hasattr(reg, "feature_names_in_")   # the scaler hands on NumPy
    assert reg.predict_experts(pipe[0].transform(df[["x"]])).shape == (500, 2)


def test_cross_val_score_and_params():
    df, _ = sim_moe2_fit()
    est = MoERegressor(n_experts=2, seed=1)
    assert est.get_params()["n_experts"] == 2 and est.set_params(n_init=10) is est
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    cv = ShuffleSplit(n_splits=2, test_size=50, random_state=0)   # 450 training rows: sim_moe2's size bucket
    scores = cross_val_score(est, df[["x"]], df["y"], cv=cv)
    assert scores.shape == (2,) and np.all((scores > 0.3) & (scores < 0.65))


def test_gate_and_expert_columns():
    df, ref = sim_moe2_fit()
    X = df[["x", "gate_p2"]]
    reg = MoERegressor(n_experts=2, expert_features=["x"], gate_features=["gate_p2"]).fit(X, df["y"])
    f = reg.results_.summary_frame()
    assert list(reg.feature_names_in_) == ["x", "gate_p2"] and reg.n_features_in_ == 2
    assert list(f[f.block == "gate"].term) == ["Intercept", "gate_p2"]
    assert list(f[f.block == "expert"].term[:2]) == ["Intercept", "x"]
    reg2 = MoERegressor(n_experts=2, expert_features=[0], gate_features=[1]).fit(X.to_numpy(), df["y"])
    assert reg2.results_.loglik == pytest.approx(reg.results_.loglik, abs=1e-6)
    with pytest.raises(ValueError, match=r"gate_features names column\(s\) \['z'\] that X does not have"):
        MoERegressor(gate_features=["z"]).fit(X, df["y"])
    with pytest.raises(ValueError, match="gate_features has column indices \\[5\\] outside X's 2 columns"):
        MoERegressor(gate_features=[5]).fit(X.to_numpy(), df["y"])


class _StandInClassifierMoE:
    """A stand-in with the MultinomialMoE interface (fit -> results with predict(kind="mean") giving class
    probabilities), wrapping statsmodels' MNLogit, to test the classifier wrapper on its own."""

    def __init__(self, n_experts=2, gating="softmax", intercept=True, gate_intercept=True, ridge=0.0):
        self.n_experts = n_experts

    def fit(self, X, y, gate_X=None, weights=None, **kw):
        import statsmodels.api as sm
        self.codes = np.unique(y)
        self.mnl = sm.MNLogit(y, sm.add_constant(np.asarray(X, dtype=float))).fit(disp=0)
        return self

    def predict(self, X, gate_X=None, kind="mean"):
        import statsmodels.api as sm
        return np.asarray(self.mnl.predict(sm.add_constant(np.asarray(X, dtype=float), has_constant="add")))


def test_classifier_wrapper_encodes_labels_and_cross_validates():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    eta = np.column_stack([np.zeros(300), 2 * X[:, 0], -2 * X[:, 1]])
    p = np.exp(eta) / np.exp(eta).sum(1, keepdims=True)
    y = np.array(["cat", "dog", "emu"])[(rng.random(300)[:, None] > p.cumsum(1)).sum(1)]
    clf = MoEClassifier(model_class=_StandInClassifierMoE).fit(X, y)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    P = clf.predict_proba(X)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-12)
    assert set(clf.predict(X)) <= {"cat", "dog", "emu"}
    assert clf.score(X, y) == pytest.approx(np.mean(clf.classes_[P.argmax(1)] == y))
    scores = cross_val_score(MoEClassifier(model_class=_StandInClassifierMoE), X, y, cv=3)
    assert np.all(scores > 0.5)
    with pytest.raises(ValueError, match="y has one class"):
        MoEClassifier(model_class=_StandInClassifierMoE).fit(X, np.zeros(300))
    with pytest.raises(ValueError, match="_StandInClassifierMoE does not take min_variance"):
        MoEClassifier(model_class=_StandInClassifierMoE, min_variance=0.1).fit(X, y)


@pytest.mark.slow
def test_classifier_with_multinomial_moe():
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(400, 1))
    y = np.where(X[:, 0] > 0, rng.random(400) < 0.9, rng.random(400) < 0.2).astype(int)
    clf = MoEClassifier(n_experts=2, n_init=3).fit(X, np.array(["no", "yes"])[y])
    P = clf.predict_proba(X)
    assert P.shape == (400, 2) and np.allclose(P.sum(1), 1.0)
    assert clf.score(X, np.array(["no", "yes"])[y]) > 0.75


def test_tiny_data_fit_fewer_experts_with_a_warning():
    from moestat.exceptions import FewerExpertsWarning
    rng = np.random.default_rng(4)
    X = rng.normal(size=(12, 2))
    y = X @ [1.0, -1.0] + rng.normal(size=12)
    # free parameters with 2 covariates (+ intercept): gate 3 (k - 1), experts 4 k -> k=3: 18, k=2: 11, k=1: 4
    with pytest.warns(FewerExpertsWarning, match="12 distinct observations identify at most 2 expert"):
        reg = MoERegressor(n_experts=3, n_init=1, polish=False).fit(X, y)
    assert reg.n_experts_ == 2 and reg.results_.n_experts == 2
    # duplicated rows carry no new information: 6 distinct rows, twice, identify one expert
    with pytest.warns(FewerExpertsWarning, match="6 distinct observations identify at most 1 expert"):
        reg = MoERegressor(n_experts=3, n_init=1, polish=False).fit(np.vstack([X[:6], X[:6]]), np.r_[y[:6], y[:6]])
    assert reg.n_experts_ == 1
    with pytest.raises(ValueError, match=r"3 distinct row\(s\) \(n_samples=3\) cannot identify even one expert"):
        MoERegressor(n_experts=2).fit(X[:3], y[:3])
    from scipy import sparse
    with pytest.raises(TypeError, match="[Ss]parse"):
        MoERegressor().fit(sparse.csr_matrix(X), y)


def test_accelerate_passes_squarem_to_the_fit():
    """accelerate=True runs SQUAREM EM: the wrapped fit equals moestat's own fit(accelerate=True), reaches the
    plain-EM maximum, and a non-boolean is refused by the fit's own check."""
    import moestat as ms
    df, ref = sim_moe2_fit()
    reg = MoERegressor(n_experts=2, accelerate=True).fit(df[["x"]], df["y"])
    assert reg.get_params()["accelerate"] is True and clone(reg).get_params()["accelerate"] is True
    direct = ms.GaussianMoE(2).fit(df[["x"]], df["y"], accelerate=True)
    assert reg.results_.loglik == direct.loglik
    assert reg.results_.loglik == pytest.approx(ref.loglik, abs=1e-6)
    with pytest.raises(TypeError, match="accelerate must be True or False"):
        MoERegressor(n_experts=2, accelerate="yes").fit(df[["x"]], df["y"])
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(400, 1))
    y = np.where(X[:, 0] > 0, rng.random(400) < 0.9, rng.random(400) < 0.2).astype(int)
    plain = MoEClassifier(n_experts=2, n_init=3).fit(X, y)
    fast = MoEClassifier(n_experts=2, n_init=3, accelerate=True).fit(X, y)
    assert fast.results_.loglik >= plain.results_.loglik - 1e-6
