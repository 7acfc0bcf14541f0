"""Parameter recovery of every gate family as n grows (the fuller sweep behind tests/test_gates.py).

For each gate case of ``tests/gate_cases.py`` (linear Gaussian experts) and
n in {1e3, 3e3, 1e4, 3e4, 1e5}, simulates R data sets from the true model,
fits with the default starts, and records the aligned Euclidean parameter
error, the fitted minus the true log-likelihood, the iterations and the wall
time.  Prints the mean error per n and the OLS slope of log(mean error) on
log n (parametric: about -0.5), and writes
``benchmarks/results/gate_recovery_sweep.csv`` (rows of cases not run are kept).

    OPENBLAS_NUM_THREADS=1 python benchmarks/gate_recovery_sweep.py [R] [case ...]

Cases: those of ``tests/gate_cases.py`` (default: all of them) and
``activation_free_slopes`` (the activation gate with reference="intercept").
"""
from __future__ import annotations

import csv
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import moestat as ms  # noqa: E402
from gate_cases import GATE_CASES, GateCase, aligned_error, loglik_at, simulate_data, truth  # noqa: E402

NS = (1_000, 3_000, 10_000, 30_000, 100_000)
G = ms.gating
# cases run only when named on the command line
EXTRA_CASES = {
    # the activation gate with all slope rows free: weakly identified (moestat/gating/activation.py)
    "activation_free_slopes": GateCase(G.ActivationSoftmax(reference="intercept"), 2,
                                       G.ActivationParams(coef=np.array([[0.0, -1.0], [0.3, 3.0]]),
                                                          log_temp=np.log(0.5))),
}


def main():
    R = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cases = sys.argv[2:] or list(GATE_CASES)
    rows = []
    for case in cases:
        model, P = truth({**GATE_CASES, **EXTRA_CASES}[case], "linear")
        means = []
        for n in NS:
            errs = []
            for r in range(R):
                seed = 1000 * r + n % 997
                x, y = simulate_data(model, P, n, seed)
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ms.MoEWarning)
                    res = model.fit(x, y, n_init=4, seed=seed)
                wall = time.perf_counter() - t
                err = aligned_error(model, res.params_tree, P)
                gain = res.loglik - loglik_at(model, P, x, y)
                errs.append(err)
                rows.append({"case": case, "n": n, "rep": r, "error": err, "ll_minus_true": gain,
                             "n_iter": res.n_iter, "n_polish": res.n_polish, "wall_s": wall})
            means.append(np.mean(errs))
            print("%-22s n=%6d  mean error %.4f  (min ll - ll_true %+.2f)" % (
                case, n, means[-1], min(rw["ll_minus_true"] for rw in rows if rw["case"] == case and rw["n"] == n)),
                flush=True)
        slope = np.polyfit(np.log(NS), np.log(means), 1)[0]
        print("%-22s slope of log mean error on log n: %.3f" % (case, slope), flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "gate_recovery_sweep.csv")
    if os.path.exists(path):            # keep the other cases' rows from earlier runs
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["case"] not in cases] + rows
    with open(path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print("wrote", path)


if __name__ == "__main__":
    main()
