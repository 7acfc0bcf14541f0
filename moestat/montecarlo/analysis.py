"""Slopes from stored results: OLS, median-based, bootstrap CI, local slopes, failures.

Conventions (``theory.md`` §6.3): natural logs; the slope is the OLS slope of
log(mean over replicates of the loss) on log n, as the published plots do;
the median-based slope replaces the mean by the median (robust to a few
EM failures); the bootstrap CI resamples the replicates within every n
(percentile interval); local slopes are OLS slopes over sliding windows of
consecutive sample sizes (a "slower than any polynomial" rate shows as local
slopes shrinking in magnitude).  The same statistics are computed for any
per-replicate column: the losses (``loss_*``) and the per-parameter errors
(``err_*``, :func:`error_slopes`, with the spec's predicted slopes).

Failures are *reported, never dropped*: a replicate whose EM stopped at
max_iter (not converged) keeps its loss in every average and is counted in
``failures``; a replicate whose loss could not be computed (non-finite) cannot
enter a mean, is counted in ``failures`` and in ``excluded``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def ols_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line y = a + b x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    b = float(np.polyfit(x, y, 1)[0])
    return b, float(y.mean() - b * x.mean())


def per_n(df: pd.DataFrame, loss: str) -> pd.DataFrame:
    """Per sample size: count, mean, sd, median, failures, excluded for ``loss_<loss>``."""
    return column_per_n(df, "loss_" + loss)


def column_per_n(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per sample size: count, mean, sd, median, failures, excluded of any per-replicate column.

    Parameters
    ----------
    df : DataFrame
        One row per replicate with ``n``, ``converged`` and ``column``.
    column : str
        The column to summarise (``loss_D1``, ``err_routed.slope[0]``, ...); a
        missing column counts as all non-finite.

    Returns
    -------
    DataFrame
        One row per n: ``count`` (finite values), ``mean``, ``sd``, ``median``
        of the finite values, ``failures`` (not converged or not finite) and
        ``excluded`` (not finite).

    Examples
    --------
    >>> import pandas as pd
    >>> from moestat.montecarlo.analysis import column_per_n
    >>> df = pd.DataFrame({"n": [10, 10, 20], "converged": [True, False, True], "err_a": [1.0, 3.0, float("nan")]})
    >>> column_per_n(df, "err_a")[["n", "count", "mean", "failures", "excluded"]].to_dict("list")
    {'n': [10, 20], 'count': [2, 0], 'mean': [2.0, nan], 'failures': [1, 1], 'excluded': [0, 1]}
    """
    rows = []
    for n, g in df.groupby("n", sort=True):
        v = g[column].to_numpy(dtype=float) if column in g else np.full(len(g), np.nan)
        ok = np.isfinite(v)
        bad = (~g["converged"].to_numpy(dtype=bool)) | ~ok
        rows.append({"n": int(n), "count": int(ok.sum()), "mean": float(v[ok].mean()) if ok.any() else np.nan,
                     "sd": float(v[ok].std(ddof=1)) if ok.sum() > 1 else np.nan,
                     "median": float(np.median(v[ok])) if ok.any() else np.nan,
                     "failures": int(bad.sum()), "excluded": int((~ok).sum())})
    return pd.DataFrame(rows)


def bootstrap_slopes(df: pd.DataFrame, loss: str, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Slopes of log mean loss on log n over ``n_boot`` resamples of the replicates within each n."""
    return bootstrap_column_slopes(df, "loss_" + loss, n_boot, seed)


def bootstrap_column_slopes(df: pd.DataFrame, column: str, n_boot: int = 1000, seed: int = 0,
                            floor: float = 0.0) -> np.ndarray:
    """Slopes of log mean ``column`` on log n over ``n_boot`` resamples of the replicates within each n.

    Parameters
    ----------
    df : DataFrame
        One row per replicate with ``n`` and ``column``.
    column : str
        The per-replicate quantity (a loss or a per-parameter error).
    n_boot : int
        Resamples.
    seed : int
        Seed of the resampling (``SeedSequence([seed, 17])``).
    floor : float
        Means at or below ``floor`` count as zero: sample sizes whose mean is
        zero are left out (as in the OLS slope), and a resample with a zero mean
        at a kept size has no slope (NaN).

    Returns
    -------
    ndarray, shape (n_boot,)
        Percentiles of these give the CI; NaN throughout when fewer than two
        sizes have a positive mean.

    Examples
    --------
    Resampling replicates that all equal C n^-1/2 changes nothing:

    >>> import numpy as np, pandas as pd
    >>> from moestat.montecarlo.analysis import bootstrap_column_slopes
    >>> df = pd.DataFrame({"n": np.repeat([100, 400, 1600], 3), "e": np.repeat([0.1, 0.05, 0.025], 3)})
    >>> np.round(bootstrap_column_slopes(df, "e", n_boot=4), 12).tolist()
    [-0.5, -0.5, -0.5, -0.5]
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    logn, means = [], []
    for n, g in df.groupby("n", sort=True):
        v = g[column].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0 or not v.mean() > floor:
            continue
        idx = rng.integers(0, v.size, size=(n_boot, v.size))
        means.append(v[idx].mean(1))
        logn.append(np.log(n))
    if len(logn) < 2:
        return np.full(n_boot, np.nan)
    x = np.asarray(logn)
    M = np.stack(means, 1)                                                  # (n_boot, n_sizes)
    Y = np.where(M > floor, np.log(np.maximum(M, 1e-300)), np.nan)
    xc = x - x.mean()
    return (Y - Y.mean(1, keepdims=True)) @ xc / (xc @ xc)


def local_slopes(summary: pd.DataFrame, window: int | None = None, stat: str = "mean") -> pd.DataFrame:
    """OLS slopes over sliding windows of ``window`` consecutive sample sizes."""
    s = summary.dropna(subset=[stat])
    s = s[s[stat] > 0]
    m = len(s)
    if window is None:
        window = max(3, m // 4)
    rows = []
    x, y = np.log(s["n"].to_numpy(float)), np.log(s[stat].to_numpy(float))
    for i in range(0, max(0, m - window + 1)):
        b, _ = ols_slope(x[i:i + window], y[i:i + window])
        rows.append({"n_lo": int(s["n"].iloc[i]), "n_hi": int(s["n"].iloc[i + window - 1]),
                     "n_center": float(np.exp(x[i:i + window].mean())), "slope": b})
    return pd.DataFrame(rows)


def loss_slopes(df: pd.DataFrame, loss: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """Slope, bootstrap CI, median slope, intercept and failure counts of one loss (:func:`column_slopes`)."""
    return column_slopes(df, "loss_" + loss, n_boot, seed)


def column_slopes(df: pd.DataFrame, column: str, n_boot: int = 1000, seed: int = 0, floor: float = 0.0) -> dict:
    """Slope, bootstrap CI, median slope, intercept and failure counts of any per-replicate column.

    Parameters
    ----------
    df : DataFrame
        One row per replicate with ``n``, ``converged`` and ``column``.
    column : str
        ``loss_<name>`` or ``err_<group.block[j]>``.
    n_boot, seed : int
        Bootstrap resamples and their seed (:func:`bootstrap_column_slopes`).
    floor : float
        Means (medians) at or below ``floor`` count as zero and are left out of
        the slope.

    Returns
    -------
    dict
        ``slope`` and ``intercept`` (OLS of log mean on log n), ``ci_low``,
        ``ci_high`` (2.5 % and 97.5 % bootstrap percentiles), ``median_slope``,
        ``n_min``, ``n_max``, ``n_sizes`` (all sizes), ``n_fit`` (sizes in the
        OLS), ``replicates`` (most finite values at one n), ``failures``,
        ``excluded`` and ``summary`` (:func:`column_per_n`).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestat.montecarlo.analysis import column_slopes
    >>> n = np.repeat([100, 400, 1600], 2)
    >>> df = pd.DataFrame({"n": n, "converged": True, "err_a": 2.0 * n ** -0.25 * np.tile([0.9, 1.1], 3)})
    >>> st = column_slopes(df, "err_a", n_boot=200)
    >>> round(st["slope"], 12), st["n_fit"], st["ci_low"] <= -0.25 <= st["ci_high"]
    (-0.25, 3, True)
    """
    s = column_per_n(df, column)
    ok = s[(s["mean"] > floor) & np.isfinite(s["mean"])]
    slope, icpt = ols_slope(np.log(ok["n"]), np.log(ok["mean"]))
    okm = s[(s["median"] > floor) & np.isfinite(s["median"])]
    mslope, _ = ols_slope(np.log(okm["n"]), np.log(okm["median"]))
    boots = bootstrap_column_slopes(df, column, n_boot, seed, floor)
    boots = boots[np.isfinite(boots)]
    lo, hi = (np.quantile(boots, [0.025, 0.975]) if boots.size else (np.nan, np.nan))
    return {"slope": slope, "intercept": icpt, "ci_low": float(lo), "ci_high": float(hi), "median_slope": mslope,
            "n_min": int(s["n"].min()) if len(s) else 0, "n_max": int(s["n"].max()) if len(s) else 0,
            "n_sizes": int(len(s)), "n_fit": int(len(ok)), "replicates": int(s["count"].max()) if len(s) else 0,
            "failures": int(s["failures"].sum()), "excluded": int(s["excluded"].sum()), "summary": s}


#: mean per-parameter errors at or below this are zero: a parameter the loss's normalisation fixes exactly
#: (the one shared weight of k1* = 1, a softmax cell mass absorbed by the optimal translation), not a rate
ZERO_ERROR = 1e-12

PARAM_COLUMNS = ["parameter", "slope", "ci_low", "ci_high", "median_slope", "predicted", "theory_row", "n_sizes",
                 "n_min", "n_max", "replicates", "failures", "excluded", "mean_at_n_max", "typical_cell_size",
                 "cell_size_share"]


def error_slopes(df: pd.DataFrame, rules: list[dict] | None = None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Slopes of the mean per-parameter errors (columns ``err_*``) on log n, with CIs and predictions.

    Parameters
    ----------
    df : DataFrame
        One row per replicate (``Store.frame``): ``n``, ``converged`` and the
        errors ``err_<group>.<block>[j]`` of the spec's first Voronoi loss, with
        the cell sizes ``err_<group>.size[j]``.
    rules : list of dict, optional
        The spec's ``param_rates`` (:mod:`moestat.montecarlo.rates`).
    n_boot, seed : int
        Bootstrap resamples of the replicates within each n, and their seed.

    Returns
    -------
    DataFrame
        One row per error (columns :data:`PARAM_COLUMNS`): ``slope`` (OLS of
        log mean error on log n), ``ci_low``/``ci_high`` (95 % percentile
        bootstrap), ``median_slope``; ``predicted`` and ``theory_row`` from the
        first matching rule (NaN / blank when none); ``n_sizes`` (sizes whose
        mean error is above :data:`ZERO_ERROR`: the slope is NaN with fewer
        than 2), ``n_min``, ``n_max``, ``replicates``, ``failures`` (not
        converged, or no error), ``excluded`` (no error: the true atom's cell
        was empty), ``mean_at_n_max``;
        ``typical_cell_size`` (the most frequent size of the true atom's cell
        over the replicates that have this error) and ``cell_size_share``
        (the share of those replicates with that size).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from moestat.montecarlo.analysis import error_slopes
    >>> n = np.repeat([1000, 4000, 16000], 2)
    >>> df = pd.DataFrame({"n": n, "converged": True, "err_moe.size[0]": 2,
    ...                    "err_moe.slope[0]": n ** -0.25 * np.tile([0.8, 1.2], 3)})
    >>> rules = [{"group": "moe", "blocks": ["slope"], "cell_size": 2, "predicted": -0.25, "theory_row": 5}]
    >>> row = error_slopes(df, rules, n_boot=100).iloc[0].to_dict()
    >>> row["parameter"], round(float(row["slope"]), 12), float(row["predicted"]), int(row["theory_row"])
    ('moe.slope[0]', -0.25, -0.25, 5)
    """
    from .rates import predicted_rate
    rows = []
    for col in [c for c in df.columns if c.startswith("err_") and "size[" not in c and "log_scale" not in c
                and "ridge_scale" not in c]:
        st = column_slopes(df, col, n_boot, seed, floor=ZERO_ERROR)
        s = st["summary"]
        size_col = col.rsplit(".", 1)[0] + ".size" + col[col.rindex("["):] if "[" in col else None
        has = np.isfinite(df[col].to_numpy(dtype=float))           # replicates where the cell is not empty
        sizes = df[size_col].to_numpy(dtype=float)[has] if size_col in df else np.array([])
        sizes = sizes[np.isfinite(sizes)]
        typical, share = np.nan, np.nan
        if sizes.size:
            values, counts = np.unique(sizes, return_counts=True)
            typical, share = float(values[np.argmax(counts)]), float(counts.max() / sizes.size)
        pred, row = predicted_rate(rules, col[4:], typical)
        last = s.dropna(subset=["mean"])
        rows.append({"parameter": col[4:], "slope": st["slope"], "ci_low": st["ci_low"], "ci_high": st["ci_high"],
                     "median_slope": st["median_slope"], "predicted": pred, "theory_row": row,
                     "n_sizes": st["n_fit"], "n_min": st["n_min"], "n_max": st["n_max"],
                     "replicates": st["replicates"], "failures": st["failures"], "excluded": st["excluded"],
                     "mean_at_n_max": float(last["mean"].iloc[-1]) if len(last) else np.nan,
                     "typical_cell_size": typical, "cell_size_share": share})
    out = pd.DataFrame(rows, columns=PARAM_COLUMNS)
    out["theory_row"] = out["theory_row"].astype("Int64")
    return out
