"""Choosing the number of experts: ``select_k`` fits k = 1, 2, ... and compares AIC / BIC / ICL.

Every k is fitted to the *same* encoded design with the same restart
protocol (``n_init`` starts, best non-degenerate log-likelihood, Newton
polish), as flexmix's ``stepFlexmix`` + ``getModel`` do; every fit is kept.
Criteria are "smaller is better": AIC = -2 l + 2 df, BIC = -2 l + log(n) df,
ICL = BIC + 2 * classification entropy (Biernacki et al. 2000).
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd

CRITERIA = ("bic", "aic", "icl")


def with_k(model, k: int):
    """A copy of an estimator with ``k`` experts (all other settings kept)."""
    from ..data.validation import check_int
    m = copy.copy(model)
    m.n_experts = check_int(k, "k", 1)
    return m


def _check_ks(ks) -> list[int]:
    try:
        ks = [int(k) for k in ks]
    except TypeError:
        raise TypeError("ks must be a sequence of integers, e.g. range(1, 6); got %r" % (ks,)) from None
    if not ks:
        raise ValueError("ks is empty: give at least one number of experts")
    if min(ks) < 1:
        raise ValueError("every k in ks must be >= 1, got %s" % ks)
    if len(set(ks)) != len(ks):
        raise ValueError("ks has repeated values: %s" % ks)
    return sorted(ks)


def select_k(model, X, y=None, gate_X=None, weights=None, *, data=None, ks=range(1, 6), criterion: str = "bic",
             n_init: int = 10, seed: int = 0, **fit_kwargs) -> "SelectionResults":
    """Fit ``model`` with each number of experts in ``ks`` and pick one by an information criterion.

    Parameters
    ----------
    model : GaussianMoE, MultinomialMoE, ... (its n_experts is ignored)
    X, y, gate_X, weights, data : as in ``model.fit``
    ks : iterable of int
    criterion : "bic", "aic" or "icl" (smaller is better)
    n_init, seed, **fit_kwargs : passed to every ``fit``

    Returns
    -------
    SelectionResults
        ``table`` (one row per k), ``fits`` (k -> results), ``best_k``, ``best``.
        A k that cannot be fitted (e.g. too few observations) gets a row with
        its error in ``notes`` instead of stopping the search; warnings raised
        by a fit are collected in ``warnings[k]`` (and counted in the table).

    Examples
    --------
    >>> import moestat as ms
    >>> sel = ms.select_k(ms.GaussianMoE(), "y ~ x", data=ms.datasets.load_sim_moe2(), ks=[1, 2], n_init=2)
    >>> sel.best_k, sel.table["k"].tolist()
    (2, [1, 2])
    """
    if criterion not in CRITERIA:
        raise ValueError("criterion must be one of %s, got %r" % (", ".join(map(repr, CRITERIA)), criterion))
    ks = _check_ks(ks)
    design = model.design(X, y, gate_X, weights, data)
    if fit_kwargs.get("groups") is not None:  # encode the groups once, with the data
        model._attach_groups(design, fit_kwargs.pop("groups"), data, fit_kwargs.get("algorithm", "em"))
    fits, caught, rows = {}, {}, []
    for k in ks:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            try:
                res = with_k(model, k).fit(design, n_init=n_init, seed=seed, **fit_kwargs)
            except ValueError as exc:
                rows.append({"k": k, "notes": str(exc)})
                caught[k] = [str(exc)]
                continue
        fits[k] = res
        caught[k] = [str(w.message) for w in rec]
        rows.append({"k": k, "df": res.df, "loglik": res.loglik, "aic": res.aic, "bic": res.bic, "icl": res.icl,
                     "converged": res.converged, "n_iter": res.n_iter,
                     "min_expert_weight": float(np.min(res.expert_weights)), "warnings": len(rec), "notes": ""})
    if not fits:
        raise ValueError("no k in %s could be fitted: %s" % (ks, "; ".join(c[0] for c in caught.values())))
    return SelectionResults(pd.DataFrame(rows), fits, criterion, caught)


class SelectionResults:
    """Fits for several numbers of experts and the choice by an information criterion.

    Attributes
    ----------
    table : DataFrame (k, df, loglik, aic, bic, icl, converged, n_iter, min_expert_weight, warnings, notes, selected)
    fits : dict k -> results
    criterion : the criterion the choice used
    best_k : int, best : results of the chosen k
    warnings : dict k -> list of warning messages raised while fitting k
    """

    def __init__(self, table: pd.DataFrame, fits: dict, criterion: str, caught: dict):
        self.fits = fits
        self.criterion = criterion
        self.warnings = caught
        crit = table[criterion].to_numpy(dtype=float)
        self.best_k = int(table["k"].to_numpy()[int(np.nanargmin(np.where(np.isfinite(crit), crit, np.nan)))])
        table["selected"] = table["k"] == self.best_k
        self.table = table

    @property
    def best(self):
        return self.fits[self.best_k]

    def choose(self, criterion: str) -> int:
        """The k another criterion would pick among the same fits."""
        if criterion not in CRITERIA:
            raise ValueError("criterion must be one of %s, got %r" % (", ".join(map(repr, CRITERIA)), criterion))
        t = self.table.dropna(subset=[criterion])
        return int(t["k"].to_numpy()[int(np.argmin(t[criterion].to_numpy()))])

    def plot(self, ax=None, criteria=CRITERIA):
        """Criteria against k (matplotlib); the chosen k is marked."""
        import matplotlib.pyplot as plt
        ax = ax if ax is not None else plt.subplots(figsize=(5, 3.5))[1]
        t = self.table.dropna(subset=["loglik"])
        for c in criteria:
            ax.plot(t["k"], t[c], marker="o", label=c.upper())
        ax.axvline(self.best_k, color="0.6", ls="--", lw=1)
        ax.set_xlabel("number of experts k")
        ax.set_ylabel("criterion (smaller is better)")
        ax.legend()
        return ax

    def __repr__(self):
        cols = [c for c in ("k", "df", "loglik", "aic", "bic", "icl", "converged", "warnings", "selected")
                if c in self.table]
        return ("<SelectionResults: %s chooses k=%d>\n%s"
                % (self.criterion.upper(), self.best_k,
                   self.table[cols].to_string(index=False, float_format=lambda v: "%.3f" % v)))
