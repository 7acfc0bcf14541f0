"""Parameter error vs n for every gate x {linear, ReLU} expert pair (the fuller sweep of tests/test_cross_families.py).

For each pair a known model (``tests/_truths.py``, d = 1, k = 2; shared_routed:
1 shared + 2 routed) is simulated at n = 1e3 ... 1e5, fitted by EM from
random starts, and the Euclidean error of the canonical parameters (minimised
over relabellings) is recorded with the log-likelihood gain over the truth.
Prints a table, writes ``benchmarks/results/expert_families_sweep.csv`` and a
log-log figure ``expert_families_sweep.png`` with the OLS slope per pair
(parametric rate: -0.5).

Usage: OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/expert_families_sweep.py [--reps R] [--gates a,b]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import moestat as ms  # noqa: E402
from _truths import n_experts, param_error, truth  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ns", default="1000,3000,10000,30000,100000")
    ap.add_argument("--gates", default=",".join(ms.gating.available()))
    ap.add_argument("--experts", default="linear,relu")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ns = [int(float(v)) for v in a.ns.split(",")]
    rows = []
    for g in a.gates.split(","):
        for e in a.experts.split(","):
            k = n_experts(g)
            T = truth(g, e, k)
            for n in ns:
                for r in range(a.reps):
                    x, y, _ = T.simulate(n, seed=[2024, n, r])
                    t0 = time.time()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        res = T.model.fit(x, y, n_init=4, seed=r, polish=False)
                    rows.append(dict(gate=g, expert=e, n=n, rep=r, error=param_error(T.model, res.params_tree, T.params),
                                     ll_gain=res.loglik - T.loglik(x, y), n_iter=res.n_iter,
                                     seconds=time.time() - t0))
                    print("%-14s %-7s n=%-7d rep=%d err=%.4f ll_gain=%.3f it=%d %.1fs" % tuple(
                        rows[-1][c] for c in ("gate", "expert", "n", "rep", "error", "ll_gain", "n_iter", "seconds")),
                        flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(os.path.join(a.out, "expert_families_sweep.csv"), index=False)
    summary = []
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    for (g, e), sub in df.groupby(["gate", "expert"]):
        med = sub.groupby("n")["error"].median()
        slope = np.polyfit(np.log(med.index.to_numpy(float)), np.log(med.to_numpy()), 1)[0]
        summary.append(dict(gate=g, expert=e, slope=slope, min_ll_gain=sub["ll_gain"].min(),
                            **{"median_err_n%d" % n: v for n, v in med.items()}))
        ax.loglog(med.index, med.to_numpy(), "o-", label="%s x %s (slope %.2f)" % (g, e, slope))
    ax.set_xlabel("n")
    ax.set_ylabel("median parameter error (canonical, best relabelling)")
    ax.set_title("moestat: gate x expert families, %d replicates per n" % a.reps)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "expert_families_sweep.png"), dpi=120)
    s = pd.DataFrame(summary)
    s.to_csv(os.path.join(a.out, "expert_families_sweep_slopes.csv"), index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(s.to_string(index=False, float_format=lambda v: "%.4g" % v))


if __name__ == "__main__":
    main()
