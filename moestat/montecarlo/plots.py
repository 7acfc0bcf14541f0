"""Figures: log-log mean loss against n with error bars and the fitted line, one panel per loss."""
from __future__ import annotations

import numpy as np


def _fmt(v):
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else "%.3f" % v


def slope_figure(results: list[dict], title: str, subtitle: str, path: str, dpi: int = 130) -> str:
    """Save one figure with a panel per loss.

    ``results``: dicts with ``loss``, ``summary`` (per-n table from
    :func:`moestat.montecarlo.analysis.per_n`), ``slope``, ``intercept``,
    ``ci_low``, ``ci_high``, ``median_slope``, ``predicted``, ``published``.
    Points: mean loss over replicates; bars: +-2 standard errors of the mean
    (clipped at the smallest positive value); open circles: medians; solid
    line: OLS fit of log mean loss on log n, labelled with its slope and 95 %
    bootstrap CI; dotted: the predicted slope through the data's centre.
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    import textwrap

    m = len(results)
    width = max(4.6 * m, 7.0)
    fig, axes = plt.subplots(1, m, figsize=(width, 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        s = r["summary"]
        s = s[np.isfinite(s["mean"]) & (s["mean"] > 0)]
        n, mean = s["n"].to_numpy(float), s["mean"].to_numpy(float)
        se = (s["sd"] / np.sqrt(np.maximum(s["count"], 1))).fillna(0.0).to_numpy(float)
        lo = np.maximum(mean - 2 * se, mean * 1e-3)
        ax.errorbar(n, mean, yerr=[mean - lo, 2 * se], fmt="o", ms=3.5, color="C0", ecolor="C0", elinewidth=0.8,
                    capsize=1.5, label="mean loss (±2 SE)", zorder=3)
        med = s["median"].to_numpy(float)
        ax.plot(n, med, "o", mfc="none", mec="0.45", ms=3.5, label="median (slope %s)" % _fmt(r["median_slope"]))
        if np.isfinite(r["slope"]):
            xx = np.geomspace(n.min(), n.max(), 50)
            ax.plot(xx, np.exp(r["intercept"]) * xx ** r["slope"], "-", color="C3", lw=1.6,
                    label="OLS slope %s [%s, %s]" % (_fmt(r["slope"]), _fmt(r["ci_low"]), _fmt(r["ci_high"])))
            if r.get("predicted") is not None:
                c = np.exp(np.mean(np.log(mean)) - r["predicted"] * np.mean(np.log(n)))
                ax.plot(xx, c * xx ** r["predicted"], ":", color="k", lw=1.2,
                        label="predicted slope %s" % _fmt(float(r["predicted"])))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sample size n")
        ax.set_ylabel("loss %s" % r["loss"])
        pub = r.get("published")
        ax.set_title("%s%s" % (r["loss"], "" if pub is None else "  (published slope %s)" % _fmt(float(pub))),
                     fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7.5, loc="lower left")
        notes = []
        if r.get("failures"):
            notes.append("%d failed fits included" % r["failures"])
        if r.get("capped"):
            notes.append("%d replicates at the loss cap" % r["capped"])
        if notes:
            ax.text(0.99, 0.99, "\n".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=7.5,
                    color="C3")
    wrap = int(width * 11.5)  # characters per line at fontsize 10
    fig.suptitle("\n".join(textwrap.wrap(title, wrap) + textwrap.wrap(subtitle, wrap)), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
