"""scikit-learn estimators wrapping the moestat models (``pip install moestat[sklearn]``).

``MoERegressor`` (Gaussian experts) and ``MoEClassifier`` (multinomial-logistic
experts, ``moestat.MultinomialMoE``) follow the scikit-learn protocol --
``get_params``/``set_params``, ``fit(X, y, sample_weight=None)``, ``predict``,
``score`` (R^2 / accuracy), ``predict_proba`` -- so MoE models work in
``Pipeline``, ``cross_val_score`` and ``GridSearchCV``.  The fitted moestat
results (standard errors, summary, ...) are in ``results_``.

Input is validated as scikit-learn does (``validate_data``: sparse input is
refused, object arrays of numbers are converted, a column y warns).  When the
training data have no more distinct rows than a ``n_experts`` model has free
parameters, the largest number of experts they identify is fitted instead,
with a :class:`FewerExpertsWarning` (``n_experts_`` records it).

scikit-learn passes one matrix X; ``gate_features`` / ``expert_features``
choose which of its columns (indices, or names for DataFrames) enter the gate
and the experts (default: all columns in both).

Examples
--------
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from moestat.sklearn import MoERegressor
>>> import moestat as ms
>>> df = ms.datasets.load_sim_moe2()
>>> pipe = make_pipeline(StandardScaler(), MoERegressor(n_experts=2, n_init=3)).fit(df[["x"]], df["y"])
>>> round(pipe.score(df[["x"]], df["y"]), 3)
0.461
"""
from __future__ import annotations

import copy
import inspect
import warnings

import numpy as np
import pandas as pd

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError("moestat.sklearn needs scikit-learn: pip install 'moestat[sklearn]'") from exc

from .exceptions import FewerExpertsWarning


def _columns(X, which, name):
    """The columns ``which`` (None = all) of X, keeping DataFrame column names."""
    if which is None:
        return X
    which = list(which) if isinstance(which, (list, tuple, np.ndarray, pd.Index)) else [which]
    if isinstance(X, pd.DataFrame):
        if all(isinstance(c, str) for c in which):
            missing = [c for c in which if c not in X.columns]
            if missing:
                raise ValueError("%s names column(s) %s that X does not have" % (name, missing))
            return X[which]
        return X.iloc[:, which]
    arr = np.asarray(X)
    if arr.ndim == 1:
        arr = arr[:, None]
    if not all(isinstance(c, (int, np.integer)) for c in which):
        raise ValueError("%s must be column indices when X is not a DataFrame, got %r" % (name, which))
    bad = [c for c in which if not -arr.shape[1] <= c < arr.shape[1]]
    if bad:
        raise ValueError("%s has column indices %s outside X's %d columns" % (name, bad, arr.shape[1]))
    return arr[:, which]


class _MoEEstimator(BaseEstimator):
    """Shared fit/predict plumbing; subclasses set the default moestat model class."""

    def __init__(self, n_experts=2, gating="softmax", expert=None, *, gate_features=None, expert_features=None,
                 intercept=True, gate_intercept=True, min_variance=None, ridge=0.0, n_init=10, seed=0, tol=1e-8,
                 max_iter=2000, algorithm="em", polish=True, accelerate=False, model_class=None):
        self.n_experts = n_experts
        self.gating = gating
        self.expert = expert
        self.gate_features = gate_features
        self.expert_features = expert_features
        self.intercept = intercept
        self.gate_intercept = gate_intercept
        self.min_variance = min_variance
        self.ridge = ridge
        self.n_init = n_init
        self.seed = seed
        self.tol = tol
        self.max_iter = max_iter
        self.algorithm = algorithm
        self.polish = polish
        self.accelerate = accelerate
        self.model_class = model_class

    def _make_model(self, n_experts):
        """The wrapped moestat estimator; options it does not take are left out unless the user set them."""
        cls = self._model_class()
        kw = {"gating": self.gating, "intercept": self.intercept, "gate_intercept": self.gate_intercept,
              "ridge": self.ridge, "expert": self.expert, "min_variance": self.min_variance}
        accepted = inspect.signature(cls.__init__).parameters
        for key in ("expert", "min_variance"):
            if kw[key] is None:
                del kw[key]
            elif key not in accepted:
                raise ValueError("%s does not take %s" % (cls.__name__, key))
        return cls(n_experts, **{k: v for k, v in kw.items() if k in accepted})

    def _split(self, X):
        return (_columns(X, self.expert_features, "expert_features"),
                _columns(X, self.gate_features, "gate_features"))

    def _frame(self, X, arr):
        """The validated array, as a DataFrame with the fitted column names when X came as one."""
        if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
            return pd.DataFrame(arr, columns=self.feature_names_in_, index=X.index)
        return arr

    def _fit_model(self, X, y, sample_weight):
        Xv, y = validate_data(self, X, y, accept_sparse=False, dtype=np.float64, y_numeric=self._y_numeric)
        y = self._encode_y(y)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
        Xe, Xg = self._split(self._frame(X, Xv))
        k = self._experts_for(Xe, Xg, y, sample_weight)
        self.model_ = self._make_model(k)
        self.n_experts_ = k
        self.results_ = self.model_.fit(Xe, y, gate_X=Xg, weights=sample_weight, n_init=self.n_init,
                                        seed=self.seed, tol=self.tol, max_iter=self.max_iter,
                                        algorithm=self.algorithm, polish=self.polish,
                                        accelerate=self.accelerate)
        self.n_iter_ = max(1, int(getattr(self.results_, "n_iter", 1)))
        return self

    def _experts_for(self, Xe, Xg, y, sample_weight):
        """``n_experts``, or fewer (with a warning) when the data cannot identify that many.

        A k-expert model (k >= 2) needs more distinct observations (rows of
        expert covariates, gate covariates and response with positive weight)
        than free parameters; duplicated rows add no information, so they are
        counted once, and a weighted fit and the same data with repeated rows
        choose the same k.  One expert needs at least as many distinct rows as
        parameters (a Gaussian expert's p coefficients then leave a positive
        residual variance); below that, ValueError.  Only moestat models are
        sized; other ``model_class`` objects get ``n_experts`` as given.
        """
        from .estimators.base import MoEModel
        model = self._make_model(self.n_experts)
        if not isinstance(model, MoEModel):
            return self.n_experts
        d = model.design(Xe, y, gate_X=Xg, weights=sample_weight)
        rows = np.column_stack([d.X, d.Xg, np.asarray(d.y, dtype=np.float64)])[d.w > 0]
        distinct = np.unique(rows, axis=0).shape[0]
        p, pg = d.X.shape[1], d.Xg.shape[1]

        def n_params(k):   # the design has bound the model to the data (e.g. the classes of y)
            sized = copy.copy(model)
            sized.n_experts = k
            return sized.n_params(p, pg)

        k = self.n_experts
        while k > 1 and n_params(k) >= distinct:
            k -= 1
        if n_params(1) > distinct:   # one expert: at least as many distinct rows as parameters
            raise ValueError("too few observations: %d distinct row(s) (n_samples=%d) cannot identify even one "
                             "expert with %d free parameters (%d expert and %d gate columns)"
                             % (distinct, int(np.sum(d.w > 0)), n_params(1), p, pg))
        if k < self.n_experts:
            warnings.warn("%d distinct observations identify at most %d expert(s) with %d expert and %d gate "
                          "columns: fitting n_experts_=%d instead of n_experts=%d"
                          % (distinct, k, p, pg, k, self.n_experts), FewerExpertsWarning, stacklevel=3)
        return k

    def _predict_kind(self, X, kind):
        check_is_fitted(self, "results_")
        Xv = validate_data(self, X, accept_sparse=False, dtype=np.float64, reset=False)
        Xe, Xg = self._split(self._frame(X, Xv))
        return np.asarray(self.results_.predict(Xe, gate_X=Xg, kind=kind))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False          # dense designs only; sparse input is refused
        tags.input_tags.allow_nan = False       # missing values are refused, not imputed
        tags.input_tags.categorical = False
        tags.input_tags.string = False
        tags.target_tags.multi_output = False
        tags.target_tags.single_output = True
        tags.non_deterministic = False          # a given seed gives the same fit
        return tags

    def predict_gate(self, X):
        """(n, k) gating probabilities."""
        return self._predict_kind(X, "gate")


_PARAMS_DOC = """
    Parameters
    ----------
    n_experts : int
    gating : str or gate object (see ``moestat.gating.available()``)
    expert : str or expert object, optional (the model's default family)
    gate_features, expert_features : column indices or names, optional
        Columns of X used by the gate / the experts (default: all).
    intercept, gate_intercept : bool
    min_variance : float, optional (Gaussian experts only)
    ridge : float
    n_init, seed, tol, max_iter, algorithm, polish : passed to ``fit``
    accelerate : bool
        SQUAREM-accelerated EM (``fit(accelerate=True)``; EM only): the same maxima in fewer EM
        steps where EM crawls (over-fitted or weakly separated experts).
    model_class : class, optional
        The moestat estimator to wrap (default %s).
"""


class MoERegressor(RegressorMixin, _MoEEstimator):
    """Mixture of Gaussian-regression experts as a scikit-learn regressor; ``predict`` is the mixture mean."""

    __doc__ += _PARAMS_DOC % "moestat.GaussianMoE"

    _y_numeric = True

    def _encode_y(self, y):
        return y

    def _model_class(self):
        if self.model_class is not None:
            return self.model_class
        from .estimators.gaussian import GaussianMoE
        return GaussianMoE

    def fit(self, X, y, sample_weight=None):
        """Fit by EM (``n_init`` starts); ``sample_weight`` are case weights."""
        return self._fit_model(X, y, sample_weight)

    def predict(self, X):
        """Mixture mean E[y | x] (n,)."""
        return self._predict_kind(X, "mean")

    def predict_experts(self, X):
        """(n, k) per-expert means."""
        return self._predict_kind(X, "experts")


class MoEClassifier(ClassifierMixin, _MoEEstimator):
    """Mixture of multinomial-logistic experts as a scikit-learn classifier.

    Class labels may be any sortable values; they are encoded as 0..C-1
    (``classes_``) before fitting.  ``predict_proba`` is the mixture's class
    probabilities, ``predict`` their arg-max.
    """

    __doc__ += _PARAMS_DOC % "moestat.MultinomialMoE"

    _y_numeric = False

    def _model_class(self):
        if self.model_class is not None:
            return self.model_class
        import moestat
        cls = getattr(moestat, "MultinomialMoE", None)  # looked up lazily: the classifier family is optional
        if cls is None:
            raise ImportError("moestat.MultinomialMoE is not available in this installation of moestat")
        return cls

    def fit(self, X, y, sample_weight=None):
        """Encode the labels, then fit by EM (``n_init`` starts); ``sample_weight`` are case weights."""
        return self._fit_model(X, y, sample_weight)

    def _encode_y(self, y):
        """Class labels -> codes 0..C-1 (``classes_``); continuous or single-class y is refused."""
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError("y has one class (%r): a classifier needs at least two" % (self.classes_[0],))
        return codes

    def predict_proba(self, X):
        """(n, C) class probabilities, columns in the order of ``classes_``."""
        P = np.asarray(self._predict_kind(X, "mean"))
        if P.ndim != 2 or P.shape[1] != self.classes_.size:
            raise ValueError("the wrapped model returned class probabilities of shape %s for %d classes"
                             % (P.shape, self.classes_.size))
        return P

    def predict(self, X):
        """The most probable class."""
        P = self.predict_proba(X)
        return self.classes_[np.argmax(P, axis=1)]
