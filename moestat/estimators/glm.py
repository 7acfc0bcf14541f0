"""GLMMoE: mixtures of Poisson- or binomial-regression experts under any gate.

p(y | x, z) = sum_i g_i(z) f(y | x; beta_i), f Poisson (log link, optional
offset/exposure) or binomial (logit, probit or cloglog link; 0/1 responses,
(successes, failures) pairs or successes with ``trials``).

The estimator shares the whole fitting pipeline of :class:`moestat.estimators.base.MoEModel`
(validation, restarts in one compiled program, monotone EM, Newton polish,
observed information, bootstrap, ``select_k``).  What is specific to GLMs lives
here: reading the response forms and the offset/exposure/trials arguments,
which travel as the last row of the expert design (:mod:`moestat.experts.glm`),
and a results class whose ``predict`` and ``sample`` accept them for new data.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import warnings

import numpy as np

from ..data.design import Design, as_float_matrix, is_pandas, parse_formula
from ..experts.glm import GLMExpert, LINKS, check_counts
from ..experts.base import get_expert
from .base import MoEModel
from ..exceptions import MoEWarning
from ..data.validation import check_float
from ..inference.results import MoEResults

FAMILIES = tuple(LINKS)


def _family(family, link) -> GLMExpert:
    """The GLM expert family object from a name (statsmodels spelling) or an instance, with ``link``."""
    if isinstance(family, GLMExpert):
        return family if link is None else dataclasses.replace(family, link=link)
    if not isinstance(family, str) or family.lower() not in FAMILIES:
        raise ValueError("family must be one of %s (or a GLM expert object), got %r"
                         % (", ".join(map(repr, FAMILIES)), family))
    fam = get_expert(family.lower())
    return fam if link is None else dataclasses.replace(fam, link=link)


def _vector(v, name: str, n: int, data=None) -> np.ndarray:
    """A finite float vector (n,) from an array-like or the name of a column of ``data``."""
    if isinstance(v, str):
        if data is None or v not in getattr(data, "columns", data if isinstance(data, dict) else ()):
            raise ValueError("%s=%r names no column of data" % (name, v))
        v = data[v]
    a = as_float_matrix(v, name)
    if a.shape[1] != 1:
        raise ValueError("%s must be one-dimensional (n,), got shape %s" % (name, np.shape(v)))
    if a.shape[0] != n:
        raise ValueError("%s has %d entries but there are %d observations" % (name, a.shape[0], n))
    return a[:, 0]


def split_response(family: GLMExpert, y):
    """(successes (n,), trials (n,) or None) from a response that may be a (successes, failures) pair.

    A two-column y is read as (successes, failures), as in statsmodels and R;
    only binomial experts take one.
    """
    if y is None:
        return None, None
    arr = y.to_numpy() if is_pandas(y, "Series", "DataFrame") else np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 2:
        if family.family != "binomial":
            raise ValueError("a two-column y is a (successes, failures) response, which only binomial experts "
                             "take; %s experts need one count per row" % family.family)
        s = check_counts(arr[:, 0], "y[:, 0] (successes)", "binomial")
        f = check_counts(arr[:, 1], "y[:, 1] (failures)", "binomial")
        return s, s + f
    if arr.ndim == 2 and arr.shape[1] not in (1, 2):
        raise ValueError("y must be (n,) or, for binomial experts, (n, 2) (successes, failures); got shape %s"
                         % (arr.shape,))
    return arr, None


def aux_row(family: GLMExpert, n: int, *, offset=None, exposure=None, trials=None, pair_trials=None,
            data=None) -> np.ndarray | None:
    """The auxiliary design row (n,): offset + log(exposure) (Poisson) or the trials (binomial).

    None when nothing is given (the design keeps its row: the fitted values or
    the neutral offset 0 / one trial).
    """
    if family.family == "poisson":
        if trials is not None or pair_trials is not None:
            raise ValueError("trials apply to binomial experts; Poisson experts take offset= or exposure=")
        if offset is None and exposure is None:
            return None
        row = np.zeros(n) if offset is None else _vector(offset, "offset", n, data)
        if exposure is not None:
            e = _vector(exposure, "exposure", n, data)
            if np.any(e <= 0):
                i = int(np.argmax(e <= 0))
                raise ValueError("exposure must be positive; row %d is %g" % (i, e[i]))
            row = row + np.log(e)
        return row
    if offset is not None or exposure is not None:
        raise ValueError("offset and exposure apply to Poisson experts; binomial experts take trials= or a "
                         "two-column (successes, failures) y")
    if trials is not None and pair_trials is not None:
        raise ValueError("give the number of trials once: either trials= or a two-column (successes, failures) y")
    if trials is None:
        return pair_trials
    t = _vector(trials, "trials", n, data)
    bad = (t < 1) | (t != np.round(t))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError("trials must be whole numbers >= 1; row %d is %g" % (i, t[i]))
    return t


def check_successes(y: np.ndarray, trials: np.ndarray | None, name: str = "y") -> None:
    """ValueError when successes exceed the trials (one trial per row when ``trials`` is None)."""
    t = np.ones_like(y) if trials is None else trials
    over = y > t
    if over.any():
        i = int(np.argmax(over))
        if trials is None:
            raise ValueError("%s must be 0 or 1 for binomial experts without trials, but row %d is %g; pass "
                             "trials= or a two-column (successes, failures) y" % (name, i, y[i]))
        raise ValueError("%s exceeds the number of trials at row %d (%g successes, %g trials)"
                         % (name, i, y[i], t[i]))


def _top_level_split(text: str) -> list[str]:
    """The comma-separated arguments of ``text``, ignoring commas inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return parts + [cur.strip()]


def _pair_formula(formula: str, data):
    """("~ rhs", lhs text, successes, trials) for ``"s + f ~ x"`` / ``"cbind(s, f) ~ x"``; None otherwise."""
    if not isinstance(formula, str) or "~" not in formula or data is None:
        return None
    lhs, rhs = formula.split("~", 1)
    lhs = lhs.strip()
    if not lhs:
        return None
    m = re.fullmatch(r"cbind\((.*)\)", lhs)
    terms = " + ".join("I(%s)" % a for a in _top_level_split(m.group(1))) if m else lhs
    _, cols, _ = parse_formula("~ " + terms + " - 1", data, "the response of X")
    if cols.shape[1] != 2:
        return None
    pair = cols.to_numpy()
    return "~" + rhs, lhs, pair


class GLMMoE(MoEModel):
    """Mixture of Poisson- or binomial-regression (GLM) experts with a covariate-dependent gate.

    p(y | x, z) = sum_i g_i(z) f(y | x; beta_i), with f a Poisson
    (log mu = beta_i' x + offset) or binomial (link(p) = beta_i' x) density.

    Parameters
    ----------
    n_experts : int
    family : {"poisson", "binomial"} or a GLM expert object (``ms.experts.PoissonGLM()``, ...)
    gating : str or gate object ("softmax", ...; see ``moestat.gating.available()``)
    link : str, optional
        Poisson: ``"log"``; binomial: ``"logit"`` (default), ``"probit"``, ``"cloglog"``.
    intercept, gate_intercept : bool
        Add an intercept column to the expert / gate covariates.
    ridge : float
        Levenberg ridge on the gate's and the experts' Newton systems, relative
        to the curvature scale (0 = exact Newton steps).
    newton_steps : int
        Guarded Newton steps of each expert per EM iteration.
    max_abs_coef : float, optional
        Bound every expert coefficient in absolute value.  With binary
        responses an expert can separate its successes from its failures, and
        then the likelihood increases without bound (no MLE; the fit warns);
        with a bound the fit is the maximum on the box.

    Notes
    -----
    Responses: Poisson takes non-negative counts, with ``offset=`` and/or
    ``exposure=`` (log mu = beta' x + offset + log exposure, as statsmodels).
    Binomial takes 0/1 responses, successes with ``trials=``, or a
    (successes, failures) pair: a two-column y, or a formula
    ``"s + f ~ x"`` (statsmodels) / ``"cbind(s, f) ~ x"`` (R).
    ``predict(kind="mean")`` returns expected counts (Poisson, at the given
    exposure) or success probabilities (binomial), as statsmodels' GLM does.

    Examples
    --------
    >>> import moestat as ms
    >>> df = ms.datasets.load_npreg()
    >>> res = ms.GLMMoE(2, family="poisson").fit("yp ~ x", data=df, n_init=5)
    >>> round(res.loglik, 3)                 # flexmix's best: -440.551
    -440.551
    """

    _default_expert = "poisson"

    def __init__(self, n_experts: int = 2, family="poisson", gating="softmax", link: str | None = None, *,
                 intercept: bool = True, gate_intercept: bool = True, ridge: float = 0.0, newton_steps: int = 1,
                 max_abs_coef: float | None = None):
        fam = _family(family, link)
        if newton_steps != fam.newton_steps:
            fam = dataclasses.replace(fam, newton_steps=newton_steps)
        if max_abs_coef is not None:
            fam = dataclasses.replace(fam, max_abs_coef=check_float(max_abs_coef, "max_abs_coef", 0.0, strict=True))
        super().__init__(n_experts, gating, fam, intercept=intercept, gate_intercept=gate_intercept, ridge=ridge)
        self._aux_args: dict = {}
        self._start = None

    def _check_family(self):
        if not isinstance(self.expert, GLMExpert):
            raise ValueError("GLMMoE needs a GLM expert family (%s), got %r"
                             % (", ".join(map(repr, FAMILIES)), self.expert.name))

    def __repr__(self):
        return "GLMMoE(n_experts=%d, family=%r, gating=%r, link=%r)" % (
            self.n_experts, self.expert.family, self.gate.name, self.expert.link)

    def design(self, X, y=None, gate_X=None, weights=None, data=None, *, offset=None, exposure=None, trials=None):
        """Validate the inputs; the last expert-design column carries the offset (Poisson) or the trials (binomial).

        Parameters
        ----------
        X : array (n,) or (n, d), DataFrame, formula, or an encoded :class:`moestat.data.Design`
            As in :meth:`fit` (an encoded design is re-used with new auxiliary values).
        y : array (n,) or (n, 2), optional
            Counts (Poisson), 0/1 responses or successes, or (successes, failures) pairs (binomial).
        gate_X : array, DataFrame or one-sided formula, optional
        weights : array (n,), optional
        data : DataFrame, optional
        offset, exposure : array (n,) or column name, optional
            Poisson only; the auxiliary column holds offset + log(exposure).
        trials : array (n,) or column name, optional
            Binomial only; the auxiliary column holds the trials.

        Returns
        -------
        moestat.data.Design
            ``X`` (n, p + 1): the p expert covariates, then the auxiliary
            column; ``Xg`` (n, pg); ``y`` (n,) counts or successes; ``w`` (n,).

        Examples
        --------
        >>> import numpy as np, moestat as ms
        >>> m = ms.GLMMoE(2, family="poisson")
        >>> d = m.design("yp ~ x", data=ms.datasets.load_npreg(), exposure=np.full(200, 2.0))
        >>> d.X.shape, d.Xg.shape
        ((200, 3), (200, 2))
        >>> bool(np.allclose(d.X[:, -1], np.log(2.0)))
        True
        """
        fam = self.expert
        aux = dict(self._aux_args)
        aux.update({k: v for k, v in (("offset", offset), ("exposure", exposure), ("trials", trials))
                    if v is not None})
        if isinstance(X, Design):   # select_k / bootstrap LRT refit an encoded design
            d = super().design(X, y, gate_X, weights, data)
            row = aux_row(fam, d.n, **aux)
            if row is not None:
                d = dataclasses.replace(d, X=d.X.copy())
                d.X[:, -1] = row
                if fam.family == "binomial":
                    check_successes(d.y, row)
        else:
            y_name, pair = None, None
            parsed = _pair_formula(X, data) if y is None else None
            if parsed is not None:
                if fam.family != "binomial":
                    raise ValueError("a two-column response %r is a (successes, failures) pair, which only "
                                     "binomial experts take" % parsed[1])
                X, y_name, pair = parsed
            y, pair_trials = split_response(fam, pair if pair is not None else y)
            d = super().design(X, y, gate_X, weights, data)
            if y_name is not None:
                d.y_name = y_name
            row = aux_row(fam, d.n, pair_trials=pair_trials, data=data, **aux)
            if row is not None:
                d.X[:, -1] = row
            if fam.family == "binomial":
                check_successes(d.y, row)
        self._start = (0 if d.expert_block.intercept else None, fam.start_eta(d.y, d.X[:, -1], d.w))
        return d

    def base_params(self, p, pg, info):
        """Zero coefficients, except the intercepts: the one-expert fit without covariates.

        The intercepts are set from the last :meth:`design` call (Poisson: the
        log of the mean count per unit exposure; binomial: the link of the
        pooled success rate).

        Parameters
        ----------
        p : int
            Columns of the expert design, the auxiliary column included (p - 1 coefficients per expert).
        pg : int
            Columns of the gate design.
        info : dict
            Summaries of the data, as ``fit`` passes them (unused by GLM experts).

        Returns
        -------
        moestat.MoEParams
            ``gate``: the gate's starting parameters (``gate.init_params(k, pg)``;
            for softmax all zero, every expert equally likely); ``expert.coef`` (k, p - 1).

        Examples
        --------
        >>> import numpy as np, moestat as ms
        >>> df = ms.datasets.load_npreg()
        >>> m = ms.GLMMoE(2, family="poisson")
        >>> d = m.design("yp ~ x", data=df)
        >>> b = m.base_params(d.X.shape[1], d.Xg.shape[1], {})
        >>> b.expert.coef.shape
        (2, 2)
        >>> bool(np.allclose(b.expert.coef[:, 0], np.log(df["yp"].mean())))
        True
        """
        base = super().base_params(p, pg, info)
        if self._start is None or self._start[0] is None:
            return base
        col, eta0 = self._start
        coef = np.array(base.expert.coef)
        coef[:, col] = eta0
        return base._replace(expert=base.expert._replace(coef=coef))

    def fit(self, X, y=None, gate_X=None, weights=None, *, offset=None, exposure=None, trials=None, **kwargs):
        """Fit by EM from several starts; the best log-likelihood among non-degenerate fits wins.

        Parameters
        ----------
        X : array (n,) or (n, d), DataFrame, or a formula (``"y ~ x"``; binomial
            also ``"s + f ~ x"`` or ``"cbind(s, f) ~ x"`` for (successes, failures))
        y : array (n,) of counts / 0-1 responses / successes, or (n, 2) (successes, failures)
        gate_X : array, DataFrame or one-sided formula ``"~ z"``; default: the expert covariates
        weights : array (n,), optional
            Non-negative case (frequency) weights.
        offset : array (n,) or column name, optional
            Poisson only: added to every expert's linear predictor.
        exposure : array (n,) or column name, optional
            Poisson only: positive; log(exposure) is added to the linear predictor.
        trials : array (n,) or column name, optional
            Binomial only: number of trials of each row (y counts the successes).
        **kwargs
            ``data``, ``n_init``, ``seed``, ``init``, ``tol``, ``max_iter``,
            ``algorithm``, ``fixed``, ``polish``, ... as in :meth:`moestat.estimators.base.MoEModel.fit`.

        Returns
        -------
        GLMResults
            ``params`` (expert coefficients (k, p) and gate), ``loglik``,
            ``bse``, ``summary()``, ``predict``, ``sample``, ``bootstrap``.

        Examples
        --------
        >>> import numpy as np, moestat as ms
        >>> rng = np.random.default_rng(0)
        >>> x = rng.uniform(-1, 1, 400)
        >>> y = rng.poisson(np.where(x < 0, np.exp(1 + x), np.exp(2 - x)))
        >>> res = ms.GLMMoE(2, family="poisson").fit(x, y, n_init=4)
        >>> res.params_tree.expert.coef.shape
        (2, 2)
        """
        bound = copy.copy(self)
        bound._aux_args = {k: v for k, v in (("offset", offset), ("exposure", exposure), ("trials", trials))
                           if v is not None}
        return MoEModel.fit(bound, X, y, gate_X, weights, **kwargs)

    def _results_class(self):
        return GLMResults


class GLMResults(MoEResults):
    """Results of a :class:`GLMMoE` fit.

    ``predict`` and ``sample`` take the new rows' ``offset``/``exposure``
    (Poisson) or ``trials`` (binomial); without them the fitted rows keep
    theirs and new rows get exposure 1 / one trial.  ``predict(kind="mean")``
    is the expected count (Poisson) or the success probability (binomial).

    Parameters
    ----------
    model, design, data, cfg, ctl, info, fit, restarts, best, fixed, seed, all_params, n_polish
        As :class:`moestat.MoEResults`: built by :meth:`GLMMoE.fit`, not by users.

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> df = ms.datasets.load_npreg()
    >>> res = ms.GLMMoE(2, family="poisson").fit(df["x"].to_numpy(), df["yp"].to_numpy(), n_init=2)
    >>> type(res).__name__, res.params_tree.expert.coef.shape
    ('GLMResults', (2, 2))
    >>> new = np.array([2.0, 8.0])
    >>> mu1 = res.predict(new)                          # expected counts at exposure 1
    >>> bool(np.allclose(res.predict(new, exposure=np.array([3.0, 3.0])), 3 * mu1))
    True
    """

    def _glm_data(self, X, gate_X, y, data, offset, exposure, trials):
        """Encoded data with the auxiliary row set, as ``_new_data`` returns it."""
        fam = self.model.expert
        frame = data if data is not None else X
        if y is None and fam.family == "binomial" and is_pandas(frame, "DataFrame") \
                and self.design.expert_block.formula is not None and self.design.y_name not in frame.columns:
            # a (successes, failures) formula response, e.g. "cbind(s, f)": read it from the new frame when
            # its columns are there (they give the trials); without them y is unknown, as for any new frame
            try:
                parsed = _pair_formula(self.design.y_name + " ~ 1", frame)
            except ValueError:
                parsed = None
            y = None if parsed is None else parsed[2]
        succ, pair_trials = split_response(fam, y)
        dat, n, has_y = self._new_data(X, gate_X, succ, data)
        row = aux_row(fam, n, offset=offset, exposure=exposure, trials=trials, pair_trials=pair_trials, data=data)
        if row is not None:
            dat = dat._replace(X=dat.X.at[-1, :n].set(row))
        if has_y and fam.family == "binomial":
            check_successes(np.asarray(dat.y)[:n], np.asarray(dat.X[-1])[:n])
        return dat, n, has_y

    def predict(self, X=None, gate_X=None, kind: str = "mean", y=None, data=None, *, offset=None, exposure=None,
                trials=None):
        """Predictions for new (or the fitted) covariates.

        Parameters
        ----------
        X, gate_X, data : covariates as for ``fit`` (default: the fitted rows)
        kind : "mean" (n,), "experts" (n, k), "gate" (n, k), "posterior" (n, k), "labels" (n,), "logpdf" (n,)
            "mean" is sum_i g_i(z) mu_i(x): expected counts (Poisson) or
            success probabilities (binomial); "experts" the per-expert means;
            "posterior", "labels" and "logpdf" need y.
        y : array (n,) or (n, 2), optional
        offset, exposure, trials : arrays (n,), optional
            As in ``fit``, for the rows predicted.

        Returns
        -------
        ndarray, or pandas Series/DataFrame
            Shape as listed for ``kind``; a pandas DataFrame as new data keeps
            its row index (as for :meth:`MoEResults.predict`).

        Examples
        --------
        >>> import numpy as np, moestat as ms
        >>> rng = np.random.default_rng(1)
        >>> x = rng.uniform(-1, 1, 300)
        >>> y = rng.poisson(np.exp(1 + x))
        >>> res = ms.GLMMoE(1).fit(x, y)
        >>> res.predict(np.array([0.0]), exposure=np.array([2.0])).shape
        (1,)
        """
        from ..inference.results import KINDS
        if kind not in KINDS:
            raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, KINDS)), kind))
        values = self._predict_on(*self._glm_data(X, gate_X, y, data, offset, exposure, trials), kind)
        return self._labelled(values, self._row_labels(X, data), kind)

    def sample(self, X=None, gate_X=None, seed: int = 0, data=None, return_labels: bool = False, *, offset=None,
               exposure=None, trials=None):
        """Draw y (n,) from the fitted model at the given (default: fitted) covariates and exposures/trials.

        Parameters
        ----------
        X, gate_X, data : covariates as for ``fit`` (default: the fitted rows)
        seed : int
            Seed of the draws (the same seed gives the same draws).
        return_labels : bool
            Also return the expert that generated each draw.
        offset, exposure, trials : arrays (n,) or column names, optional
            As in ``fit``, for the rows drawn (default: the fitted rows' own,
            exposure 1 / one trial for new rows).

        Returns
        -------
        y : ndarray (n,)
            Counts (Poisson) or successes (binomial).
        labels : ndarray (n,) of int
            The generating expert (0-based), only with ``return_labels=True``.

        Examples
        --------
        >>> import numpy as np, moestat as ms
        >>> res = ms.GLMMoE(2, family="poisson").fit("yp ~ x", data=ms.datasets.load_npreg(), n_init=2)
        >>> y, z = res.sample(seed=0, return_labels=True)
        >>> y.shape, bool(np.all(y >= 0) and np.all(y == np.round(y))), sorted(set(z.tolist()))
        ((200,), True, [0, 1])
        >>> bool(np.array_equal(res.sample(seed=0), y))
        True
        """
        dat, n, _ = self._glm_data(X, gate_X, None, data, offset, exposure, trials)
        return self._sample_on(dat, n, seed, return_labels)

    def _warn_about_fit(self):
        super()._warn_about_fit()
        fam = self.model.expert
        sep = fam.separated(self.params_tree.expert, self.design.X, self.responsibilities, self.design.w)
        if fam.max_abs_coef is None and sep.any():
            warnings.warn("expert(s) %s fit %s where they carry weight (separation): the likelihood has no "
                          "maximum there, so their coefficients and standard errors are not meaningful; bound "
                          "them with max_abs_coef= or use fewer experts"
                          % ((np.flatnonzero(sep) + 1).tolist(),
                             "probabilities of 0 or 1" if fam.family == "binomial" else "means of 0"),
                          MoEWarning, stacklevel=4)

    def _expert_difference(self, d):
        # unpolished starts on a flat likelihood (e.g. a gate that hardly depends on x) end ~1e-2 sd(y)
        # apart at the same maximum, so only a difference in means that matters counts as "distinct"
        return d / np.sqrt(max(self.info.get("var_y", 1.0), 1e-300)), 0.05, "means (in sd(y))"

    def _header(self):
        fam = self.model.expert
        return super()._header() + [("Family:", "%s (%s link)" % (fam.family, fam.link))]
