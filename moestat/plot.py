"""Plots of fits and convergence studies (matplotlib).

Every function draws on the Axes given as ``ax`` (a new figure when ``ax`` is
None) and returns that Axes, so plots compose into the user's own figures.
matplotlib is imported by the functions, not by ``import moestat``.

Functions
---------
experts            fitted expert means over a covariate, with the gate probabilities
class_probabilities  fitted class probabilities over a covariate (MultinomialMoE)
responsibilities   posterior responsibilities of the experts over a covariate
loglik_trace       EM log-likelihood paths of the reported fit and of every restart
coefficients       estimates with Wald confidence intervals (``summary_frame``)
gate_regions       the expert with the largest gate probability over two gate covariates
convergence        log-log mean loss against n with the fitted slope and its CI
routing            a fitted router's utilization, or its saturation and change rate along EM

Examples
--------
>>> import matplotlib.pyplot as plt, moestat as ms
>>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
>>> fig, axes = plt.subplots(1, 2, figsize=(10, 4))
>>> ms.plot.experts(res, ax=axes[0]) is axes[0]
True
>>> res.plot("coefficients", ax=axes[1]) is axes[1]
True
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .sampling import gate_probabilities

__all__ = ["class_probabilities", "coefficients", "convergence", "experts", "gate_regions", "loglik_trace",
           "responsibilities", "routing"]

#: the functions that take a fitted results object first (``MoEResults.plot(kind)``)
RESULT_PLOTS = ("experts", "class_probabilities", "responsibilities", "loglik_trace", "coefficients", "gate_regions",
                "routing")


def _axes(ax, figsize=(6.0, 4.0)):
    """``ax``, or the Axes of a new figure when ``ax`` is None."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=figsize)[1]


def _covariate(res, covariate: str | None) -> tuple[np.ndarray, str]:
    """(n,) values of one non-intercept expert-design column of the fitted data, and its name."""
    names = list(res.design.expert_block.names)
    cols = [c for c in names if c != "Intercept"]
    if covariate is None:
        if not cols:
            raise ValueError("the expert design has no covariate to plot against (intercept only)")
        covariate = cols[0]
    if covariate not in cols:
        raise ValueError("covariate must name a column of the expert design (%s), got %r"
                         % (", ".join(map(repr, cols)) or "none", covariate))
    return np.asarray(res.design.X[:, names.index(covariate)], dtype=float), covariate


def _fitted_gate(res) -> np.ndarray:
    """(n, k) gate probabilities at the fitted rows (any model family)."""
    return gate_probabilities(res.model.gate, res.params_tree.gate, res.design.Xg).T


def experts(res, covariate: str | None = None, ax=None, data: bool = True, gate: bool = True):
    """Fitted expert means over one covariate, the data coloured by MAP expert, and the gate.

    Parameters
    ----------
    res : MoEResults
        A fit of a Gaussian mixture of experts (:class:`moestat.GaussianMoE`).
    covariate : str, optional
        Name of the expert-design column on the horizontal axis; default: the
        first column that is not the intercept.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    data : bool
        Scatter the fitted data, each point coloured by its most probable
        expert (largest posterior responsibility).
    gate : bool
        Draw the gate probabilities g_i (dashed, right-hand axis from 0 to 1).

    Returns
    -------
    matplotlib Axes
        The Axes of the data and expert means (the gate's twin Axes shares its x axis).

    Notes
    -----
    Curves are evaluated at the fitted rows sorted by the covariate, so they
    are exact for one covariate and show the fitted values along that
    covariate when there are several.

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
    >>> ax = ms.plot.experts(res)
    >>> len(ax.lines), ax.get_xlabel()
    (2, 'x')
    """
    x, name = _covariate(res, covariate)
    means = np.asarray(res.predict(kind="experts"))
    if means.ndim != 2:
        raise ValueError("experts() draws expert means of a Gaussian MoE; for class labels use "
                         "moestat.plot.class_probabilities")
    ax = _axes(ax)
    order = np.argsort(x, kind="stable")
    k = means.shape[1]
    if data:
        lab = res.responsibilities.argmax(1)
        y = np.asarray(res.design.y, dtype=float)
        for i in range(k):
            m = lab == i
            ax.scatter(x[m], y[m], s=8, alpha=0.45, color="C%d" % i, label="data, MAP expert %d" % (i + 1))
    for i in range(k):
        ax.plot(x[order], means[order, i], color="C%d" % i, lw=2, label="expert %d mean" % (i + 1))
    ax.set_xlabel(name)
    ax.set_ylabel(res.design.y_name)
    if gate:
        g = _fitted_gate(res)
        tw = ax.twinx()
        for i in range(k):
            tw.plot(x[order], g[order, i], color="C%d" % i, lw=1.3, ls="--", label="gate $g_%d$" % (i + 1))
        tw.set_ylim(-0.02, 1.02)
        tw.set_ylabel("gate probability (dashed)")
    ax.legend(fontsize=7.5, loc="best")
    return ax


def class_probabilities(res, covariate: str | None = None, ax=None, data: bool = True):
    """Fitted class probabilities P(y = c | x) over one covariate (MultinomialMoE).

    Parameters
    ----------
    res : MultinomialResults
        A fit of :class:`moestat.MultinomialMoE`.
    covariate : str, optional
        Expert-design column on the horizontal axis; default: the first
        column that is not the intercept.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    data : bool
        Mark each observation at height 1 in its class's colour (a rug of labels).

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-2, 2, 300)
    >>> y = (rng.random(300) < 1 / (1 + np.exp(-3 * x))).astype(int)
    >>> res = ms.MultinomialMoE(1).fit(x, y, n_init=1)
    >>> ax = ms.plot.class_probabilities(res)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['P(y = 0 | x)', 'P(y = 1 | x)']
    """
    x, name = _covariate(res, covariate)
    probs = np.asarray(res.predict(kind="proba"))
    if probs.ndim != 2 or not hasattr(res, "classes"):
        raise ValueError("class_probabilities() needs a MultinomialMoE fit; for Gaussian experts use "
                         "moestat.plot.experts")
    ax = _axes(ax)
    order = np.argsort(x, kind="stable")
    classes = res.classes
    for c in range(probs.shape[1]):
        ax.plot(x[order], probs[order, c], color="C%d" % c, lw=2, label="P(y = %s | x)" % classes[c])
        if data:
            m = np.asarray(res.design.y) == classes[c]
            ax.plot(x[m], np.full(m.sum(), 1.04 + 0.03 * c), "|", color="C%d" % c, ms=6, alpha=0.6)
    ax.set_ylim(-0.02, 1.1 + 0.03 * probs.shape[1])
    ax.set_xlabel(name)
    ax.set_ylabel("class probability")
    ax.legend(fontsize=7.5, loc="center right")
    return ax


def responsibilities(res, covariate: str | None = None, ax=None):
    """Posterior responsibilities tau_i of the fitted data over a covariate, with the gate (prior).

    Parameters
    ----------
    res : MoEResults
        Any fitted mixture of experts.
    covariate : str, optional
        Expert-design column on the horizontal axis; default: the first
        column that is not the intercept.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib Axes
        One scatter of (x_n, tau_in) per expert i (``res.responsibilities``,
        shape (n, k)) and the gate probabilities g_i(x_n) as lines.

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
    >>> ax = ms.plot.responsibilities(res)
    >>> len(ax.collections), [float(v) for v in ax.get_ylim()]
    (2, [-0.02, 1.02])
    """
    x, name = _covariate(res, covariate)
    tau = res.responsibilities
    g = _fitted_gate(res)
    ax = _axes(ax)
    order = np.argsort(x, kind="stable")
    for i in range(tau.shape[1]):
        ax.scatter(x, tau[:, i], s=7, alpha=0.45, color="C%d" % i, label=r"posterior $\tau_{%d}$" % (i + 1))
        ax.plot(x[order], g[order, i], color="C%d" % i, lw=1.5, label="gate $g_%d$ (prior)" % (i + 1))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(name)
    ax.set_ylabel("probability of the expert")
    ax.legend(fontsize=7.5, loc="best")
    return ax


def loglik_trace(res, ax=None, relative: bool = True):
    """EM log-likelihood paths of the reported fit and of every restart, and where each restart ended.

    Parameters
    ----------
    res : MoEResults
        Any fitted mixture of experts.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    relative : bool
        Plot the distance below the reported maximum, ``res.loglik - l``, on a
        log scale (shows the linear or sublinear convergence of EM); otherwise
        the log-likelihood itself.

    Returns
    -------
    matplotlib Axes
        A line for the reported start's path (``res.loglik_trace``, one value
        per EM iteration; ``ax.lines[0]``), one marker per restart at (its
        iterations, its final log-likelihood) from ``res.restarts`` (crosses
        mark degenerate restarts), and one thin grey line per restart for its
        EM path (``res.restart_traces``; the path before the reported fit's
        Newton polish).

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=3)
    >>> ax = ms.plot.loglik_trace(res, relative=False)
    >>> len(ax.lines[0].get_xdata()) == len(res.loglik_trace)
    True
    """
    ax = _axes(ax)
    tr = np.asarray(res.loglik_trace, dtype=float)
    r = res.restarts
    it, ll = r["n_iter"].to_numpy(float), r["loglik"].to_numpy(float)
    degen = r["degenerate"].to_numpy(bool)
    if relative:
        floor = 1e-12 * max(1.0, abs(res.loglik))
        f = lambda v: np.maximum(res.loglik - v, floor)  # noqa: E731
        ax.set_yscale("log")
        ax.set_ylabel("reported log-likelihood minus log-likelihood")
    else:
        f = lambda v: v  # noqa: E731
        ax.set_ylabel("log-likelihood")
    ax.plot(np.arange(1, tr.size + 1), f(tr), color="C0", lw=1.6,
            label="reported fit (start %d)" % res.best_start)
    ok = np.isfinite(ll)
    ax.plot(it[ok & ~degen], f(ll[ok & ~degen]), "o", color="C1", ms=5, mfc="none",
            label="end of each restart (%d)" % len(r))
    if (ok & degen).any():
        ax.plot(it[ok & degen], f(ll[ok & degen]), "x", color="C3", ms=6, label="degenerate restart")
    paths = getattr(res, "restart_traces", None)
    for j, path in enumerate(() if paths is None else np.asarray(paths, dtype=float)):
        path = path[np.isfinite(path)]
        ax.plot(np.arange(1, path.size + 1), f(path), color="0.6", lw=0.7, alpha=0.8, zorder=0,
                label="each restart's EM path" if j == 0 else None)
    ax.set_xlabel("EM iteration")
    ax.legend(fontsize=7.5, loc="best")
    return ax


def coefficients(res, alpha: float = 0.05, ax=None, block: str | None = None):
    """Estimates with (1 - alpha) Wald intervals, one row per parameter (``res.summary_frame``).

    Parameters
    ----------
    res : MoEResults
        Any fitted mixture of experts.
    alpha : float
        1 - coverage of the intervals.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    block : {"expert", "gate"}, optional
        Only that block's parameters; default both.

    Returns
    -------
    matplotlib Axes
        Points at the estimates with horizontal bars from ``ci_low`` to
        ``ci_high``; the rows are labelled "block i: term" from the top down.

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2)
    >>> ax = ms.plot.coefficients(res, block="expert")
    >>> [t.get_text() for t in ax.get_yticklabels()][:2]
    ['expert 1: Intercept', 'expert 1: x']
    """
    if block not in (None, "expert", "gate"):
        raise ValueError("block must be None, 'expert' or 'gate', got %r" % (block,))
    f = res.summary_frame(alpha)
    if block is not None:
        f = f[f["block"] == block]
    ax = _axes(ax, figsize=(6.0, 0.8 + 0.28 * len(f)))
    pos = np.arange(len(f))[::-1]
    est = f["estimate"].to_numpy(float)
    lo, hi = f["ci_low"].to_numpy(float), f["ci_high"].to_numpy(float)
    has = np.isfinite(lo) & np.isfinite(hi)
    ax.errorbar(est[has], pos[has], xerr=[est[has] - lo[has], hi[has] - est[has]], fmt="o", color="C0",
                ms=4, capsize=2, label="%g%% Wald interval" % (100 * (1 - alpha)))
    if (~has).any():
        ax.plot(est[~has], pos[~has], "o", mfc="none", color="C0", ms=4, label="no standard error")
    ax.axvline(0.0, color="0.6", lw=0.8)
    ax.set_yticks(pos)
    ax.set_yticklabels(["%s %d: %s" % (b, e, t) for b, e, t in zip(f["block"], f["expert"], f["term"])],
                       fontsize=8)
    ax.set_xlabel("estimate")
    ax.legend(fontsize=7.5, loc="best")
    return ax


def gate_regions(res, Z: Any = None, ax=None, resolution: int = 150, data: bool = True):
    """Where each expert has the largest gate probability, over two gate covariates.

    Parameters
    ----------
    res : MoEResults
        A fit whose gate has exactly two covariates besides its intercept.
    Z : array (n, 2), optional
        The raw gate covariates of the points to draw; default: the fitted
        gate covariates (needed when the gate transforms its inputs, as the
        modified softmax does).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    resolution : int
        Grid points per axis.
    data : bool
        Scatter the points, coloured by their most probable expert a posteriori.

    Returns
    -------
    matplotlib Axes
        Filled regions of argmax_i g_i(z) on a grid spanning the points, and
        the contour where the two largest gate probabilities are equal.

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> rng = np.random.default_rng(1)
    >>> z = rng.uniform(-1, 1, (400, 2))
    >>> y = np.where(z[:, 0] + z[:, 1] > 0, 2.0, -2.0) + 0.3 * rng.standard_normal(400)
    >>> res = ms.GaussianMoE(2).fit(z, y, n_init=2)
    >>> ax = ms.plot.gate_regions(res)
    >>> bool(np.allclose(ax.get_xlim(), (z[:, 0].min(), z[:, 0].max())))
    True
    """
    gate, blk = res.model.gate, res.design.gate_block
    start = int(blk.intercept)
    names = list(blk.names[start:])
    if len(names) != 2:
        raise ValueError("gate_regions needs exactly two gate covariates besides the intercept, the fit has %d (%s)"
                         % (len(names), ", ".join(names) or "none"))
    if Z is None:
        Z = res.design.Xg[:, start:]
        if gate.transforms_covariates:
            raise ValueError("the %r gate transforms its covariates: pass the raw gate covariates as Z (n, 2)"
                             % gate.name)
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2 or Z.shape[1] != 2 or not np.isfinite(Z).all():
        raise ValueError("Z must be a finite (n, 2) array of gate covariates, got shape %s" % (Z.shape,))
    if int(resolution) < 2:
        raise ValueError("resolution must be at least 2, got %r" % (resolution,))
    ax = _axes(ax, figsize=(5.5, 4.5))
    u = np.linspace(Z[:, 0].min(), Z[:, 0].max(), int(resolution))
    v = np.linspace(Z[:, 1].min(), Z[:, 1].max(), int(resolution))
    U, V = np.meshgrid(u, v)
    grid = np.column_stack([U.ravel(), V.ravel()])
    Xg = np.asarray(gate.transform(grid), dtype=float)
    if start:
        Xg = np.column_stack([np.ones(len(Xg)), Xg])
    g = gate_probabilities(gate, res.params_tree.gate, Xg)                   # (k, m)
    k = g.shape[0]
    top = g.argmax(0).reshape(U.shape)
    srt = np.sort(g, axis=0)
    margin = (srt[-1] - srt[-2]).reshape(U.shape)
    from matplotlib.colors import ListedColormap
    cmap = ListedColormap(["C%d" % i for i in range(k)])
    ax.contourf(U, V, top, levels=np.arange(k + 1) - 0.5, cmap=cmap, alpha=0.25)
    if np.ptp(margin) > 0:
        ax.contour(U, V, margin, levels=[min(0.02, float(margin.max()) / 2)], colors="k", linewidths=0.8)
    if data:
        lab = res.responsibilities.argmax(1) if len(Z) == res.design.n else None
        for i in range(k):
            m = slice(None) if lab is None else lab == i
            ax.scatter(Z[m, 0], Z[m, 1], s=7, color="C%d" % i if lab is not None else "0.2", alpha=0.6,
                       label="MAP expert %d" % (i + 1) if lab is not None else None)
            if lab is None:
                break
    ax.set_xlim(u[0], u[-1])
    ax.set_ylim(v[0], v[-1])
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title("largest gate probability (line: tie)", fontsize=10)
    return ax


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else "%.3f" % v


def convergence(stats: dict, ax=None, loss: str | None = None, predicted: float | None = None,
                published: float | None = None):
    """Log-log mean loss against n, with +-2 SE bars, medians, the fitted slope and its CI.

    Parameters
    ----------
    stats : dict
        Slope statistics of one loss as :func:`moestat.montecarlo.analysis.loss_slopes`
        returns them: ``summary`` (per-n frame with columns n, count, mean, sd,
        median), ``slope``, ``intercept``, ``ci_low``, ``ci_high``,
        ``median_slope``; optional ``loss``, ``predicted``, ``published``,
        ``failures``, ``capped``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    loss, predicted, published : optional
        Override the entries of ``stats`` of the same names.

    Returns
    -------
    matplotlib Axes
        Points: mean loss over replicates; bars: +-2 standard errors of the
        mean (clipped at 1e-3 times the mean); open circles: medians; solid
        line: OLS fit of log mean loss on log n, labelled with its slope and
        95 % bootstrap CI; dotted: the predicted slope through the data's centre.

    Examples
    --------
    >>> import numpy as np, pandas as pd, moestat as ms
    >>> n = np.array([100, 400, 1600])
    >>> s = pd.DataFrame({"n": n, "count": 10, "mean": n ** -0.5, "sd": 0.1 * n ** -0.5, "median": n ** -0.5})
    >>> stats = {"summary": s, "slope": -0.5, "intercept": 0.0, "ci_low": -0.55, "ci_high": -0.45,
    ...          "median_slope": -0.5, "loss": "D1", "predicted": -0.5}
    >>> ax = ms.plot.convergence(stats)
    >>> ax.get_xscale(), ax.get_legend().get_texts()[1].get_text()
    ('log', 'OLS slope -0.500 [-0.550, -0.450]')
    """
    s = stats["summary"]
    loss = stats.get("loss", "") if loss is None else loss
    predicted = stats.get("predicted") if predicted is None else predicted
    published = stats.get("published") if published is None else published
    s = s[np.isfinite(s["mean"]) & (s["mean"] > 0)]
    ax = _axes(ax, figsize=(5.0, 4.2))
    n, mean = s["n"].to_numpy(float), s["mean"].to_numpy(float)
    se = (s["sd"] / np.sqrt(np.maximum(s["count"], 1))).fillna(0.0).to_numpy(float)
    lo = np.maximum(mean - 2 * se, mean * 1e-3)
    ax.errorbar(n, mean, yerr=[mean - lo, 2 * se], fmt="o", ms=3.5, color="C0", ecolor="C0", elinewidth=0.8,
                capsize=1.5, label="mean loss (±2 SE)", zorder=3)
    ax.plot(n, s["median"].to_numpy(float), "o", mfc="none", mec="0.45", ms=3.5,
            label="median (slope %s)" % _fmt(stats.get("median_slope")))
    slope = stats.get("slope", np.nan)
    if len(n) and np.isfinite(slope):
        xx = np.geomspace(n.min(), n.max(), 50)
        ax.plot(xx, np.exp(stats["intercept"]) * xx ** slope, "-", color="C3", lw=1.6,
                label="OLS slope %s [%s, %s]" % (_fmt(slope), _fmt(stats.get("ci_low")), _fmt(stats.get("ci_high"))))
        if predicted is not None:
            c = np.exp(np.mean(np.log(mean)) - predicted * np.mean(np.log(n)))
            ax.plot(xx, c * xx ** predicted, ":", color="k", lw=1.2, label="predicted slope %s" % _fmt(float(predicted)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sample size n")
    ax.set_ylabel("loss %s" % loss)
    ax.set_title("%s%s" % (loss, "" if published is None else "  (published slope %s)" % _fmt(float(published))),
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="lower left")
    notes = []
    if stats.get("failures"):
        notes.append("%d failed fits included" % stats["failures"])
    if stats.get("capped"):
        notes.append("%d replicates at the loss cap" % stats["capped"])
    if notes:
        ax.text(0.99, 0.99, "\n".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=7.5,
                color="C3")
    return ax


def routing(res, ax=None, top_k: int | None = None):
    """A fitted router: its saturation and change rate along EM, or its utilization per expert.

    Parameters
    ----------
    res : MoEResults or moestat.routing.RoutingReport
        A fit (its :meth:`~moestat.MoEResults.routing_report` is computed) or a
        report computed before.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    top_k : int, optional
        K of the routing sets when ``res`` is a fit (default: the router's own).

    Returns
    -------
    matplotlib Axes
        When the EM path was recorded (``fit(..., record_gate=True)``): two
        lines over the EM iterations, the saturation (share of each point's
        top-K set already equal to the final one) and the change rate between
        consecutive iterations (DeepSeekMoE App. H).  Otherwise: one bar per
        routed expert with its top-K share of the points and a marker at its
        mean router probability; the title gives Jain's index of the loads.

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), n_init=2, record_gate=True)
    >>> ax = ms.plot.routing(res)
    >>> [ln.get_label() for ln in ax.lines]
    ['saturation', 'change rate']
    >>> float(ax.lines[0].get_ydata()[-1])
    1.0
    """
    rep = res.routing_report(top_k=top_k) if hasattr(res, "routing_report") else res
    ax = _axes(ax)
    it = rep.iterations
    if it is not None:
        t = it.index.to_numpy()
        ax.plot(t, it["saturation"].to_numpy(float), "-", color="C0", label="saturation")
        ax.plot(t, it["change_rate"].to_numpy(float), "-", color="C3", label="change rate")
        ax.set_xlabel("EM iteration")
        ax.set_ylabel("share of top-%d routing sets" % int(rep.summary["top_k"]))
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8, loc="best")
    else:
        e = rep.experts
        x = np.arange(len(e))
        ax.bar(x, e["topk_share"].to_numpy(float), color="C0", alpha=0.7, label="top-%d share" % int(rep.summary["top_k"]))
        ax.plot(x, e["weight_share"].to_numpy(float), "D", color="C3", label="mean router probability")
        ax.set_xticks(x, ["expert %d" % i for i in e.index])
        ax.set_ylabel("share of the points")
        ax.legend(fontsize=8, loc="best")
    ax.set_title("Jain index of the top-%d loads: %.3f" % (int(rep.summary["top_k"]), rep.summary["jain_topk"]),
                 fontsize=9)
    return ax
