"""One fresh-process moestat fit, for the end-to-end benchmarks; prints one JSON line.

The parent (``flexmix_compare.py``, ``scale.py``) starts this script as a
whole process pinned to one core and measures wall time and peak memory from
outside; the script reports what only the inside can see: the time of
``import moestat``, of reading or drawing the data, and of ``fit``, the
fit's iterations and log-likelihood, and the resident memory just before the
fit and at its peak during the fit (the peak is reset after the data are
ready, where Linux allows).

Usage::

    python benchmarks/_fit_once.py --csv DATA.csv --k 3            # columns y, x1..xd
    python benchmarks/_fit_once.py --simulate 1000000 8 10 --k 8 --max-iter 20

The fit is ``ms.GaussianMoE(k).fit(X, y, n_init=..., tol=..., max_iter=...)``
with every other option at its default (softmax gate on the same covariates,
k-means starts, Newton polish).
"""
from __future__ import annotations

import argparse
import json
import resource
import time

t_start = time.perf_counter()
import moestat as ms  # noqa: E402  (timed)

t_import = time.perf_counter() - t_start

from _bench_common import cell_seed, reset_peak_rss, rss_now_and_peak, simulate_moe  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", help="data file with columns y, x1..xd")
    src.add_argument("--simulate", nargs=3, type=int, metavar=("N", "K", "D"),
                     help="draw the data here (_bench_common.simulate_moe, seed cell_seed(N, K, D))")
    ap.add_argument("--k", type=int, required=True, help="experts fitted")
    ap.add_argument("--n-init", type=int, default=10)
    ap.add_argument("--max-iter", type=int, default=None, help="default: the fit's own default")
    ap.add_argument("--tol", type=float, default=None, help="default: the fit's own default")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    if args.csv:
        import numpy as np

        data = np.loadtxt(args.csv, delimiter=",", skiprows=1, ndmin=2)   # correctly rounded, like R's read.csv
        y, X = data[:, 0], data[:, 1:]
    else:
        n, k, d = args.simulate
        X, y, _ = simulate_moe(n, k, d, cell_seed(n, k, d))
    t_data = time.perf_counter() - t0

    options = {"n_init": args.n_init}
    if args.max_iter is not None:
        options["max_iter"] = args.max_iter
    if args.tol is not None:
        options["tol"] = args.tol
    rss_before, _ = rss_now_and_peak()
    reset = reset_peak_rss()      # so that the peak below is the fit's, not the data generation's
    t0 = time.perf_counter()
    res = ms.GaussianMoE(args.k).fit(X, y, **options)
    t_fit = time.perf_counter() - t0
    _, fit_peak = rss_now_and_peak()
    out = {"import_s": t_import, "data_s": t_data, "fit_s": t_fit, "n_iter": int(res.n_iter),
           "loglik": float(res.loglik), "converged": bool(res.converged), "n": int(X.shape[0]),
           "maxrss_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "rss_before_fit_mib": rss_before, "fit_peak_rss_mib": fit_peak if reset else None}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
