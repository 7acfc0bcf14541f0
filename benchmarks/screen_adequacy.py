"""Short EM before full EM (``fit(finalists=...)``) against every start run to the tolerance (``finalists=None``).

For each data set the default fit (10 starts, seed 0) runs with ``finalists=None`` (every start's EM to
``tol = 1e-8``) and with the short-EM strategy for several numbers of finalists and screening tolerances
(``moestat.fitting.shortem.SCREEN_TOL``); each fit records its final log-likelihood, the EM iterations of all
its starts together, its CPU time (one thread, same process, after a warm-up fit of the same shapes) and
whether it raised a RestartWarning.

Data sets:

* ``sim``: the benchmark law of ``_bench_common.simulate_moe`` (softmax-gated Gaussian MoE, K experts on d
  covariates), fitted with the true K, for n in ``--n``, K in ``--K``, d in ``--d`` and seeds ``--seeds``;
* ``flat``: 200 points of ONE linear Gaussian expert fitted with k = 2 and 3 (``restart_adequacy.py``'s
  flat, multimodal likelihood), in eight row orders;
* standard data: ``sim_moe2`` (the shared reference data, k = 2), flexmix's NPreg (``yn ~ x``, k = 2, 3),
  iris (scikit-learn's copy: petal width ~ petal length and sepal length ~ petal length, k = 2, 3) and,
  when R is installed, faithful (eruptions ~ waiting, k = 2, 3).

Usage (repository root)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/screen_adequacy.py            # -> results/screen_adequacy.csv
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moestat as ms  # noqa: E402
from moestat.fitting import shortem  # noqa: E402
from _bench_common import RESULTS, simulate_moe  # noqa: E402

#: (finalists, screening tolerance); (None, None) is every start run to tol
VARIANTS = [(None, None), (1, 1e-6), (2, 1e-6), (3, 1e-6), (1, 1e-5), (2, 1e-5), (2, 1e-4)]


def datasets(args):
    """(design, name, k, x, y) for every data set of the sweep."""
    for n in args.n:
        for K in args.K:
            for d in args.d:
                for s in range(args.seeds):
                    X, y, _ = simulate_moe(n, K, d, (12, n, K, d, s))
                    yield "sim", "n=%d K=%d d=%d seed=%d" % (n, K, d, s), K, X, y
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = 1 + 2 * x + rng.normal(size=200)
    for k in (2, 3):
        for order in range(8):
            perm = np.random.default_rng(order).permutation(200) if order else np.arange(200)
            yield "flat", "k=%d order=%d" % (k, order), k, x[perm], y[perm]
    df = ms.datasets.load_sim_moe2()
    yield "standard", "sim_moe2", 2, df[["x"]].to_numpy(), df["y"].to_numpy()
    npreg = ms.datasets.load_npreg()
    for k in (2, 3):
        yield "standard", "NPreg yn~x", k, npreg[["x"]].to_numpy(), npreg["yn"].to_numpy()
    from sklearn.datasets import load_iris
    iris = load_iris().data   # sepal length, sepal width, petal length, petal width
    for k in (2, 3):
        yield "standard", "iris petal.width~petal.length", k, iris[:, [2]], iris[:, 3]
        yield "standard", "iris sepal.length~petal.length", k, iris[:, [2]], iris[:, 0]
    if shutil.which("Rscript"):
        out = subprocess.run(["Rscript", "-e", "write.csv(faithful, stdout(), row.names = FALSE)"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            fa = pd.read_csv(io.StringIO(out.stdout))
            for k in (2, 3):
                yield "standard", "faithful eruptions~waiting", k, fa[["waiting"]].to_numpy(), fa["eruptions"].to_numpy()


def fit(k, X, y, finalists, screen_tol):
    if screen_tol is not None:
        shortem.SCREEN_TOL = screen_tol
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.process_time()
        res = ms.GaussianMoE(k).fit(X, y, finalists=finalists)
        cpu = time.process_time() - t
    return {"loglik": res.loglik, "cpu_s": cpu, "em_iter_all": int(res.restarts["n_iter"].sum()),
            "n_polish": res.n_polish, "n_best_starts": res.n_best_starts,
            "n_finalists": int(res.restarts["finalist"].sum()), "degenerate": bool(res.restarts.loc[res.best_start, "degenerate"]),
            "restart_warning": any(issubclass(w.category, ms.RestartWarning) for w in caught)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--K", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--d", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=None,
                    help="FINALISTS:SCREEN_TOL pairs, e.g. 2:1e-6 (default: %s)" % " ".join(
                        "%s:%s" % v for v in VARIANTS[1:]))
    ap.add_argument("--only", choices=["sim", "flat", "standard"], nargs="+", default=None)
    ap.add_argument("--out", default="screen_adequacy")
    args = ap.parse_args(argv)
    default_tol = shortem.SCREEN_TOL
    variants = VARIANTS if args.variants is None else [(None, None)] + [
        (int(v.split(":")[0]), float(v.split(":")[1])) for v in args.variants]
    rows = []
    path = RESULTS / (args.out + ".csv")
    for design, name, k, X, y in datasets(args):
        if args.only and design not in args.only:
            continue
        fit(k, X, y, 1, default_tol)     # warm-up: compile this shape's programs
        fit(k, X, y, None, None)
        for finalists, tol in variants:
            r = fit(k, X, y, finalists, tol)
            rows.append({"design": design, "data": name, "n": len(y), "k": k, "finalists": finalists,
                         "screen_tol": tol, **r, "load1": os.getloadavg()[0]})
        shortem.SCREEN_TOL = default_tol
        ref = rows[-len(variants)]["loglik"]
        print(name, k, " ".join("%s/%s: %+.2e %.2fs" % (r["finalists"], r["screen_tol"], r["loglik"] - ref, r["cpu_s"])
                                for r in rows[-len(variants):]), flush=True)
        pd.DataFrame(rows).to_csv(path, index=False, float_format="%.10g")
    summarize(pd.DataFrame(rows))


def summarize(df: pd.DataFrame):
    """Per variant: how often the final log-likelihood is equal to / above / below the all-starts fit's, and cost."""
    base = df[df["finalists"].isna()].set_index(["design", "data", "k"])
    out = []
    for (f, tol), g in df[df["finalists"].notna()].groupby(["finalists", "screen_tol"]):
        g = g.set_index(["design", "data", "k"])
        diff = g["loglik"] - base.loc[g.index, "loglik"]
        eq = diff.abs() <= 1e-6 * np.maximum(1.0, base.loc[g.index, "loglik"].abs())
        out.append({"finalists": int(f), "screen_tol": tol, "data sets": len(g), "equal": int(eq.sum()),
                    "higher": int(((diff > 0) & ~eq).sum()), "lower": int(((diff < 0) & ~eq).sum()),
                    "largest shortfall": float(-diff.min()) if (diff < 0).any() else 0.0,
                    "largest gain": float(diff.max()),
                    "CPU ratio (all / this), median": float(np.median(base.loc[g.index, "cpu_s"] / g["cpu_s"])),
                    "EM iterations ratio, median": float(np.median(base.loc[g.index, "em_iter_all"] / g["em_iter_all"])),
                    "RestartWarning (this / all)": "%d / %d" % (g["restart_warning"].sum(),
                                                                 base.loc[g.index, "restart_warning"].sum())})
    print(pd.DataFrame(out).to_string(index=False))
    return pd.DataFrame(out)


if __name__ == "__main__":
    main()
