"""MultinomialMoE: mixture of multinomial-logistic (classification) experts under any gate.

p(y = c | x, z) = sum_i g_i(z) softmax_c(A_i x),  A_i (C, p) with the first class as reference.

The estimator shares the whole fitting pipeline of :class:`moestat.estimators.base.MoEModel`
(validation, restarts in one compiled program, monotone EM, Newton polish,
results); what is specific to classification lives here: binding the expert
family to the training classes, the default initialisation, and a results
class whose ``predict`` speaks in class probabilities and labels.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np

from .base import MoEModel
from ..fitting import pipeline
from ..data.validation import check_float, check_int
from ..inference.results import MoEResults, gate_and_means


class MultinomialMoE(MoEModel):
    """Mixture of multinomial-logistic experts with a covariate-dependent gate.

    Parameters
    ----------
    n_experts : int
    gating : str or gate object ("softmax", "modified_softmax", ...; see ``moestat.gating.available()``)
    expert : str or expert object, default "multinomial"
    intercept, gate_intercept : bool
        Add an intercept column to the expert / gate covariates.
    ridge : float
        Levenberg ridge on the gate's and the experts' Newton systems, relative
        to the curvature scale (0 = exact Newton steps).  It changes the path,
        not the fixed points; it keeps steps finite when classes are separated.
    screen : int
        Default initialisation (``init=None``): ``screen * n_init`` candidate
        partitions of the gate covariates each get a short EM run, and the
        ``n_init`` best go on to full EM (:mod:`moestat.fitting.screen`).  1 turns
        screening off (plain k-means / random-centre restarts).
    screen_tol : float
        Relative tolerance that ends the short screening runs.
    max_abs_coef : float, optional
        Bound every expert coefficient in absolute value (the compact
        parameter space of the theory).  Along separating directions the
        likelihood can increase without bound (no MLE exists); with a bound
        the fit is the maximum on the box, and no Newton polish is applied
        when the bound is active.

    Notes
    -----
    y holds class labels (integers, booleans or strings).  The sorted distinct
    labels are the classes; the first is the reference class of every expert.
    ``fit`` returns a :class:`MultinomialResults`.

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-2, 2, 400)
    >>> y = np.where(rng.random(400) < 1 / (1 + np.exp(-3 * x)), "b", "a")
    >>> res = ms.MultinomialMoE(n_experts=1).fit(x, y, n_init=1)
    >>> res.classes.tolist(), res.predict(np.array([-1.0, 1.0]), kind="class").tolist()
    (['a', 'b'], ['a', 'b'])
    """

    _default_expert = "multinomial"

    def __init__(self, n_experts: int = 2, gating="softmax", expert=None, *, intercept: bool = True,
                 gate_intercept: bool = True, ridge: float = 0.0, screen: int = 4, screen_tol: float = 1e-4,
                 max_abs_coef: float | None = None):
        super().__init__(n_experts, gating, expert, intercept=intercept, gate_intercept=gate_intercept,
                         ridge=ridge)
        if max_abs_coef is not None:
            if "max_abs_coef" not in {f.name for f in dataclasses.fields(self.expert)}:
                raise ValueError("max_abs_coef needs the multinomial expert family, got %r" % self.expert.name)
            self.expert = dataclasses.replace(self.expert, max_abs_coef=check_float(
                max_abs_coef, "max_abs_coef", 0.0, strict=True))
        self._family = self.expert          # as given; each fit binds a copy of it to its classes
        self.screen = check_int(screen, "screen", 1)
        self.screen_tol = check_float(screen_tol, "screen_tol", 0.0, strict=True)

    def _check_family(self):
        if self.expert.response != "categorical":
            raise ValueError("MultinomialMoE needs a categorical expert family, got %r (use GaussianMoE)"
                             % self.expert.name)

    def design(self, X, y=None, gate_X=None, weights=None, data=None):
        """Validate the inputs and bind the expert family to the classes of y.

        Parameters
        ----------
        X, y, gate_X, weights, data
            As for :meth:`fit`; ``"label ~ x"`` takes a label column as it is.

        Returns
        -------
        moestat.data.Design
            Expert design X (n, p), gate design Xg (n, pg), labels y (n,), weights (n,).

        Examples
        --------
        >>> import pandas as pd, moestat as ms
        >>> df = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "kind": ["a", "b", "a", "c"]})
        >>> d = ms.MultinomialMoE(1).design("kind ~ x", data=df)
        >>> d.X.shape, d.y_name
        ((4, 2), 'kind')
        """
        y_name = None
        if isinstance(X, str) and y is None and data is not None and "~" in X:
            # "species ~ x": a formula would expand a string response into dummy columns, so a bare
            # column name on the left is taken as the labels themselves
            lhs, rhs = X.split("~", 1)
            if lhs.strip() in getattr(data, "columns", ()):
                y_name, y, X = lhs.strip(), data[lhs.strip()], "~" + rhs
        d = super().design(X, y, gate_X, weights, data)
        if y_name is not None:
            d.y_name = y_name
        self.expert = self._family.bind(self._family.prepare(d.y, d.w))
        return d

    def fit(self, X, y=None, gate_X=None, weights=None, **kwargs):
        """Fit by EM (see :meth:`moestat.estimators.base.MoEModel.fit` for every argument).

        Each fit works on its own copy of the estimator, bound to the classes of
        its y, so results of earlier fits keep their class order.

        Parameters
        ----------
        X : array (n, d), DataFrame or formula
            Expert covariates (a formula ``"label ~ x1 + x2"`` with ``data=``).
        y : array (n,) of labels, optional
            Integers, booleans or strings; not needed with a formula.
        gate_X : array (n, dg), DataFrame or formula, optional
            Gate covariates; default: the expert covariates.
        weights : array (n,), optional
            Case weights (0 allowed).
        **kwargs
            ``data``, ``n_init``, ``seed``, ``init``, ``tol``, ``max_iter``,
            ``algorithm``, ... as for :meth:`moestat.estimators.base.MoEModel.fit`.

        Returns
        -------
        MultinomialResults

        Examples
        --------
        >>> import numpy as np, moestat as ms
        >>> x = np.linspace(-2, 2, 300)
        >>> y = np.where(np.sin(5 * x) > 0, "up", "down")
        >>> res = ms.MultinomialMoE(1).fit(x, y, n_init=1)
        >>> res.classes.tolist(), res.predict(kind="proba").shape
        (['down', 'up'], (300, 2))
        """
        bound = copy.copy(self)
        return MoEModel.fit(bound, X, y, gate_X, weights, **kwargs)

    def _starts(self, init, design, dat, base, ctl, fixed, cfg, n_init, seed, bs):
        """Default (init=None): screened starts (:func:`moestat.fitting.pipeline.screened_starts`); otherwise as every MoE."""
        if self.n_experts == 1:   # every start is the same: one is enough
            return super()._starts(None, design, dat, base, ctl, fixed, cfg, 1, seed, bs)
        if isinstance(init, str) and init == "screen":
            init = None
        if init is not None or self.screen <= 1:
            return super()._starts(init, design, dat, base, ctl, fixed, cfg, n_init, seed, bs)
        params, self._screen_ll = pipeline.screened_starts(self.gate, self.expert, design, dat, base, ctl, fixed, cfg,
                                                           n_init, seed, self.screen, self.screen_tol, bs)
        return params

    def _results_class(self):
        return MultinomialResults


class MultinomialResults(MoEResults):
    """Results of a :class:`MultinomialMoE` fit; ``predict`` speaks in class probabilities and labels.

    ``predict`` kinds (besides the gate/posterior kinds of every MoE result):

    * ``"proba"`` (or ``"mean"``): aggregated class probabilities
      P(y = c | x) = sum_i g_i(x) P_i(c | x), shape (n, C), columns in :attr:`classes` order;
    * ``"experts"``: each expert's class probabilities P_i(c | x), shape (n, k, C);
    * ``"class"``: the most probable class label, shape (n,).

    Parameters
    ----------
    As :class:`MoEResults` (built by :meth:`MultinomialMoE.fit`, not by users).

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-2, 2, 400)
    >>> y = (rng.random(400) < 1 / (1 + np.exp(-3 * x))).astype(int)
    >>> res = ms.MultinomialMoE(n_experts=1).fit(x, y, n_init=1)
    >>> res.predict(np.array([0.0])).shape                 # (n, C) class probabilities
    (1, 2)
    """

    @property
    def classes(self) -> np.ndarray:
        """The class labels in the order used by the coefficients (first = reference), shape (C,).

        Examples
        --------
        >>> import numpy as np, moestat as ms
        >>> x = np.linspace(-1, 1, 200)
        >>> y = np.where(np.sin(7 * x) > 0, "up", "down")
        >>> ms.MultinomialMoE(1).fit(x, y, n_init=1).classes.tolist()
        ['down', 'up']
        """
        return np.asarray(self.info["classes"])

    def predict(self, X=None, gate_X=None, kind: str = "proba", y=None, data=None):
        """Predictions for new (or the fitted) covariates.

        Parameters
        ----------
        X, gate_X, data : optional
            Covariates as for :meth:`MoEResults.predict`; None: the fitted rows.
        kind : str
            "proba" or "mean" (class probabilities, (m, C)), "experts" (each
            expert's class probabilities, (m, k, C)), "class" (labels, (m,)),
            or a gate/posterior kind of :meth:`MoEResults.predict`.
        y : array (m,), optional
            Labels, for the posterior kinds.

        Returns
        -------
        ndarray, or pandas Series/DataFrame
            Shape as listed under ``kind``; class columns in :attr:`classes`
            order.  A pandas DataFrame as new data keeps its row index
            (class-probability columns named by class).

        Examples
        --------
        >>> import numpy as np, moestat as ms
        >>> rng = np.random.default_rng(0)
        >>> x = rng.uniform(-2, 2, 400)
        >>> y = (rng.random(400) < 1 / (1 + np.exp(-3 * x))).astype(int)
        >>> res = ms.MultinomialMoE(n_experts=1).fit(x, y, n_init=1)
        >>> p = res.predict(np.array([-2.0, 2.0]))
        >>> p.round(2).tolist()[0][0] > 0.9, bool(np.allclose(p.sum(1), 1))
        (True, True)
        """
        return super().predict(X, gate_X, kind=kind, y=y, data=data)

    def _columns(self, kind, m):
        return list(self.classes) if kind in ("proba", "mean") else super()._columns(kind, m)

    def _predict_values(self, X, gate_X, kind, y, data):
        if kind not in ("proba", "mean", "experts", "class"):
            return super()._predict_values(X, gate_X, kind, y, data)
        dat, n, _ = self._new_data(X, gate_X, y, data)
        P = self._device_params
        gate, probs = (np.asarray(a)[..., :n] for a in gate_and_means(P, dat.Xg, dat.X, self.model.gate,
                                                                      self.model.expert))   # (k, n), (k, C, n)
        if kind == "experts":
            return np.transpose(probs, (2, 0, 1))
        agg = np.einsum("kn,kcn->nc", gate, probs)
        if kind == "class":
            return self.classes[np.argmax(agg, axis=1)]
        return agg

    def _header(self):
        labels = [str(c) for c in self.classes]
        return super()._header() + [("Classes:", "%s (ref.), %s" % (labels[0], ", ".join(labels[1:])))]

    def _expert_difference(self, d):
        # other starts are not polished: on a flat likelihood they differ by ~1e-2 while being the
        # same maximum, so only a difference in probabilities that matters counts as "distinct"
        return d, 0.05, "class probabilities"
