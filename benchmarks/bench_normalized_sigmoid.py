"""Normalized-sigmoid gate: closed-form per-point curvature vs ``jax.vmap(jax.hessian)``.

Times the gate's Newton statistics (gradient and negative Hessian in the
coefficients, :func:`moestat.gating.normalized_sigmoid.ns_newton_stats`) with
both per-point curvature routes, jitted, on float64 data, and checks that they
agree.  Prints a table and writes ``benchmarks/results/bench_normalized_sigmoid.csv``.
Then times the gate's log-sigmoid (:func:`moestat.gating.normalized_sigmoid.log_sigmoid`:
one exponential and one logarithm) against ``-logaddexp(0, -z)`` per entry
(``benchmarks/results/bench_log_sigmoid.csv``).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_normalized_sigmoid.py
"""
from __future__ import annotations

import csv
import os
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import moestat  # noqa: F401  (float64)
from moestat.gating.normalized_sigmoid import log_sigmoid, ns_newton_stats


@partial(jax.jit, static_argnames=("curvature",))
def stats(coef, tau, w, Xg, curvature):
    return ns_newton_stats(coef, tau, w, Xg, curvature)


def best_time(fn, reps=7):
    out = fn()
    jax.block_until_ready(out)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    rows = []
    rng = np.random.default_rng(0)
    for k, pg in ((3, 2), (6, 4)):
        for N in (10_000, 100_000):
            coef = jnp.asarray(rng.normal(size=(k, pg)))
            Xg = jnp.asarray(np.vstack([np.ones(N), rng.normal(size=(pg - 1, N))]))
            tau = jax.nn.softmax(jnp.asarray(rng.normal(size=(k, N))), axis=0)
            w = jnp.ones(N)
            res = {}
            for curv in ("closed", "autodiff"):
                t, out = best_time(lambda: stats(coef, tau, w, Xg, curv))
                res[curv] = (t, out)
            diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                       for a, b in zip(res["closed"][1], res["autodiff"][1]))
            row = {"k": k, "pg": pg, "N": N,
                   "closed_ns_per_point": 1e9 * res["closed"][0] / N,
                   "autodiff_ns_per_point": 1e9 * res["autodiff"][0] / N,
                   "speedup": res["autodiff"][0] / res["closed"][0], "max_rel_diff": diff}
            rows.append(row)
            print("k=%d pg=%d N=%6d  closed %7.1f ns/pt  vmap(hessian) %7.1f ns/pt  speed-up %.2fx  rel.diff %.1e"
                  % (k, pg, N, row["closed_ns_per_point"], row["autodiff_ns_per_point"], row["speedup"], diff))
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "bench_normalized_sigmoid.csv")
    with open(path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print("wrote", path, "on", jax.default_backend())
    log_sigmoid_speed(rng)


def log_sigmoid_speed(rng):
    z = jnp.asarray(rng.normal(0.0, 5.0, size=(3, 131072)))
    ways = {"moestat log_sigmoid": jax.jit(log_sigmoid), "-logaddexp(0, -z)": jax.jit(lambda v: -jnp.logaddexp(0.0, -v)),
            "jax.nn.log_sigmoid": jax.jit(jax.nn.log_sigmoid)}
    rows = []
    for name, fn in ways.items():
        t, out = best_time(lambda: fn(z), reps=15)
        rows.append({"way": name, "ns_per_entry": 1e9 * t / z.size,
                     "max_abs_diff_vs_logaddexp": float(jnp.max(jnp.abs(out + jnp.logaddexp(0.0, -z))))})
        print("%-22s %6.2f ns per entry  max |diff| %.1e" % (name, rows[-1]["ns_per_entry"],
                                                           rows[-1]["max_abs_diff_vs_logaddexp"]))
    path = os.path.join(os.path.dirname(__file__), "results", "bench_log_sigmoid.csv")
    with open(path, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print("wrote", path)


if __name__ == "__main__":
    main()
