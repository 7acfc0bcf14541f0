"""MoEResults: what a fit returns -- parameters, likelihood, criteria, prediction, simulation.

Modelled on statsmodels' results objects: cheap attributes are computed at
once, anything costly (standard errors, bootstrap) lazily.
"""
from __future__ import annotations

import warnings
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import em
from ._jax import to_device
from .data import make_data, new_design

KINDS = ("mean", "experts", "gate", "posterior", "labels", "logpdf")


class MoEResults:
    """Results of a mixture-of-experts fit (see ``GaussianMoE.fit``)."""

    def __init__(self, model, design, data, cfg, ctl, info, fit, restarts, best, fixed, seed, all_params=None, n_polish=0):
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
        self.restarts = restarts
        self.best_start = best
        self.algorithm = cfg.algorithm
        self._all_params = all_params
        self.n_polish = n_polish

    # ------------------------------------------------------------------ basics
    @property
    def params(self) -> em.MoEParams:
        """Canonical parameters (PyTree of NumPy arrays; softmax reference expert 0 has gate row 0)."""
        return self.params_internal

    @property
    def n_experts(self) -> int:
        return self.model.n_experts

    @property
    def nobs(self) -> float:
        """Number of observations: the sum of the case weights.

        (grouped branch) With ``groups``: the sum of the group weights (the
        number of groups when unweighted), as flexmix's ``nobs``; BIC and ICL use it.
        """
        if self.design.group_codes is not None:
            return float((self.design.w * self._group_row_share).sum())
        return float(self.design.w.sum())

    @property
    def _group_row_share(self):
        """(grouped branch) (n,) 1 / (rows in the row's group), or 1 without groups."""
        c = self.design.group_codes
        return 1.0 if c is None else 1.0 / np.bincount(c)[c]

    @property
    def df(self) -> int:
        """Number of free parameters (fixed parameters excluded)."""
        n = self.model.n_params(self.design.X.shape[1], self.design.Xg.shape[1])
        pairs = [(self.fixed.gate, self.model.gate.free_mask(self.params.gate)),
                 (self.fixed.expert, self.model.expert.free_mask(self.params.expert))]
        n_fixed = sum(int(np.sum(np.asarray(f) & np.asarray(m)))
                      for fx, fr in pairs
                      for f, m in zip(jax.tree_util.tree_leaves(fx), jax.tree_util.tree_leaves(fr)))
        return n - n_fixed

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.nobs) * self.df

    @property
    def entropy(self) -> float:
        """Weighted classification entropy -sum_n w_n sum_i tau_in log tau_in."""
        tau = self.responsibilities
        t = np.clip(tau, 1e-300, 1.0)
        # (grouped branch) a group's entropy counts once: rows share w_n / n_g
        return float(-(self.design.w * self._group_row_share * (tau * np.log(t)).sum(1)).sum())

    @property
    def icl(self) -> float:
        """Integrated completed likelihood criterion: BIC + 2 * entropy (smaller is better)."""
        return self.bic + 2.0 * self.entropy

    @cached_property
    def responsibilities(self) -> np.ndarray:
        """(n, k) posterior probabilities of the experts for the fitted data."""
        _, tau, _ = em.evaluate(self._device_params, self._data, self._cfg)
        return np.asarray(tau)[:, : self.design.n].T

    @cached_property
    def _device_params(self):
        return jax.tree_util.tree_map(lambda a: to_device(a), self.params_internal)

    @property
    def expert_weights(self) -> np.ndarray:
        """(k,) effective number of points carried by each expert, sum_n w_n tau_in."""
        return self.design.w @ self.responsibilities

    # ------------------------------------------------------------------ prediction
    def _new_data(self, X, gate_X, y, data):
        if X is None and gate_X is None and data is None:
            Xm, Gm = self.design.X, self.design.Xg
            yv = self.design.y if y is None else self.model.expert.check_y(np.asarray(y))
        else:
            Xm, Gm = new_design(self.design, X, gate_X, data, gate_transform=self.model.gate.transform)
            Xm = self.model.expert.transform_design(Xm, self.design.expert_block.intercept)  # (experts branch)
            if y is None and self.design.expert_block.formula is not None and self.design.y_name in _columns(data, X):
                y = _column(data, X, self.design.y_name)
            yv = None if y is None else self.model.expert.check_y(np.asarray(y))
        if yv is not None and yv.shape[0] != Xm.shape[0]:
            raise ValueError("y has %d entries but X has %d rows" % (yv.shape[0], Xm.shape[0]))
        yv = None if yv is None else self.model.expert.encode_y(yv, self.info)   # class labels -> training codes
        y_fill = yv if yv is not None else np.zeros(Xm.shape[0], dtype=np.asarray(self._data.y).dtype)
        # (grouped branch) on the fitted rows the posterior is that of each row's group
        groups = self.design.group_codes if (X is None and gate_X is None and data is None) else None
        return make_data(Xm, Gm, y_fill, np.ones(Xm.shape[0]), groups=groups), Xm.shape[0], yv is not None

    def predict(self, X=None, gate_X=None, kind: str = "mean", y=None, data=None):
        """Predictions for new (or the fitted) covariates.

        kind : "mean" (aggregated conditional mean, (n,)), "experts" (per-expert
            means, (n, k)), "gate" (gating probabilities, (n, k)), "posterior"
            (responsibilities given y, (n, k)), "labels" (MAP expert given y,
            (n,)), "logpdf" (predictive log density of y, (n,)).
        """
        if kind not in KINDS:
            raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, KINDS)), kind))
        dat, n, has_y = self._new_data(X, gate_X, y, data)
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
        gate = np.exp(np.asarray(self.model.gate.log_weights(P.gate, dat.Xg)))[:, :n]
        if kind == "gate":
            return gate.T
        means = np.asarray(self.model.expert.mean(P.expert, dat.X))[..., :n]
        if kind == "experts":
            return np.moveaxis(means, 0, -1) if means.ndim == 2 else np.moveaxis(means, 0, 1)
        if means.ndim == 2:
            return (gate * means).sum(0)
        return np.einsum("kn,kcn->nc", gate, means)

    def sample(self, X=None, gate_X=None, seed: int = 0, data=None, return_labels: bool = False):
        """Draw y from the fitted model at the given (default: fitted) covariates."""
        dat, n, _ = self._new_data(X, gate_X, None, data)
        P = self._device_params
        kz, ky = jax.random.split(jax.random.PRNGKey(int(seed)))
        lg = self.model.gate.log_weights(P.gate, dat.Xg)
        z = jax.random.categorical(kz, lg, axis=0)
        if dat.groups is not None:  # (grouped branch) fitted rows: one expert per group (its first row's draw)
            from .data import group_first_rows
            z = z[group_first_rows(self.design.group_codes, z.shape[0])]
        yv = np.asarray(self.model.expert.sample(ky, P.expert, dat.X, z))[:n]
        yv = self.model.expert.decode_y(yv, self.info) if hasattr(self.model.expert, "decode_y") else yv
        return (yv, np.asarray(z)[:n]) if return_labels else yv

    # ------------------------------------------------------------------ tables
    def params_frame(self) -> pd.DataFrame:
        """Estimates as a table: block ("gate" | "expert"), expert (1-based), term, estimate."""
        rows = [("expert", i + 1, t, v) for i, t, v in
                self.model.expert.describe(self.params.expert, self.design.expert_block.names)]
        rows += [("gate", i + 1, t, v) for i, t, v in
                 self.model.gate.describe(self.params.gate, self.design.gate_block.names)]
        return pd.DataFrame(rows, columns=["block", "expert", "term", "estimate"])

    # ------------------------------------------------------------------ inference (moestat.inference)
    @cached_property
    def information(self):
        """Observed-information covariance (:class:`moestat.inference.Information`), computed once."""
        from .inference import observed_information
        return observed_information(self)

    @property
    def bse(self) -> pd.Series:
        """Observed-information standard errors of the reported estimates (index: block, expert, term)."""
        return self.information.bse

    def cov_params(self) -> pd.DataFrame:
        """Observed-information covariance of the reported estimates (sigma by the delta method)."""
        return self.information.cov_frame()

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals (columns lower, upper) at level 1 - alpha."""
        f = self.information.frame(alpha)
        return pd.DataFrame({"lower": f["ci_low"].to_numpy(), "upper": f["ci_high"].to_numpy()},
                            index=self.information.index)

    @property
    def zvalues(self) -> pd.Series:
        """Wald statistics estimate / std_err."""
        return pd.Series(self.information.frame()["z"].to_numpy(), index=self.information.index, name="z")

    tvalues = zvalues  # the statsmodels name

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided normal p-values of the Wald statistics."""
        return pd.Series(self.information.frame()["p_value"].to_numpy(), index=self.information.index,
                         name="p_value")

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """block, expert, term, estimate, std_err, z, p_value, ci_low, ci_high (observed information)."""
        return self.information.frame(alpha)

    def bootstrap(self, B: int = 200, kind: str = "empirical", seed: int = 0, **kwargs):
        """Empirical or parametric bootstrap of this fit (see :func:`moestat.inference.bootstrap`)."""
        from .inference import bootstrap
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
        from . import plot as plots
        if kind is None:
            kind = "class_probabilities" if hasattr(self, "classes") else "experts"
        if kind not in plots.RESULT_PLOTS:
            raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, plots.RESULT_PLOTS)), kind))
        return getattr(plots, kind)(self, ax=ax, **kwargs)

    def relabel(self, order) -> "MoEResults":
        """A copy with the experts reordered: new expert i is old expert ``order[i]``."""
        from .inference import relabel
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
                ("Starts:", "%d (best: %d)" % (len(self.restarts), self.best_start))] + (
                [("Likelihood:", "joint of (x, y)")] if self.model.gate.joint else [])  # (experts branch)

    def summary(self, alpha: float = 0.05) -> "Summary":
        """A printable summary: fit statistics and one coefficient table per block (with SEs, z, p, CIs)."""
        return Summary(self, alpha)

    def _warn_about_fit(self):
        from .model import ConvergenceWarning, DegenerateFitWarning, MoEWarning
        r = self.restarts
        if not self.converged and self.algorithm != "sem":
            warnings.warn("EM did not converge in %d iterations (relative tolerance %g); increase max_iter"
                          % (self._cfg.max_iter, float(self._ctl.tol)), ConvergenceWarning, stacklevel=3)
        higher = r[(r["loglik"] > self.loglik + 1e-6 * max(1.0, abs(self.loglik))) & r["degenerate"]]
        if len(higher):
            warnings.warn("%d start(s) reached a higher log-likelihood (best %.4f vs %.4f reported) at a degenerate "
                          "solution (an expert fitting a few points with a tiny variance); the best "
                          "non-degenerate fit is reported. Set min_variance to bound variances, or "
                          "prefer_nondegenerate=False to keep it."
                          % (len(higher), higher["loglik"].max(), self.loglik), DegenerateFitWarning, stacklevel=3)
        if bool(r.loc[self.best_start, "degenerate"]):
            warnings.warn("the reported fit is degenerate: an expert carries few effective points or a tiny "
                          "variance (effective points per expert: %s); consider fewer experts or min_variance"
                          % np.round(self.expert_weights, 2).tolist(), DegenerateFitWarning, stacklevel=3)
        wts = self.expert_weights
        small = np.flatnonzero(wts < max(1.0, 1e-3 * self.nobs))
        if small.size:
            warnings.warn("expert(s) %s carry almost no data (effective points %s); they are kept in the model"
                          % ((small + 1).tolist(), np.round(wts[small], 3).tolist()), MoEWarning, stacklevel=3)
        if self.algorithm == "em":  # CEM / SEM end at many nearby points by design: not a uniqueness issue
            self._check_unique()

    def _check_unique(self):
        """Warn when another start reaches the same log-likelihood with a different fitted model."""
        from .model import MoEWarning
        r = self.restarts
        tol = 1e-6 * max(1.0, abs(self.loglik))
        close = r[(np.abs(r["loglik"] - self.loglik) <= tol) & (r["start"] != self.best_start) & ~r["degenerate"]]
        if not len(close) or self._all_params is None:
            return
        mine = np.sort(self.predict(kind="experts"), axis=1)
        for s in close["start"]:
            P = jax.tree_util.tree_map(lambda a: to_device(np.asarray(a)[int(s)]), self._all_params)
            other = np.asarray(self.model.expert.mean(P.expert, self._data.X))[..., : self.design.n]
            other = np.sort(np.moveaxis(other, 0, -1) if other.ndim == 2 else np.transpose(other, (2, 0, 1)), axis=1)
            d, limit, what = self._expert_difference(np.abs(mine - other).max())
            if d > limit:
                warnings.warn("the best log-likelihood is reached by distinct fits (start %d differs in its expert "
                              "%s by %.3g): the maximum is not unique" % (s, what, d), MoEWarning, stacklevel=4)
                return

    def _expert_difference(self, d):
        """(difference, threshold, what) for the largest gap between two fits' expert means."""
        return d / np.sqrt(max(self.info.get("var_y", 1.0), 1e-300)), 1e-3, "means (in sd(y))"


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
    return list(src.columns) if isinstance(src, pd.DataFrame) else []


def _column(data, X, name):
    src = data if data is not None else X
    return src[name].to_numpy()


class Summary:
    """A statsmodels-like text summary; ``str()`` or ``print()`` it, ``.tables`` holds the frames.

    Coefficient tables carry observed-information standard errors, Wald z,
    two-sided p-values and (1 - alpha) Wald intervals (:mod:`moestat.inference`).
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
