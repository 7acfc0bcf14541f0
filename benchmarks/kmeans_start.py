"""The host k-means of a default start: this checkout's ``starts.py`` against another checkout's, in ONE process.

Times ``kmeans_labels`` (k-means++ seeding and Lloyd on a subsample of 8192
points, then every point to its nearest centre) on standardised features
[x, y] of ``bench_em.py``'s data (k = 3, d = 2), both versions interleaved in
one pinned process, CPU time, minimum and median over repetitions of 10
starts; checks that both give the same labels.  Prints and writes
``results/kmeans_start.json``.

    git archive e17884e moestat | tar -x -C /tmp/kmeans_base
    OPENBLAS_NUM_THREADS=1 python benchmarks/kmeans_start.py /tmp/kmeans_base --n 100000 --cpu 1
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="a checkout (or `git archive` of moestat/) whose starts.py is compared")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    import bench_em as bench
    from moestat.data.design import standardize_columns
    from moestat.fitting import starts as new
    spec = importlib.util.spec_from_file_location(
        "moestat.fitting._base_starts", os.path.join(args.base, "moestat", "fitting", "starts.py"))
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)            # relative imports resolve inside this checkout's moestat.fitting

    _, Xd, y = bench.simulate(args.n)
    w = np.ones(args.n)
    F = standardize_columns(np.column_stack([Xd[:, 1:], y]), w)
    same = all(np.array_equal(old.kmeans_labels(F, w, args.k, np.random.default_rng(s)),
                              new.kmeans_labels(F, w, args.k, np.random.default_rng(s))) for s in range(5))
    times = {"base": [], "this": []}
    for _ in range(args.repeats):
        for name, mod in (("base", old), ("this", new)):
            t = time.process_time()
            for s in range(10):
                mod.kmeans_labels(F, w, args.k, np.random.default_rng(s))
            times[name].append((time.process_time() - t) / 10)
    out = {"n": args.n, "k": args.k, "base": os.path.abspath(args.base), "same_labels_5_seeds": bool(same),
           "load1": os.getloadavg()[0]}
    for name, v in times.items():
        out[name] = {"min_s_per_start": min(v), "median_s_per_start": float(np.median(v))}
        print("%-5s k-means start: min %.4f s, median %.4f s (CPU, 10 starts x %d)"
              % (name, min(v), np.median(v), args.repeats))
    print("same labels (5 seeds):", same, "| load", out["load1"])
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "kmeans_start.json"), "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
