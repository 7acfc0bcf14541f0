"""Figures: log-log mean loss against n with error bars and the fitted line, one panel per loss."""
from __future__ import annotations


def slope_figure(results: list[dict], title: str, subtitle: str, path: str, dpi: int = 130) -> str:
    """Save one figure with a panel per loss, each drawn by :func:`moestat.plot.convergence`.

    ``results``: dicts with ``loss``, ``summary`` (per-n table from
    :func:`moestat.montecarlo.analysis.per_n`), ``slope``, ``intercept``,
    ``ci_low``, ``ci_high``, ``median_slope``, ``predicted``, ``published``
    (the statistics of :func:`moestat.montecarlo.analysis.loss_slopes`).
    Returns ``path``.
    """
    import textwrap

    from matplotlib.figure import Figure   # no pyplot: the caller's backend and figures are left alone

    from .. import plot

    m = len(results)
    width = max(4.6 * m, 7.0)
    fig = Figure(figsize=(width, 4.2))
    axes = fig.subplots(1, m, squeeze=False)
    for ax, r in zip(axes[0], results):
        plot.convergence(r, ax=ax)
    wrap = int(width * 11.5)  # characters per line at fontsize 10
    fig.suptitle("\n".join(textwrap.wrap(title, wrap) + textwrap.wrap(subtitle, wrap)), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path
