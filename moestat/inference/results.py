"""MoEResults: what a fit returns -- parameters, likelihood, criteria, prediction, simulation.

Modelled on statsmodels' results objects: cheap attributes are computed at
once, anything costly (standard errors, bootstrap) lazily.
"""
from __future__ import annotations

import warnings
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np

from ..fitting import em
from ..fitting.programs import stored_jit
from .._jax import to_device
from ..data.design import is_pandas, make_data, new_design
from ..data.design import lazy_pandas as pd

KINDS = ("mean", "experts", "gate", "posterior", "labels", "logpdf")


class MoEResults:
    """Results of a mixture-of-experts fit (what ``GaussianMoE.fit`` and the other estimators return).

    Cheap statistics (log-likelihood, criteria, parameters) are computed at
    once; standard errors (observed information) and the bootstrap lazily.

    Parameters
    ----------
    model, design, data, cfg, ctl, info, fit, restarts, best, fixed, seed, all_params, n_polish
        Built by the estimators' ``fit``; users do not construct results objects.

    Attributes
    ----------
    loglik : float
        Maximised log-likelihood (``llf`` in statsmodels' vocabulary).
    converged : bool
        Whether EM met its tolerance at the reported start.
    n_iter : int
        EM iterations of the reported start.
    loglik_trace : ndarray, shape (n_iter,)
        Log-likelihood before each M-step of the reported start.
    restarts : pandas.DataFrame
        One row per start: start, loglik, converged, n_iter, degenerate, min_expert_weight, finalist
        (run to the full tolerance; False: stopped after its short EM run) and basin (the continued
        start whose screened partition it repeats, else itself).
    best_start : int
        Row of ``restarts`` that is reported.
    design : moestat.data.Design
        The validated design (expert matrix X (n, p), gate matrix Xg (n, pg), y, weights, term names).

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
    >>> round(res.loglik, 4), res.df, res.converged
    (-479.3653, 8, True)
    >>> len(res.restarts)
    2
    """

    def __init__(self, model, design, data, cfg, ctl, info, fit, restarts, best, fixed, seed, all_params=None, n_polish=0,
                 em_expert_weights=None):
        self.model = model
        self.design = design
        self._data = data
        self._cfg = cfg
        self._ctl = ctl
        self.info = info
        self.fixed = fixed
        self.seed = seed
        raw = jax.tree_util.tree_map(np.asarray, fit.params)
        self.params_internal = em.MoEParams(gate=model.gate.canonical(raw.gate), expert=raw.expert)
        self.params_internal = jax.tree_util.tree_map(np.asarray, self.params_internal)
        self.loglik = float(fit.loglik)
        self.converged = bool(fit.converged)
        self.n_iter = int(fit.n_iter)
        tr = np.asarray(fit.trace)
        self.loglik_trace = tr[np.isfinite(tr)]
        self._restart_columns = ({c: restarts[c].to_numpy() for c in restarts.columns}
                                 if hasattr(restarts, "columns") else dict(restarts))
        self.best_start = best
        self.algorithm = cfg.algorithm
        self._all_params = all_params
        self.n_polish = n_polish
        # sum_n w_n tau_in at EM's parameters of the reported start (computed with the fit): the expert weights
        # themselves when no polish step moved them, a screen for the warnings otherwise
        self._em_expert_weights = None if em_expert_weights is None else np.asarray(em_expert_weights, np.float64)

    # ------------------------------------------------------------------ basics
    @property
    def restarts(self) -> pd.DataFrame:
        """One row per start (pandas.DataFrame): ``start``, ``loglik``, ``converged``, ``n_iter``,
        ``degenerate``, ``min_expert_weight``, ``finalist`` (ran to the full tolerance) and ``basin`` (the
        continued start whose run stands for it).  Built on first access: a fit itself does not import pandas.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=4)
        >>> list(res.restarts.columns[:4]), len(res.restarts)
        (['start', 'loglik', 'converged', 'n_iter'], 4)
        """
        frame = self.__dict__.get("_restarts_frame")
        if frame is None:
            if "restarts" in self.__dict__:          # a results object pickled before the columns were kept
                frame = self.__dict__["restarts"]
            else:
                frame = pd.DataFrame(self._restart_columns)
            self._restarts_frame = frame
        return frame

    @property
    def params_tree(self) -> em.MoEParams:
        """Canonical parameters (softmax reference expert 0 has gate row 0): a :class:`moestat.MoEParams` PyTree of NumPy arrays.

        ``params_tree.gate`` and ``params_tree.expert`` hold the family's arrays, e.g.
        for a softmax gate ``coef`` (k, pg) with the reference expert's row 0,
        and for linear Gaussian experts ``coef`` (k, p) and ``sigma2`` (k,)
        (variances).  :attr:`params` is the labelled pandas Series, :meth:`params_frame` the table.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.params_tree.expert.coef.shape, res.params_tree.gate.coef[0].tolist()
        ((2, 2), [0.0, 0.0])
        """
        return self.params_internal

    @property
    def params(self) -> pd.Series:
        """The reported estimates as a labelled Series (index: block, expert, term), as statsmodels.

        Same rows and order as :attr:`bse`, :meth:`cov_params` and
        :meth:`summary_frame` (sigma, not sigma^2); the PyTree is :attr:`params_tree`.

        Returns
        -------
        pandas.Series, shape (P,)
            One entry per reported parameter; the index has the levels
            ``block`` ("expert" or "gate"), ``expert`` (1-based) and ``term``.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.params.shape
        (8,)
        >>> round(float(res.params["expert", 1, "x"]), 2)
        2.49
        """
        f = self.params_frame()
        return pd.Series(f["estimate"].to_numpy(), index=pd.MultiIndex.from_frame(f[["block", "expert", "term"]]),
                         name="estimate")

    @property
    def param_names(self) -> list[str]:
        """Flat names of :attr:`params`, ``"<block><expert>:<term>"`` (e.g. ``"expert2:x"``), for constraints.

        Returns
        -------
        list of str, length P
            In the order of :attr:`params`; :meth:`t_test` and :meth:`wald_test` read these names.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.param_names[:3]
        ['expert1:Intercept', 'expert1:x', 'expert1:sigma']
        """
        from .hypothesis import param_names
        return param_names(self.params_frame())

    @property
    def n_experts(self) -> int:
        """Number of experts k of the fitted model.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.n_experts
        2
        """
        return self.model.n_experts

    @property
    def nobs(self) -> float:
        """Number of observations: the sum of the case weights.

        With ``groups``: the sum of the group weights (the
        number of groups when unweighted), as flexmix's ``nobs``; BIC and ICL use it.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.nobs
        500.0
        """
        if self.design.group_codes is not None:
            return float((self.design.w * self._group_row_share).sum())
        return float(self.design.w.sum())

    @property
    def _group_row_share(self):
        """(n,) 1 / (rows in the row's group), or 1 without groups."""
        c = self.design.group_codes
        return 1.0 if c is None else 1.0 / np.bincount(c)[c]

    @property
    def df(self) -> int:
        """Number of free parameters (fixed parameters excluded).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.df            # 2 experts x (intercept, slope, variance) + gate row 2 (intercept, slope)
        8
        """
        n = self.model.n_params(self.design.X.shape[1], self.design.Xg.shape[1])
        pairs = [(self.fixed.gate, self.model.gate.free_mask(self.params_tree.gate)),
                 (self.fixed.expert, self.model.expert.free_mask(self.params_tree.expert))]
        n_fixed = sum(int(np.sum(np.asarray(f) & np.asarray(m)))
                      for fx, fr in pairs
                      for f, m in zip(jax.tree_util.tree_leaves(fx), jax.tree_util.tree_leaves(fr)))
        return n - n_fixed

    @property
    def aic(self) -> float:
        """Akaike information criterion -2 loglik + 2 df (smaller is better).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> bool(abs(res.aic - (-2 * res.loglik + 2 * res.df)) < 1e-9)
        True
        """
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def bic(self) -> float:
        """Bayesian information criterion -2 loglik + log(nobs) df (smaller is better).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> round(float(res.bic), 2)
        1008.45
        """
        return -2.0 * self.loglik + np.log(self.nobs) * self.df

    @property
    def entropy(self) -> float:
        """Weighted classification entropy -sum_n w_n sum_i tau_in log tau_in (a float >= 0).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> round(res.entropy, 2)
        41.58
        """
        tau = self.responsibilities
        t = np.clip(tau, 1e-300, 1.0)
        # a group's entropy counts once: rows share w_n / n_g
        return float(-(self.design.w * self._group_row_share * (tau * np.log(t)).sum(1)).sum())

    @property
    def icl(self) -> float:
        """Integrated completed likelihood criterion: BIC + 2 * entropy (smaller is better).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> bool(abs(res.icl - (res.bic + 2 * res.entropy)) < 1e-9)
        True
        """
        return self.bic + 2.0 * self.entropy

    @cached_property
    def responsibilities(self) -> np.ndarray:
        """Posterior probabilities of the experts for the fitted data, shape (n, k); rows sum to 1.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.responsibilities.shape
        (500, 2)
        """
        _, tau, _ = em.evaluate(self._device_params, self._data, self._cfg)
        return np.asarray(tau)[:, : self.design.n].T

    @cached_property
    def _device_params(self):
        return jax.tree_util.tree_map(lambda a: to_device(a), self.params_internal)

    @property
    def expert_weights(self) -> np.ndarray:
        """Effective number of points carried by each expert, sum_n w_n tau_in, shape (k,).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.expert_weights.round(1).tolist()
        [234.3, 265.7]
        """
        if self.n_polish == 0 and self._em_expert_weights is not None:   # the fit's own, at these parameters
            return self._em_expert_weights.copy()   # a copy: writing into it must not change what the fit reports
        return self.design.w @ self.responsibilities

    # ------------------------------------------------------------------ prediction
    def _new_data(self, X, gate_X, y, data):
        if X is None and gate_X is None and data is None:
            Xm, Gm = self.design.X, self.design.Xg
            yv = self.design.y if y is None else self.model.expert.check_y(np.asarray(y))
        else:
            Xm, Gm = new_design(self.design, X, gate_X, data, gate_transform=self.model.gate.transform)
            Xm = self.model.expert.transform_design(Xm, self.design.expert_block.intercept)
            if y is None and self.design.expert_block.formula is not None and self.design.y_name in _columns(data, X):
                y = _column(data, X, self.design.y_name)
            yv = None if y is None else self.model.expert.check_y(np.asarray(y))
        if yv is not None and yv.shape[0] != Xm.shape[0]:
            raise ValueError("y has %d entries but X has %d rows" % (yv.shape[0], Xm.shape[0]))
        yv = None if yv is None else self.model.expert.encode_y(yv, self.info)   # class labels -> training codes
        y_fill = yv if yv is not None else np.zeros(Xm.shape[0], dtype=np.asarray(self._data.y).dtype)
        # on the fitted rows the posterior is that of each row's group
        groups = self.design.group_codes if (X is None and gate_X is None and data is None) else None
        return make_data(Xm, Gm, y_fill, np.ones(Xm.shape[0]), groups=groups), Xm.shape[0], yv is not None

    def predict(self, X=None, gate_X=None, kind: str = "mean", y=None, data=None):
        """Predictions for new (or the fitted) covariates.

        Parameters
        ----------
        X : array (m, d), DataFrame or None
            New expert covariates (a DataFrame with the formula's columns for
            formula fits); None: the fitted data.
        gate_X : array (m, dg), DataFrame or None
            New gate covariates when the gate was given its own.
        kind : str
            "mean" (aggregated conditional mean, (m,)), "experts" (per-expert
            means, (m, k)), "gate" (gating probabilities, (m, k)), "posterior"
            (responsibilities given y, (m, k)), "labels" (MAP expert given y,
            (m,)), "logpdf" (predictive log density of y, (m,)).
        y : array (m,), optional
            The response, for "posterior", "labels" and "logpdf".
        data : DataFrame, optional
            Data for formula fits (alternative to passing it as X).

        Returns
        -------
        ndarray, or pandas Series/DataFrame
            Shape as listed under ``kind``.  When the new data come as a pandas
            DataFrame (``X`` or ``data``), the result keeps its row index, as in
            statsmodels: a Series for (m,) kinds, a DataFrame (columns
            expert1..expertk) for (m, k) kinds.

        Examples
        --------
        >>> import moestat as ms, pandas as pd
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.predict(pd.DataFrame({"x": [0.0, 1.0]})).round(3).tolist()
        [0.09, -1.463]
        >>> res.predict(kind="gate").shape
        (500, 2)
        """
        return self._labelled(self._predict_values(X, gate_X, kind, y, data), self._row_labels(X, data), kind)

    def _row_labels(self, X, data):
        """The row index of new pandas input (``data``, else ``X``), or None."""
        from ..data.design import row_index
        src = data if data is not None else X
        return None if src is None else row_index(src, len(src) if hasattr(src, "index") else -1)

    def _columns(self, kind, m):
        return ["expert%d" % (i + 1) for i in range(m)]

    def _labelled(self, out, labels, kind):
        """(n,) -> Series and (n, m) -> DataFrame with the pandas row index ``labels`` (None: as is)."""
        out = np.asarray(out)
        if labels is None or out.ndim > 2 or out.shape[0] != len(labels):
            return out
        if out.ndim == 1:
            return pd.Series(out, index=labels, name=kind)
        return pd.DataFrame(out, index=labels, columns=self._columns(kind, out.shape[1]))

    def _predict_values(self, X, gate_X, kind, y, data):
        if kind not in KINDS:
            raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, KINDS)), kind))
        return self._predict_on(*self._new_data(X, gate_X, y, data), kind)

    def _predict_on(self, dat, n, has_y, kind):
        """:meth:`predict` on encoded data (the first n of its padded rows)."""
        P = self._device_params
        if kind in ("posterior", "labels", "logpdf"):
            if not has_y:
                raise ValueError("kind=%r needs the response: pass y" % kind)
            _, tau, lse = em.evaluate(P, dat, self._cfg)
            tau = np.asarray(tau)[:, :n].T
            if kind == "posterior":
                return tau
            if kind == "labels":
                return tau.argmax(1)
            return np.asarray(lse)[:n]
        gate, means = (np.asarray(a)[..., :n] for a in gate_and_means(P, dat.Xg, dat.X, self.model.gate,
                                                                      self.model.expert))
        if kind == "gate":
            return gate.T
        if kind == "experts":
            return np.moveaxis(means, 0, -1) if means.ndim == 2 else np.moveaxis(means, 0, 1)
        if means.ndim == 2:
            return (gate * means).sum(0)
        return np.einsum("kn,kcn->nc", gate, means)

    def sample(self, X=None, gate_X=None, seed: int = 0, data=None, return_labels: bool = False):
        """Draw y from the fitted model at the given (default: fitted) covariates.

        Parameters
        ----------
        X, gate_X, data : optional
            Covariates as for :meth:`predict`; None: the fitted rows.
        seed : int
            Seed of the draw.
        return_labels : bool
            Also return the drawn experts.

        Returns
        -------
        y : ndarray, shape (m,)
            Draws (class labels for classification models).
        z : ndarray, shape (m,)
            Expert of each draw (0-based), only with ``return_labels=True``.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> y, z = res.sample(seed=1, return_labels=True)
        >>> y.shape, sorted(set(z.tolist()))
        ((500,), [0, 1])
        """
        dat, n, _ = self._new_data(X, gate_X, None, data)
        return self._sample_on(dat, n, seed, return_labels)

    def _sample_on(self, dat, n, seed, return_labels):
        """:meth:`sample` on encoded data (the first n of its padded rows)."""
        P = self._device_params
        kz, ky = jax.random.split(jax.random.PRNGKey(int(seed)))
        lg = self.model.gate.log_weights(P.gate, dat.Xg)
        z = jax.random.categorical(kz, lg, axis=0)
        if dat.groups is not None:  # fitted rows: one expert per group (its first row's draw)
            from ..data.design import group_first_rows
            z = z[group_first_rows(self.design.group_codes, z.shape[0])]
        yv = np.asarray(self.model.expert.sample(ky, P.expert, dat.X, z))[:n]
        yv = self.model.expert.decode_y(yv, self.info)
        return (yv, np.asarray(z)[:n]) if return_labels else yv

    # ------------------------------------------------------------------ tables
    def params_frame(self) -> pd.DataFrame:
        """Estimates as a table with columns block ("gate" | "expert"), expert (1-based), term, estimate.

        Returns
        -------
        pandas.DataFrame
            One row per reported parameter (Gaussian experts report sigma).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.params_frame().head(3).round(3)
            block  expert       term  estimate
        0  expert       1  Intercept    -1.027
        1  expert       1          x     2.493
        2  expert       1      sigma     0.506
        """
        rows = [("expert", i + 1, t, v) for i, t, v in
                self.model.expert.describe(self.params_tree.expert, self.design.expert_block.names)]
        rows += [("gate", i + 1, t, v) for i, t, v in
                 self.model.gate.describe(self.params_tree.gate, self.design.gate_block.names)]
        return pd.DataFrame(rows, columns=["block", "expert", "term", "estimate"])

    # ------------------------------------------------------------------ inference (moestat.inference)
    @cached_property
    def information(self):
        """Observed-information covariance (:class:`moestat.inference.Information`), computed once.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.information.bse.shape
        (8,)
        """
        from .bootstrap import observed_information
        return observed_information(self)

    @property
    def bse(self) -> pd.Series:
        """Observed-information standard errors of the reported estimates (Series indexed by block, expert, term).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> round(float(res.bse["expert", 1, "x"]), 3)
        0.092
        """
        return self.information.bse

    def cov_params(self) -> pd.DataFrame:
        """Observed-information covariance of the reported estimates (sigma by the delta method).

        Returns
        -------
        pandas.DataFrame
            Shape (q, q) for the q reported estimates, rows and columns labelled as :attr:`bse`.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> C = res.cov_params()
        >>> C.shape, bool(abs(C.iloc[0, 0] ** 0.5 - res.bse.iloc[0]) < 1e-12)
        ((8, 8), True)
        """
        return self.information.cov_frame()

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals at level 1 - alpha.

        Parameters
        ----------
        alpha : float
            1 - coverage, in (0, 1).

        Returns
        -------
        pandas.DataFrame
            Columns lower, upper; one row per reported estimate.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.conf_int().iloc[1].round(3).tolist()
        [2.313, 2.672]
        """
        f = self.information.frame(alpha)
        return pd.DataFrame({"lower": f["ci_low"].to_numpy(), "upper": f["ci_high"].to_numpy()},
                            index=self.information.index)

    @property
    def zvalues(self) -> pd.Series:
        """Wald statistics estimate / std_err (Series indexed like :attr:`bse`).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> round(float(res.zvalues.iloc[1]), 2)
        27.23
        """
        return pd.Series(self.information.frame()["z"].to_numpy(), index=self.information.index, name="z")

    tvalues = zvalues  # the statsmodels name

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided normal p-values of the Wald statistics (Series indexed like :attr:`bse`).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> bool(res.pvalues["gate", 2, "x"] < 0.001)     # gate slope: z = 10.4
        True
        """
        return pd.Series(self.information.frame()["p_value"].to_numpy(), index=self.information.index,
                         name="p_value")

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """The coefficient table as a DataFrame, with observed-information inference.

        Parameters
        ----------
        alpha : float
            1 - coverage of the Wald intervals.

        Returns
        -------
        pandas.DataFrame
            Columns block, expert, term, estimate, std_err, z, p_value, ci_low, ci_high.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> list(res.summary_frame().columns)
        ['block', 'expert', 'term', 'estimate', 'std_err', 'z', 'p_value', 'ci_low', 'ci_high']
        """
        return self.information.frame(alpha)

    def bootstrap(self, B: int = 200, kind: str = "empirical", seed: int = 0, **kwargs):
        """Empirical or parametric bootstrap of this fit.

        Parameters
        ----------
        B : int
            Number of replicates.
        kind : "empirical" or "parametric"
            Resample cases, or draw responses from the fitted model.
        seed : int
            Replicate b's draws depend on (seed, b) only.
        **kwargs
            Further options of :func:`moestat.bootstrap` (n_init, n_jobs, tol, alpha).

        Returns
        -------
        moestat.inference.BootstrapResults
            ``estimates`` (B, q), ``bse``, ``conf_int()``, ``summary_frame()``.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> boot = res.bootstrap(B=5, seed=0)
        >>> boot.estimates.shape
        (5, 8)
        """
        from .bootstrap import bootstrap
        return bootstrap(self, B=B, kind=kind, seed=seed, **kwargs)

    def plot(self, kind: str | None = None, ax=None, **kwargs):
        """Draw the fit with :mod:`moestat.plot`; returns the matplotlib Axes.

        Parameters
        ----------
        kind : str, optional
            "experts" (expert means and gate over a covariate; the default for
            Gaussian experts), "class_probabilities" (the default for
            :class:`moestat.MultinomialMoE`), "responsibilities",
            "loglik_trace", "coefficients" or "gate_regions".
        ax : matplotlib Axes, optional
            Where to draw; a new figure when None.
        **kwargs
            Passed to the function of that name in :mod:`moestat.plot`.

        Returns
        -------
        matplotlib Axes

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.plot("coefficients", block="gate").get_xlabel()
        'estimate'
        """
        from .. import plot as plots
        if kind is None:
            kind = "class_probabilities" if hasattr(self, "classes") else "experts"
        if kind not in plots.RESULT_PLOTS:
            raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, plots.RESULT_PLOTS)), kind))
        return getattr(plots, kind)(self, ax=ax, **kwargs)

    def relabel(self, order) -> "MoEResults":
        """A copy with the experts reordered: new expert i is old expert ``order[i]``.

        Parameters
        ----------
        order : sequence of int, length k
            A permutation of 0..k-1.

        Returns
        -------
        MoEResults

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.relabel([1, 0]).params_tree.expert.coef[0].round(3).tolist()
        [0.98, -2.497]
        """
        from .bootstrap import relabel
        return relabel(self, order)

    def _header(self) -> list[tuple[str, str]]:
        return [("Dep. variable:", self.design.y_name), ("Model:", type(self.model).__name__),
                ("Gating:", self.model.gate.name),
                ("Experts:", "%d x %s" % (self.n_experts, self.model.expert.name)),
                ("Method:", "ML (%s)" % self.algorithm.upper()), ("Covariance:", "observed info."),
                ] + ([("No. observations:", "%g" % self.nobs)] if self.design.group_codes is None else  # (grouped)
                     [("No. observations:", "%d rows" % self.design.n),
                      ("Groups:", "%d (BIC's n: %g)" % (self.design.n_groups, self.nobs))]) + [
                ("Df model:", str(self.df)),
                ("Log-likelihood:", "%.4f" % self.loglik), ("AIC:", "%.4f" % self.aic),
                ("BIC:", "%.4f" % self.bic), ("ICL:", "%.4f" % self.icl),
                ("Converged:", str(self.converged)),
                ("Iterations:", "%d%s" % (self.n_iter, " + %d Newton" % self.n_polish if self.n_polish else "")),
                ("Starts:", "%d (best: %d; %d reached its log-lik.)" % (len(self._restarts_columns()["loglik"]), self.best_start,
                                                                         self.n_best_starts))] + (
                [("Likelihood:", "joint of (x, y)")] if self.model.gate.joint else [])

    def summary(self, alpha: float = 0.05) -> "Summary":
        """A printable summary: fit statistics and one coefficient table per block (with SEs, z, p, CIs).

        Parameters
        ----------
        alpha : float
            1 - coverage of the intervals.

        Returns
        -------
        Summary
            ``print()`` it; ``.tables`` holds the coefficient frames per block.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> text = str(res.summary())
        >>> "Log-likelihood:" in text and "expert 2" in text
        True
        """
        return Summary(self, alpha)

    # ------------------------------------------------------------------ statsmodels vocabulary
    @property
    def llf(self) -> float:
        """Log-likelihood at the estimate (statsmodels' name for :attr:`loglik`).

        Returns
        -------
        float

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.llf == res.loglik, round(res.llf, 4)
        (True, -479.3653)
        """
        return self.loglik

    @property
    def _n_scale(self) -> int:
        """Number of expert dispersion parameters (one sigma per Gaussian expert, none for multinomial)."""
        f = self.params_frame()
        return int(((f["block"] == "expert") & (f["term"] == "sigma")).sum())

    @property
    def _n_null_mean(self) -> int:
        """Mean parameters of the null model: 1 (the mean of y) or C - 1 (class frequencies)."""
        return 1 if self.model.expert.response == "continuous" else len(self.info["classes"]) - 1

    @property
    def df_model(self) -> int:
        """Model degrees of freedom, as statsmodels counts them: free parameters other than the experts'
        dispersions and the null model's constant(s) (OLS: p - 1; MNLogit: (C - 1)(p - 1) for k = 1).

        Returns
        -------
        int

        Examples
        --------
        Two linear Gaussian experts (2 x 2 coefficients, 2 sigmas) and a
        softmax gate (2 free coefficients) have 8 free parameters; without the
        sigmas and the null model's mean, 5:

        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.df, res.df_model
        (8, 5)
        """
        return self.df - self._n_scale - self._n_null_mean

    @property
    def df_resid(self) -> float:
        """Residual degrees of freedom: nobs minus the free parameters other than the dispersions
        (OLS: n - p; MNLogit: n - (C - 1) p for k = 1).

        Returns
        -------
        float

        Examples
        --------
        500 points and 8 free parameters, of which 2 are expert sigmas:

        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.nobs, res.df_resid
        (500.0, 494.0)
        """
        return self.nobs - (self.df - self._n_scale)

    @cached_property
    def llnull(self) -> float:
        """Log-likelihood of the null model: one expert, intercept only, no covariates (same case weights).

        Gaussian experts: y ~ N(mu, s^2) at the weighted MLE; multinomial
        experts: the weighted class frequencies (statsmodels' ``llnull``).
        """
        w = self.design.w
        W = w.sum()
        if self.model.expert.response == "continuous":
            y = np.asarray(self.design.y, dtype=np.float64)
            mu = w @ y / W
            s2 = w @ (y - mu) ** 2 / W
            return float(-0.5 * W * (np.log(2.0 * np.pi * s2) + 1.0))
        codes = np.asarray(self._data.y)[: self.design.n]
        Wc = np.bincount(codes, weights=w, minlength=len(self.info["classes"]))
        Wc = Wc[Wc > 0]
        return float(Wc @ np.log(Wc / W))

    @property
    def prsquared(self) -> float:
        """McFadden's likelihood-ratio pseudo-R^2, 1 - llf / llnull (statsmodels' ``prsquared``).

        Returns
        -------
        float

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> round(res.prsquared, 4) == round(1 - res.llf / res.llnull, 4)
        True
        >>> round(res.prsquared, 3)
        0.484
        """
        return 1.0 - self.llf / self.llnull

    def pseudo_rsquared(self, kind: str = "mcf") -> float:
        """Likelihood-ratio pseudo-R^2: "mcf" (McFadden, 1 - llf/llnull) or "cs" (Cox-Snell,
        1 - exp(2 (llnull - llf) / nobs)), as statsmodels' GLM results offer.

        Parameters
        ----------
        kind : {"mcf", "cs"}
            McFadden's (the default, equal to :attr:`prsquared`) or Cox and Snell's.

        Returns
        -------
        float

        Raises
        ------
        ValueError
            For any other ``kind``.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.pseudo_rsquared() == res.prsquared
        True
        >>> round(res.pseudo_rsquared("cs"), 3)
        0.834
        """
        if kind == "mcf":
            return self.prsquared
        if kind == "cs":
            return float(1.0 - np.exp(2.0 * (self.llnull - self.llf) / self.nobs))
        raise ValueError("kind must be 'mcf' or 'cs', got %r" % (kind,))

    @property
    def fittedvalues(self):
        """Fitted mixture means at the fitted rows ((n,); class probabilities (n, C) for multinomial
        experts), with the data's pandas index when the fit had one.

        Returns
        -------
        pandas.Series (n,) or pandas.DataFrame (n, C) when the fit had a pandas index, else ndarray
            sum_i g_i(z) mu_i(x), as ``predict(kind="mean")`` on the fitted rows.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> res.fittedvalues.shape
        (500,)
        >>> bool(abs(res.fittedvalues - res.predict(kind="mean")).max() < 1e-12)
        True
        """
        return self._labelled(self._predict_values(None, None, "mean", None, None),
                              self.design.extra.get("row_index"), "fittedvalues")

    @property
    def resid(self):
        """Response residuals y - fittedvalues (multinomial experts: class indicators minus probabilities).

        Returns
        -------
        pandas.Series (n,) or pandas.DataFrame (n, C) when the fit had a pandas index, else ndarray

        Examples
        --------
        >>> import moestat as ms
        >>> df = ms.datasets.load_sim_moe2()
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=df, n_init=2)
        >>> bool(abs(res.resid + res.fittedvalues - df["y"]).max() < 1e-12)
        True
        """
        fit = np.asarray(self.fittedvalues)
        if fit.ndim == 1:
            out = np.asarray(self.design.y, dtype=np.float64) - fit
        else:
            out = np.eye(fit.shape[1])[np.asarray(self._data.y)[: self.design.n]] - fit
        return self._labelled(out, self.design.extra.get("row_index"), "resid")

    def t_test(self, r_matrix, alpha: float = 0.05):
        """Wald z-tests of linear hypotheses R params = q, one per row, as statsmodels' ``t_test``.

        Parameters
        ----------
        r_matrix : str, list of str, array (m, P) or tuple (R, q)
            Constraints on the parameters named in :attr:`param_names`, e.g.
            ``"expert1:x = expert2:x"`` or ``["expert1:x = 0", "expert2:x = 0"]``.
        alpha : float
            Level of the reported confidence intervals.

        Returns
        -------
        statsmodels.stats.contrast.ContrastResults
            ``effect`` (m,), ``sd`` (m,), ``statistic`` (m,) z values, ``pvalue`` (two-sided normal).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2())
        >>> t = res.t_test("expert1:x = expert2:x")
        >>> bool(t.pvalue < 0.05)
        True
        """
        from .hypothesis import t_test
        return t_test(self, r_matrix, alpha)

    def wald_test(self, r_matrix, scalar: bool = True):
        """Joint Wald chi2 test of R params = q (statsmodels' ``wald_test(..., use_f=False)``).

        Parameters
        ----------
        r_matrix : str, list of str, array (m, P) or tuple (R, q)
            As in :meth:`t_test`; all rows are tested jointly.
        scalar : bool
            Accepted for statsmodels compatibility; the statistic is always a float.

        Returns
        -------
        statsmodels.stats.contrast.ContrastResults
            ``statistic`` (chi2), ``df_denom`` (number of constraints), ``pvalue``.

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2())
        >>> w = res.wald_test(["expert1:x = 0", "expert2:x = 0"])
        >>> w.df_denom
        2
        """
        from .hypothesis import wald_test
        return wald_test(self, r_matrix)

    def get_prediction(self, X=None, gate_X=None, data=None):
        """Mixture means with delta-method intervals and predictive intervals (:mod:`moestat.inference.prediction`).

        Parameters
        ----------
        X, gate_X, data : new covariates as for :meth:`predict` (default: the fitted rows)

        Returns
        -------
        moestat.inference.prediction.PredictionResults
            ``summary_frame(alpha)`` has columns mean, mean_se, mean_ci_lower,
            mean_ci_upper, obs_ci_lower, obs_ci_upper (n rows; the new data's
            pandas index when it had one).

        Examples
        --------
        >>> import moestat as ms
        >>> import pandas as pd
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2())
        >>> f = res.get_prediction(pd.DataFrame({"x": [0.2, 0.8]})).summary_frame(alpha=0.1)
        >>> list(f.columns)[:2]
        ['mean', 'mean_se']
        """
        from .prediction import get_prediction
        return get_prediction(self, X, gate_X, data)

    # ------------------------------------------------------------------ persistence
    def save(self, path, remove_data: bool = False) -> None:
        """Pickle the results to ``path`` (load them with :func:`moestat.load`), as statsmodels' ``save``.

        Parameters
        ----------
        path : str or path-like
        remove_data : bool
            Not supported (the fitted data are needed for standard errors and
            fitted values); passing True raises ValueError.

        Returns
        -------
        None

        Examples
        --------
        >>> import os, tempfile, moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> path = os.path.join(tempfile.mkdtemp(), "fit.pkl")
        >>> res.save(path)
        >>> round(ms.load(path).loglik, 4)
        -479.3653
        """
        from .persistence import save
        if remove_data:
            raise ValueError("remove_data=True is not supported: the results need the fitted data")
        save(self, path)

    def __getstate__(self):
        from .persistence import results_state
        return results_state(self)

    def routing_report(self, top_k: int | None = None, q: float = 2.0):
        """Router utilization, Jain index, load imbalance and gate entropy on the data; saturation and change
        rate per EM iteration when fitted with ``record_gate=True`` (see :func:`moestat.routing.routing_report`).

        Parameters
        ----------
        top_k : int, optional
            K of the top-K routing sets (default: the gate's own K for top-K-type
            gates, 1 otherwise).
        q : float
            Index of the Tsallis entropy reported beside Shannon's.

        Returns
        -------
        moestat.routing.RoutingReport
            ``experts`` (DataFrame, k rows: ``weight_share``, ``topk_share``,
            ``topk_load``), ``summary`` (Series: ``jain_weight``, ``jain_topk``,
            ``load_imbalance``, ``entropy``, ``tsallis``, ``top_k``, ``q``) and
            ``iterations`` (DataFrame, one row per EM iteration, or None unless
            the fit was run with ``record_gate=True``).

        Examples
        --------
        >>> import moestat as ms
        >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
        >>> rep = res.routing_report()
        >>> rep.experts["topk_load"].tolist(), rep.iterations is None
        ([230, 270], True)
        >>> round(float(rep.summary["jain_topk"]), 4)
        0.9936
        """
        from ..routing import routing_report
        return routing_report(self, top_k=top_k, q=q)

    def _warn_about_fit(self):
        from ..exceptions import ConvergenceWarning, DegenerateFitWarning, MoEWarning
        r = self._restarts_columns()
        if not self.converged and self.algorithm != "sem":
            warnings.warn("EM did not converge in %d iterations (relative tolerance %g); increase max_iter"
                          % (self._cfg.max_iter, float(self._ctl.tol)), ConvergenceWarning, stacklevel=3)
        higher = r["loglik"][(r["loglik"] > self.loglik + 1e-6 * max(1.0, abs(self.loglik))) & r["degenerate"]]
        if higher.size:
            warnings.warn("%d start(s) reached a higher log-likelihood (best %.4f vs %.4f reported) at a degenerate "
                          "solution (an expert fitting a few points with a tiny variance); the best "
                          "non-degenerate fit is reported. Set min_variance to bound variances, or "
                          "prefer_nondegenerate=False to keep it."
                          % (higher.size, higher.max(), self.loglik), DegenerateFitWarning, stacklevel=3)
        if bool(r["degenerate"][self.best_start]):
            warnings.warn("the reported fit is degenerate: an expert carries few effective points or a tiny "
                          "variance (effective points per expert: %s); consider fewer experts or min_variance"
                          % np.round(self.expert_weights, 2).tolist(), DegenerateFitWarning, stacklevel=3)
        floor = max(1.0, 1e-3 * self.nobs)
        wts = self._em_expert_weights
        if wts is None or np.any(wts < 2.0 * floor):   # a polish moves them by far less than a factor 2
            wts = self.expert_weights
        small = np.flatnonzero(wts < floor)
        if small.size:
            warnings.warn("expert(s) %s carry almost no data (effective points %s); they are kept in the model"
                          % ((small + 1).tolist(), np.round(wts[small], 3).tolist()), MoEWarning, stacklevel=3)
        if self.algorithm == "em":  # CEM / SEM end at many nearby points by design: not a uniqueness issue
            self._check_unique()
            self._check_restarts()

    #: relative tolerance within which a start counts as reaching the best log-likelihood
    BEST_START_RTOL = 1e-6

    @property
    def n_best_starts(self) -> int:
        """Number of starts whose EM log-likelihood is within ``BEST_START_RTOL`` of the chosen start's.

        Only starts of the chosen start's kind count (degenerate or not); a
        start stopped after its short EM run (``restarts["finalist"]`` False)
        counts when its partition repeats that of a continued start that
        reached it (``restarts["basin"]``).  A
        value of 1 among several starts means the reported maximum was found
        once: more starts (``n_init``) may find a higher one -- the check a
        flexmix or mclust user makes by hand.

        Returns
        -------
        int
            Between 1 and ``len(restarts)``.

        Examples
        --------
        >>> res = ms.GaussianMoE(2).fit(x, y, n_init=10)      # doctest: +SKIP
        >>> res.n_best_starts                                  # doctest: +SKIP
        4
        """
        r = self._restarts_columns()
        ll = np.asarray(r["loglik"], dtype=float)
        if "basin" in r:   # a start stopped after its short EM run counts as the continued start it repeats
            ll = ll[np.asarray(r["basin"], dtype=int)]
        best = ll[self.best_start]
        degenerate = np.asarray(r["degenerate"], dtype=bool)
        kind = degenerate == degenerate[self.best_start]
        near = np.isfinite(ll) & (ll >= best - self.BEST_START_RTOL * max(1.0, abs(best))) & kind
        return max(1, int(near.sum()))

    def _restarts_columns(self) -> dict:
        """The restart table's columns as NumPy arrays (no pandas)."""
        cols = self.__dict__.get("_restart_columns")
        if cols is None:                                # pickled before the columns were kept
            cols = {c: self.restarts[c].to_numpy() for c in self.restarts.columns}
        return cols

    def _check_restarts(self):
        """Warn when only one of several starts reached the reported maximum."""
        from ..exceptions import RestartWarning
        n_starts = len(self._restarts_columns()["loglik"])
        if n_starts > 1 and self.n_best_starts == 1:
            warnings.warn("only 1 of %d starts reached the best log-likelihood (%.4f); a higher maximum may exist: "
                          "refit with more starts (n_init) or compare res.restarts"
                          % (n_starts, self.loglik), RestartWarning, stacklevel=4)

    def _check_unique(self):
        """Warn when another start reaches the same log-likelihood with a different fitted model."""
        from ..exceptions import MoEWarning
        r = self._restarts_columns()
        tol = 1e-6 * max(1.0, abs(self.loglik))
        start = np.asarray(r["start"])
        close = start[(np.abs(np.asarray(r["loglik"], dtype=float) - self.loglik) <= tol) & (start != self.best_start)
                      & ~np.asarray(r["degenerate"], dtype=bool)
                      & np.asarray(r.get("finalist", True), dtype=bool)]   # short EM runs stop before the maximum
        if not close.size or self._all_params is None:
            return
        mine = np.sort(self.predict(kind="experts"), axis=1)
        for s in close:
            P = jax.tree_util.tree_map(lambda a: to_device(np.asarray(a)[int(s)]), self._all_params)
            other = np.asarray(gate_and_means(P, self._data.Xg, self._data.X, self.model.gate,
                                              self.model.expert)[1])[..., : self.design.n]
            other = np.sort(np.moveaxis(other, 0, -1) if other.ndim == 2 else np.transpose(other, (2, 0, 1)), axis=1)
            d, limit, what = self._expert_difference(np.abs(mine - other).max())
            if d > limit:
                warnings.warn("the best log-likelihood is reached by distinct fits (start %d differs in its expert "
                              "%s by %.3g): the maximum is not unique" % (s, what, d), MoEWarning, stacklevel=4)
                return

    def _expert_difference(self, d):
        """(difference, threshold, what) for the largest gap between two fits' expert means."""
        return d / np.sqrt(max(self.info.get("var_y", 1.0), 1e-300)), 1e-3, "means (in sd(y))"


@stored_jit(static_argnames=("gate", "expert"))
def gate_and_means(params, Xg, X, gate, expert):
    """Gate probabilities (k, N) and expert means ((k, N), or (k, C, N) for classes) at padded designs.

    One compiled program per model and size bucket serves every prediction.
    """
    return jnp.exp(gate.log_weights(params.gate, Xg)), expert.mean(params.expert, X)


def _fmt(v, col) -> str:
    if not isinstance(v, (float, np.floating)) or not np.isfinite(v):
        return "%10s" % ("nan" if isinstance(v, (float, np.floating)) else v)
    if col == "p_value":
        return "%10.3f" % v
    if col == "z":
        return "%10.3f" % v
    return "%10.4f" % v if abs(v) < 1e5 else "%10.3g" % v


def _columns(data, X):
    src = data if data is not None else X
    return list(src.columns) if is_pandas(src, "DataFrame") else []


def _column(data, X, name):
    src = data if data is not None else X
    return src[name].to_numpy()


class Summary:
    """A statsmodels-like text summary; ``str()`` or ``print()`` it, ``.tables`` holds the frames.

    Coefficient tables carry observed-information standard errors, Wald z,
    two-sided p-values and (1 - alpha) Wald intervals (:mod:`moestat.inference`).

    Parameters
    ----------
    res : MoEResults
    alpha : float
        1 - coverage of the intervals.

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
    >>> sorted(res.summary().tables)
    ['expert', 'gate']
    """

    def __init__(self, res: MoEResults, alpha: float = 0.05):
        self.res = res
        self.alpha = alpha
        self.header = res._header()
        frame = res.summary_frame(alpha)
        self.tables = {blk: frame[frame["block"] == blk].drop(columns="block") for blk in ("expert", "gate")}

    def as_text(self) -> str:
        width = 78
        lines = ["=" * width, "Mixture-of-experts results".center(width), "=" * width]
        half = (len(self.header) + 1) // 2
        left, right = self.header[:half], self.header[half:]
        for i in range(half):
            l = "%-17s %20s" % left[i]
            r = "%-17s %20s" % right[i] if i < len(right) else ""
            lines.append(l + "  " + r)
        q = "[%g" % (self.alpha / 2), "%g]" % (1 - self.alpha / 2)
        cols = ("estimate", "std_err", "z", "p_value", "ci_low", "ci_high")
        head = "%-18s" % "" + "".join("%10s" % c for c in ("coef", "std err", "z", "P>|z|", q[0], q[1]))
        for blk, title in (("expert", "Experts"), ("gate", self.res.model.gate.summary_title)):
            t = self.tables[blk]
            if not len(t):
                continue
            lines += ["=" * width, title, head]
            for e, sub in t.groupby("expert", sort=True):
                lines.append("-" * width)
                lines.append("expert %d" % e)
                for _, row in sub.iterrows():
                    lines.append("%-18s" % str(row["term"])[:18] + "".join(_fmt(row[c], c) for c in cols))
        lines.append("=" * width)
        return "\n".join(lines)

    def __str__(self):
        return self.as_text()

    __repr__ = __str__

    def _repr_html_(self):
        return "<pre>%s</pre>" % self.as_text()
