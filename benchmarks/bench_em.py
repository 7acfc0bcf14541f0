"""EM kernel speed: ns per point per iteration, JAX vs NumPy (k=3, d=2, float64, one core).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_em.py            # n = 1e4, 1e5, 1e6
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_em.py --sizes 10000

Writes benchmarks/results/bench_em.csv (and .json).  See moestat/bench.py.
"""
import os
import sys

from moestat.bench import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    if "--out" not in args:
        args += ["--out", os.path.join(here, "results", "bench_em.csv")]
    raise SystemExit(main(args))
