"""Top-K gate: what the re-routing moves (``TopK.observed_step``) buy.

On data simulated from the k = 3, K = 2 case of ``tests/gate_cases.py``,
fits with the default 10 starts (no Newton polish, to isolate EM) with the
re-routing search on and off, and reports the best log-likelihood relative to
EM started at the true parameters, and the wall time.  Writes
``benchmarks/results/bench_topk_search.csv``.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_topk_search.py
"""
from __future__ import annotations

import csv
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import moestat as ms  # noqa: E402
from gate_cases import GATE_CASES, simulate_data, truth  # noqa: E402


def main():
    rows = []
    base_model, P = truth(GATE_CASES["topk"], "linear")
    for n in (2_000, 30_000):
        for seed in range(3):
            x, y = simulate_data(base_model, P, n, 500 + seed)
            for search in (True, False):
                model = ms.GaussianMoE(3, gating=ms.gating.TopK(k=2, search=search))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ms.MoEWarning)
                    ref = model.fit(x, y, init=P, polish=False)
                    t = time.perf_counter()
                    res = model.fit(x, y, n_init=10, seed=seed, polish=False)
                    wall = time.perf_counter() - t
                row = {"n": n, "seed": seed, "search": search, "best_minus_truth_start": res.loglik - ref.loglik,
                       "median_minus_truth_start": float(res.restarts.loglik.median() - ref.loglik),
                       "wall_s": wall}
                rows.append(row)
                print("n=%6d seed=%d search=%-5s best - EM-from-truth %+9.2f  median %+9.2f  %.1fs"
                      % (n, seed, search, row["best_minus_truth_start"], row["median_minus_truth_start"], wall),
                      flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "bench_topk_search.csv")
    with open(path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print("wrote", path)


if __name__ == "__main__":
    main()
