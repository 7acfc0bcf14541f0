"""Slopes from stored results: OLS, median-based, bootstrap CI, local slopes, failures.

Conventions (``theory.md`` §6.3): natural logs; the slope is the OLS slope of
log(mean over replicates of the loss) on log n, as the published plots do;
the median-based slope replaces the mean by the median (robust to a few
EM failures); the bootstrap CI resamples the replicates within every n
(percentile interval); local slopes are OLS slopes over sliding windows of
consecutive sample sizes (a "slower than any polynomial" rate shows as local
slopes shrinking in magnitude).

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
    col = "loss_" + loss
    rows = []
    for n, g in df.groupby("n", sort=True):
        v = g[col].to_numpy(dtype=float) if col in g else np.full(len(g), np.nan)
        ok = np.isfinite(v)
        bad = (~g["converged"].to_numpy(dtype=bool)) | ~ok
        rows.append({"n": int(n), "count": int(ok.sum()), "mean": float(v[ok].mean()) if ok.any() else np.nan,
                     "sd": float(v[ok].std(ddof=1)) if ok.sum() > 1 else np.nan,
                     "median": float(np.median(v[ok])) if ok.any() else np.nan,
                     "failures": int(bad.sum()), "excluded": int((~ok).sum())})
    return pd.DataFrame(rows)


def bootstrap_slopes(df: pd.DataFrame, loss: str, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Slopes of log mean loss on log n over ``n_boot`` resamples of the replicates within each n."""
    col = "loss_" + loss
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    logn, means = [], []
    for n, g in df.groupby("n", sort=True):
        v = g[col].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        idx = rng.integers(0, v.size, size=(n_boot, v.size))
        means.append(v[idx].mean(1))
        logn.append(np.log(n))
    if len(logn) < 2:
        return np.full(n_boot, np.nan)
    x = np.asarray(logn)
    Y = np.log(np.maximum(np.stack(means, 1), 1e-300))                      # (n_boot, n_sizes)
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
    """Slope, bootstrap CI, median slope, intercept and failure counts of one loss."""
    s = per_n(df, loss)
    ok = s[(s["mean"] > 0) & np.isfinite(s["mean"])]
    slope, icpt = ols_slope(np.log(ok["n"]), np.log(ok["mean"]))
    okm = s[(s["median"] > 0) & np.isfinite(s["median"])]
    mslope, _ = ols_slope(np.log(okm["n"]), np.log(okm["median"]))
    boots = bootstrap_slopes(df, loss, n_boot, seed)
    boots = boots[np.isfinite(boots)]
    lo, hi = (np.quantile(boots, [0.025, 0.975]) if boots.size else (np.nan, np.nan))
    return {"slope": slope, "intercept": icpt, "ci_low": float(lo), "ci_high": float(hi), "median_slope": mslope,
            "n_min": int(s["n"].min()) if len(s) else 0, "n_max": int(s["n"].max()) if len(s) else 0,
            "n_sizes": int(len(s)), "replicates": int(s["count"].max()) if len(s) else 0,
            "failures": int(s["failures"].sum()), "excluded": int(s["excluded"].sum()), "summary": s}


def error_slopes(df: pd.DataFrame) -> pd.DataFrame:
    """OLS slopes of the mean per-parameter errors (columns ``err_*``) on log n."""
    rows = []
    for col in [c for c in df.columns if c.startswith("err_") and "size[" not in c and "log_scale" not in c
                and "ridge_scale" not in c]:
        g = df.groupby("n")[col].mean()
        g = g[np.isfinite(g) & (g > 0)]
        slope, _ = ols_slope(np.log(g.index.to_numpy(float)), np.log(g.to_numpy(float)))
        sizes = df.get(col.rsplit(".", 1)[0] + ".size" + col[col.rindex("["):]) if "[" in col else None
        rows.append({"parameter": col[4:], "slope": slope, "n_sizes": int(g.size),
                     "mean_at_n_max": float(g.iloc[-1]) if g.size else np.nan,
                     "typical_cell_size": float(np.median(sizes)) if sizes is not None else np.nan})
    return pd.DataFrame(rows)
