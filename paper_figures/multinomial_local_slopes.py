"""Regime 2 under the standard vs the modified softmax gate: mean D1 and its local slopes (theory.md §7 rows 21-22).

    PYTHONPATH=$PWD python paper_figures/multinomial_local_slopes.py RUN_REGIME2 RUN_MODIFIED [OUT_STEM]
        [--extra RUN_REGIME2_LARGE RUN_MODIFIED_LARGE ...]

RUN_REGIME2 and RUN_MODIFIED are the folders that ``moestat reproduce
multinomial-regime2`` and ``moestat reproduce multinomial-modified`` wrote
(the same data streams: same seed, grid and replicates).  For the softmax
variant and the M = sigmoid / tanh variants the figure shows the mean (solid)
and median (dashed) D1 over the replicates against n (log-log, with an n^-1/2
guide), the share of fits at the loss cap (a softmax Voronoi loss cannot exceed
the truth's total gate mass, ``moestat.losses``: such a fit has no fitted atom
near some true atom, in gate terms), and the local slopes: OLS slopes of
log(mean D1) and log(median D1) on log n over sliding windows of consecutive
sample sizes (:func:`moestat.montecarlo.analysis.local_slopes`, the window the
harness uses).  "Slower than any polynomial" shows as local slopes that shrink
in magnitude as n grows; the modified gate's should stay steeper.  Writes
OUT_STEM.png, OUT_STEM.csv (the local slopes, ``stat`` mean or median) and
OUT_STEM-per-n.csv (per curve and n: mean, median, fits at the cap), by default
paper_figures/multinomial-regime2-vs-modified[.png|.csv|-per-n.csv].

``--extra`` (repeatable) adds the replicates of two more runs (the same specs with larger sizes
in their grid, e.g. a copy of each spec whose ``grid.full`` is ``{"values":
[285088, 507968]}``: the next two sizes of the geometric grid, same seed and
replicates, so the same data streams) to the curves; the figure marks where the
spec's own full grid ends.

OUT_STEM-bootstrap.csv: for every window of the local slopes of the mean and of
the median (``stat``), and for windows from each n of WIDE_FROM (where the fits
have left the loss cap; the sizes beyond the grid) to the largest n, each curve's slope with a 95 %
bootstrap interval and the interval of its difference from the softmax curve's
slope in the same draws -- whether the curves' slopes differ beyond the
replicate noise.  The curves are fitted to the same data sets, so the
replicates are resampled paired (one draw of replicate numbers per n for all
curves; 4000 draws, seed 0), over the replicates all curves share.
OUT_STEM-flattening.csv: per curve, the slopes between consecutive sizes among
its last three sizes (mean and median) and the change of the last one from the
one before, with a 95 % bootstrap interval (every replicate of the curve,
resampled within each n; seed 1): a positive change is flattening.
"""
from __future__ import annotations

import json
import os
import sys
from itertools import product

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from moestat.montecarlo.analysis import local_slopes, ols_slope, per_n  # noqa: E402
from moestat.montecarlo.protocols import assignment, init_stream  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
#: extra windows to the largest n: from the first size where every curve's fits have left the loss cap
#: (<= 6 of 20 at it), and the sizes beyond the spec's grid alone (the most replicates)
WIDE_FROM = (50397, 285088)
CURVES = [("regime2", "softmax-k3", "softmax gate", "C3", "o"),
          ("modified", "sigmoid-k3", "modified gate, M = sigmoid", "C0", "s"),
          ("modified", "tanh-k3", "modified gate, M = tanh", "C2", "^")]


def _one_extra_atom(k: int, kstar: int) -> None:
    if k != kstar + 1:
        raise ValueError("one extra fitted atom only: k = k* + 1 (got k = %d, k* = %d)" % (k, kstar))


def extra_atom(seed: int, n: int, rep: int, k: int = 3, kstar: int = 2) -> int:
    """The true expert to which the paper protocol's start gives two fitted atoms (k = k* + 1): the assignment
    drawn first from the replicate's start stream (:func:`moestat.montecarlo.protocols.near_truth_start`)."""
    _one_extra_atom(k, kstar)
    s = assignment(k, kstar, np.random.default_rng(init_stream(seed, n, rep)))
    return int(np.argmax(np.bincount(s, minlength=kstar)))


def configuration_shares(k: int = 3, kstar: int = 2) -> np.ndarray:
    """Probability that true expert j gets the extra atom: :func:`~moestat.montecarlo.protocols.assignment`
    is uniform over the maps fitted -> true that cover every true expert and send 0 to 0 (2/3, 1/3 here)."""
    _one_extra_atom(k, kstar)
    counts = np.zeros(kstar)
    for tail in product(range(kstar), repeat=k - 1):
        s = np.array((0,) + tail)
        if np.unique(s).size == kstar:
            counts[np.argmax(np.bincount(s, minlength=kstar))] += 1
    return counts / counts.sum()


SHARES = configuration_shares()


def _stratified_mean(v, s):
    """The mean over the start configurations weighted by their probabilities (post-stratification): the mean
    D1 without the chance variation of how many replicates of a size drew each configuration."""
    return float(sum(p * np.mean(v[s == j]) for j, p in enumerate(SHARES)))


#: statistics over the replicates of one n (values v, start configurations s); those in STRATIFIED are
#: bootstrapped within the configurations
STATS = {"mean": lambda v, s: np.mean(v), "median": lambda v, s: np.median(v),
         "stratified mean": _stratified_mean,
         "mean, extra atom at expert 0": lambda v, s: np.mean(v[s == 0]),
         "mean, extra atom at expert 1": lambda v, s: np.mean(v[s == 1])}
STRATIFIED = ("stratified mean", "mean, extra atom at expert 0", "mean, extra atom at expert 1")


def _draw_within(rng, s):
    """Bootstrap indices of one n's replicates, drawn within each start configuration s."""
    return np.concatenate([np.flatnonzero(s == j)[rng.integers(0, (s == j).sum(), (s == j).sum())]
                           for j in np.unique(s)])


def bootstrap_windows(frames: dict, loss: str = "D1", draws: int = 4000, seed: int = 0,
                      wide_from: tuple = ()) -> pd.DataFrame:
    """Bootstrap intervals of the local slopes of each statistic of :data:`STATS` (and of their differences
    from the first curve's).

    The curves are fitted to the same data sets (same seed, replicate r of size n is one data set, with the
    same start configuration), so the replicates are resampled *paired*: one draw of replicate numbers per n,
    used for every curve; for the statistics of :data:`STRATIFIED` within each start configuration (from a
    second stream, so that the intervals of the mean and median do not depend on them).
    ``wide_from``: also, for each of these n, one window from it to the largest n.
    """
    rng, rng_strata = np.random.default_rng(seed), np.random.default_rng(seed + 1000)
    labels = list(frames)
    ns = np.array(sorted(set.intersection(*(set(frames[lb]["n"]) for lb in labels))), dtype=float)
    piv = {lb: frames[lb].pivot_table(index="rep", columns="n", values="loss_" + loss, aggfunc="first")
           for lb in labels}
    reps = [sorted(set.intersection(*(set(piv[lb][n].dropna().index) for lb in labels))) for n in ns]
    values = {lb: [piv[lb][n].reindex(r).to_numpy(float) for n, r in zip(ns, reps)] for lb in labels}
    conf = frames[labels[0]].pivot_table(index="rep", columns="n", values="extra_atom", aggfunc="first")
    strata = [conf[n].reindex(r).to_numpy(int) for n, r in zip(ns, reps)]
    windows = [(int(w["n_lo"]), int(w["n_hi"])) for _, w in local_slopes(
        pd.DataFrame({"n": ns, "mean": np.ones(ns.size)})).iterrows()]
    for start in wide_from:
        windows.append((int(min(n for n in ns if n >= start)), int(ns[-1])))
    windows = list(dict.fromkeys(windows))          # a wide window may be one of the local ones
    masks = [(ns >= lo) & (ns <= hi) for lo, hi in windows]

    def slopes(means):
        means = np.asarray(means)
        return np.array([ols_slope(np.log(ns[m]), np.log(means[m]))[0] for m in masks])

    obs = {(st, lb): slopes([f(v, c) for v, c in zip(values[lb], strata)]) for st, f in STATS.items()
           for lb in labels}
    boot = {key: np.empty((draws, len(windows))) for key in obs}
    for b in range(draws):
        idx = [rng.integers(0, v.size, v.size) for v in values[labels[0]]]
        idx_strata = [_draw_within(rng_strata, c) for c in strata]
        for st, f in STATS.items():
            ii = idx_strata if st in STRATIFIED else idx
            for lb in labels:
                boot[st, lb][b] = slopes([f(v[i], c[i]) for v, c, i in zip(values[lb], strata, ii)])
    rows = []
    for st in STATS:
        for i, (lo, hi) in enumerate(windows):
            for lb in labels:
                ci = np.percentile(boot[st, lb][:, i], [2.5, 97.5])
                row = {"stat": st, "curve": lb, "n_lo": lo, "n_hi": hi, "sizes": int(masks[i].sum()),
                       "replicates": int(min(len(r) for r, m in zip(reps, masks[i]) if m)),
                       "slope": obs[st, lb][i], "ci_low": ci[0], "ci_high": ci[1]}
                if lb != labels[0]:
                    d = boot[st, lb][:, i] - boot[st, labels[0]][:, i]
                    row.update(diff=obs[st, lb][i] - obs[st, labels[0]][i], diff_low=np.percentile(d, 2.5),
                               diff_high=np.percentile(d, 97.5))
                rows.append(row)
    return pd.DataFrame(rows)


def slope_changes(frames: dict, loss: str = "D1", sizes: int = 3, draws: int = 4000, seed: int = 1) -> pd.DataFrame:
    """Whether a curve flattens at its end: the slopes between consecutive sizes among its last ``sizes``
    sizes (each statistic of :data:`STATS` over the replicates at each n) and the change of the last such
    slope from the one before, with a 95 % bootstrap interval (replicates resampled within each n, all a
    curve has; within each start configuration too for :data:`STRATIFIED`, from a second stream)."""
    rng, rng_strata = np.random.default_rng(seed), np.random.default_rng(seed + 1000)
    rows = []
    for lb, df in frames.items():
        ns = np.array(sorted(df["n"].unique()), dtype=float)[-sizes:]
        vals = [df.loc[df["n"] == n, "loss_" + loss].to_numpy(float) for n in ns]
        conf = [df.loc[df["n"] == n, "extra_atom"].to_numpy(int) for n in ns]
        for st, f in STATS.items():
            def two_size(vs, cs):
                m = np.log([f(v, c) for v, c in zip(vs, cs)])
                return np.diff(m) / np.diff(np.log(ns))
            obs = two_size(vals, conf)
            boot = np.empty((draws, len(ns) - 1))
            for b in range(draws):
                ii = ([_draw_within(rng_strata, c) for c in conf] if st in STRATIFIED
                      else [rng.integers(0, v.size, v.size) for v in vals])
                boot[b] = two_size([v[i] for v, i in zip(vals, ii)], [c[i] for c, i in zip(conf, ii)])
            change = boot[:, -1] - boot[:, -2]
            lo, hi = np.percentile(change, [2.5, 97.5])
            rows.append({"stat": st, "curve": lb, "sizes": " ".join("%d" % n for n in ns),
                         "replicates": " ".join("%d" % v.size for v in vals),
                         "slopes": " ".join("%.3f" % x for x in obs), "last_change": obs[-1] - obs[-2],
                         "change_low": lo, "change_high": hi})
    return pd.DataFrame(rows)


def curves(run_regime2: str, run_modified: str, loss: str = "D1", extra: list | None = None
           ) -> tuple[dict, pd.DataFrame, dict]:
    """{label: per-n summary (with ``at_cap``, fits at the loss cap)}, the local slopes of every curve and
    {label: its replicate rows}.

    ``extra``: pairs (regime-2 run, modified run) whose replicates are added (larger sizes of the same design).
    """
    runs = {"regime2": [run_regime2], "modified": [run_modified]}
    for r2, mod in extra or ():
        runs["regime2"].append(r2)
        runs["modified"].append(mod)
    summaries, local, frames = {}, [], {}
    for run, variant, label, _, _ in CURVES:
        df = pd.concat([pd.read_csv(os.path.join(r, variant, "results.csv")) for r in runs[run]],
                       ignore_index=True)
        name = "%s (%s)" % (loss, variant)
        df = df.rename(columns={"loss_" + name: "loss_" + loss})
        seeds = {json.load(open(os.path.join(r, variant, "run.json")))["spec"]["seed"] for r in runs[run]}
        if len(seeds) != 1:
            raise ValueError("the runs of %s have different seeds %s: not the same data streams" % (variant, seeds))
        seed = seeds.pop()
        df["extra_atom"] = [extra_atom(seed, n, rep) for n, rep in zip(df["n"], df["rep"])]
        frames[label] = df
        s = per_n(df, loss)
        s["stratified_mean"] = [_stratified_mean(df.loc[df["n"] == n, "loss_" + loss].to_numpy(float),
                                                 df.loc[df["n"] == n, "extra_atom"].to_numpy(int)) for n in s["n"]]
        for j in range(SHARES.size):
            g = df[df["extra_atom"] == j].groupby("n")["loss_" + loss]
            s["count_extra%d" % j] = s["n"].map(g.count()).fillna(0).astype(int)
            s["mean_extra%d" % j] = s["n"].map(g.mean())
            s["median_extra%d" % j] = s["n"].map(g.median())
        cap = np.isneginf(df["err_moe.log_scale"]) if "err_moe.log_scale" in df else np.zeros(len(df), bool)
        s["at_cap"] = s["n"].map(df.assign(cap=cap).groupby("n")["cap"].sum()).astype(int)
        summaries[label] = s
        for stat in ("mean", "median", "stratified_mean"):
            ls = local_slopes(s, stat=stat)
            ls.insert(0, "stat", stat.replace("_", " "))
            ls.insert(0, "curve", label)
            local.append(ls)
    return summaries, pd.concat(local, ignore_index=True), frames


def figure(summaries: dict, local: pd.DataFrame, path: str, loss: str = "D1", grid_end: float | None = None
           ) -> None:
    fig, ((ax, cx), (bx, dx)) = plt.subplots(2, 2, figsize=(13, 8.4))
    if grid_end is not None:
        for axis in (ax, cx, bx, dx):
            axis.axvline(grid_end, color="grey", ls=":", lw=1)
    for _, _, label, color, marker in CURVES:
        s = summaries[label]
        ax.loglog(s["n"], s["mean"], marker=marker, color=color, label=label + " (mean)")
        ax.loglog(s["n"], s["median"], marker=marker, color=color, ls="--", mfc="none", label="median")
        cx.semilogx(s["n"], s["at_cap"] / s["count"].clip(lower=1), marker=marker, color=color, label=label)
        for stat, ls_ in (("mean", "-"), ("median", "--"), ("stratified mean", ":")):
            ls = local[(local["curve"] == label) & (local["stat"] == stat)]
            bx.semilogx(ls["n_center"], ls["slope"], marker=marker, color=color, ls=ls_,
                        mfc=None if stat == "mean" else "none", label="%s (%s)" % (label, stat))
        for j, ls_ in enumerate(("-", "--")):
            dx.loglog(s["n"], s["mean_extra%d" % j], marker=marker, color=color, ls=ls_,
                      mfc=None if j == 0 else "none",
                      label="%s, extra atom at expert %d (%.0f %% of starts)" % (label, j, 100 * SHARES[j]))
        dx.loglog(s["n"], s["stratified_mean"], color=color, lw=4, alpha=0.25)
    s0 = next(iter(summaries.values()))
    n = s0["n"].to_numpy(float)
    ref = np.nanmax([s["mean"].iloc[0] for s in summaries.values()]) * (n / n[0]) ** -0.5
    ax.loglog(n, ref, "k:", label="n^-1/2")
    ax.set_xlabel("n")
    ax.set_ylabel("%s over replicates" % loss)
    ax.set_title("regime 2 (expert 1's slopes 0), k = 3 fitted to k* = 2", fontsize=10)
    ax.legend(fontsize=7)
    cx.set_xlabel("n")
    cx.set_ylabel("share of fits at the loss cap")
    cx.set_ylim(-0.03, 1.03)
    cx.set_title("fits with no atom near a true atom (D1 = its cap)", fontsize=10)
    cx.legend(fontsize=7)
    bx.axhline(-0.5, color="k", ls=":", lw=1)
    bx.axhline(0.0, color="grey", lw=0.5)
    bx.set_xlabel("n (geometric centre of the window)")
    bx.set_ylabel("local slope of log %s on log n" % loss)
    bx.set_title("local slopes over sliding windows (solid: mean, dashed: median, dotted: stratified mean)",
                 fontsize=9)
    bx.legend(fontsize=6)
    dx.loglog(n, ref, "k:")
    dx.set_xlabel("n")
    dx.set_ylabel("mean %s" % loss)
    dx.set_title("by start configuration: which true expert the near-truth start gives two atoms\n"
                 "(solid: expert 0, slopes non-zero; dashed: expert 1, slopes 0; wide: stratified mean)",
                 fontsize=9)
    dx.legend(fontsize=6)
    if grid_end is not None:
        cx.annotate("spec's full grid ends", (grid_end, 0.5), xytext=(4, 0), textcoords="offset points",
                    fontsize=7, color="grey", rotation=90, va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> None:
    extra = []
    while "--extra" in argv:
        i = argv.index("--extra")
        pair = tuple(argv[i + 1:i + 3])
        if len(pair) != 2:
            raise SystemExit(__doc__)
        extra.append(pair)
        argv = argv[:i] + argv[i + 3:]
    if len(argv) < 2:
        raise SystemExit(__doc__)
    stem = argv[2] if len(argv) > 2 else os.path.join(HERE, "multinomial-regime2-vs-modified")
    summaries, local, frames = curves(argv[0], argv[1], extra=extra)
    local.to_csv(stem + ".csv", index=False)
    per = pd.concat([s.assign(curve=label) for label, s in summaries.items()], ignore_index=True)
    cols = ["curve", "n", "count", "mean", "median", "at_cap", "stratified_mean"] + [
        "%s_extra%d" % (c, j) for j in range(SHARES.size) for c in ("count", "mean", "median")]
    per[cols].to_csv(stem + "-per-n.csv", index=False)
    grid_end = None
    if extra:
        base = pd.read_csv(os.path.join(argv[0], CURVES[0][1], "results.csv"))
        grid_end = float(base["n"].max())
    figure(summaries, local, stem + ".png", grid_end=grid_end)
    boot = bootstrap_windows(frames, wide_from=tuple(n for n in WIDE_FROM if n < max(per["n"])))
    boot.to_csv(stem + "-bootstrap.csv", index=False)
    flat = slope_changes(frames)
    flat.to_csv(stem + "-flattening.csv", index=False)
    print(per[cols].to_string(index=False))
    print(local.to_string(index=False))
    print(boot.round(3).to_string(index=False))
    print(flat.round(3).to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1:])
