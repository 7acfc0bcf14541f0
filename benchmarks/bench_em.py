"""EM kernel benchmark: ns per point per EM iteration, JAX vs plain NumPy.

Model of ``engineering.md`` §2: softmax-gated Gaussian MoE, k = 3 experts,
d = 2 covariates (+ intercept), float64, one core.  The JAX figure is the
whole compiled EM loop (``em.fit_restarts`` with ``tol = 0`` so that it runs a
fixed number of iterations), timed after compilation and divided by the
number of *real* points (padding is part of the cost).  The NumPy figure is
``tests/references/numpy_em.py`` on the same data from the same start; the two
log-likelihood traces are compared as a correctness check.

Run ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_em.py --sizes 10000 100000 1000000``
(default output ``benchmarks/results/bench_em.csv`` and ``.json``); set ``OPENBLAS_NUM_THREADS=1`` and keep the machine
otherwise idle.  The process pins itself to one CPU (``--all-cores`` to
skip), and the file records the CPU-time figures (min of the repeats; on a shared machine the
one-core CPU time is the one to compare), CPU time / wall time and the load average.  Numbers are
printed and written; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np

K, D = 3, 2
TRUE_GATE = np.array([[0.0, 0.0, 0.0], [0.5, 2.0, -1.0], [-0.5, -1.0, 2.0]])
TRUE_COEF = np.array([[1.0, 2.0, -1.0], [-1.0, -2.0, 1.0], [0.0, 1.0, 1.0]])
TRUE_SIGMA2 = np.array([0.25, 0.25, 0.25])


def simulate(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    Xd = np.column_stack([np.ones(n), X])
    eta = Xd @ TRUE_GATE.T
    p = np.exp(eta - eta.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    z = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    y = (Xd * TRUE_COEF[z]).sum(1) + np.sqrt(TRUE_SIGMA2[z]) * rng.normal(size=n)
    return X, Xd, y


#: timed runs of the compiled loop; the minimum is reported (the least disturbed run on a shared machine)
REPEATS = 5


def start_params():
    """A perturbed start shared by both implementations."""
    return TRUE_GATE + 0.3, TRUE_COEF * 0.8, TRUE_SIGMA2 * 2.0


def time_jax(Xd, y, iters: int):
    import jax
    import jax.numpy as jnp

    import moestat as ms
    from moestat.fitting import em
    from moestat.data.design import make_data

    n = Xd.shape[0]
    model = ms.GaussianMoE(K)
    dat = make_data(Xd, Xd, y, np.ones(n))
    cfg = em.with_intercepts(model.config(max_iter=iters), Xd, Xd, np.ones(n))  # as a fit makes it
    ctl = model.control({"var_y": float(np.var(y))}, tol=-1.0)  # never stop early
    g0, c0, s0 = start_params()
    p0 = em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(g0)[None]),
                      ms.experts.GaussianParams(jnp.asarray(c0)[None], jnp.asarray(s0)[None]))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    keys = jax.random.split(jax.random.PRNGKey(0), 1)
    t0 = time.perf_counter()
    out = jax.block_until_ready(em.fit_restarts(p0, dat, ctl, fixed, keys, cfg))
    first = time.perf_counter() - t0
    best = np.inf
    cpu = np.inf
    for _ in range(REPEATS):
        c0_, t0 = time.process_time(), time.perf_counter()
        out = jax.block_until_ready(em.fit_restarts(p0, dat, ctl, fixed, keys, cfg))
        best = min(best, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0_)
    it = int(out.n_iter[0])
    return {"ns_per_point_iter": best / (n * it) * 1e9, "cpu_ns_per_point_iter": cpu / (n * it) * 1e9,
            "cpu_over_wall": cpu / best,
            "compile_s": first - best, "iterations": it, "padded_n": int(dat.w.shape[0]),
            "trace": np.asarray(out.trace[0])}


def time_numpy(Xd, y, iters: int):
    import _references  # noqa: F401  (tests/ on sys.path)
    from references import numpy_em as ref

    g0, c0, s0 = start_params()
    w = np.ones(Xd.shape[0])
    c0_, t0 = time.process_time(), time.perf_counter()
    *_, trace = ref.fit(g0.copy(), c0.copy(), s0.copy(), Xd, Xd, y, w, iters)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0_
    return {"ns_per_point_iter": dt / (Xd.shape[0] * iters) * 1e9, "cpu_ns_per_point_iter": cpu / (Xd.shape[0] * iters) * 1e9,
            "iterations": iters, "trace": trace}


def usable_cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def one_core() -> int:
    """Pin this process (and the threads XLA starts later) to one CPU; returns the CPUs it may use.

    XLA:CPU runs some operations on a thread pool: without pinning, a "one
    core" figure silently used 1.6 cores (CPU time / wall time in the
    benchmark file of 2026-11-25).
    """
    if not hasattr(os, "sched_setaffinity"):   # macOS / Windows: no affinity API; the file's CPU/wall ratio tells
        return usable_cpus()
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {allowed[0]})
    return 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--iters", type=int, default=50, help="EM iterations timed for JAX")
    ap.add_argument("--numpy-iters", type=int, default=5, help="EM iterations timed for NumPy")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "bench_em.csv"))
    ap.add_argument("--all-cores", action="store_true",
                    help="do not pin the process to one CPU (by default it is, so the figure is one core's)")
    args = ap.parse_args(argv)
    cores = one_core() if not args.all_cores else usable_cpus()
    from threadpoolctl import threadpool_limits

    import jax

    rows = []
    print("machine: %s, %s, %d cores (%d used); jax %s on %s; float64; k=%d, d=%d"
          % (platform.machine(), platform.processor() or platform.platform(), os.cpu_count(), cores,
             jax.__version__, jax.default_backend(), K, D))
    print("%10s %10s %14s %14s %9s %10s %12s %16s" % ("n", "padded", "jax ns/pt/it", "numpy ns/pt/it", "speed-up",
                                                      "compile s", "max |dll|", "CPU ns jax/numpy"))
    with threadpool_limits(1):
        for n in args.sizes:
            _, Xd, y = simulate(n)
            j = time_jax(Xd, y, args.iters)
            m = time_numpy(Xd, y, args.numpy_iters)
            common = min(len(m["trace"]), j["iterations"])
            dll = float(np.max(np.abs(j["trace"][:common] - m["trace"][:common]) / np.abs(m["trace"][:common])))
            row = {"n": n, "padded_n": j["padded_n"], "cores": cores,
                   "jax_ns_per_point_iter": round(j["ns_per_point_iter"], 2),
                   "numpy_ns_per_point_iter": round(m["ns_per_point_iter"], 2),
                   "jax_cpu_ns_per_point_iter": round(j["cpu_ns_per_point_iter"], 2),
                   "numpy_cpu_ns_per_point_iter": round(m["cpu_ns_per_point_iter"], 2),
                   "load_average": os.getloadavg()[0],
                   "speedup": round(m["ns_per_point_iter"] / j["ns_per_point_iter"], 2),
                   "jax_compile_s": round(j["compile_s"], 3), "jax_cpu_over_wall": round(j["cpu_over_wall"], 2),
                   "jax_iterations": j["iterations"], "numpy_iterations": m["iterations"],
                   "max_rel_loglik_diff": dll}
            rows.append(row)
            print("%10d %10d %14.1f %14.1f %9.1f %10.2f %12.2e %7.1f / %6.1f" % (
                n, j["padded_n"], j["ns_per_point_iter"], m["ns_per_point_iter"], row["speedup"], j["compile_s"], dll,
                j["cpu_ns_per_point_iter"], m["cpu_ns_per_point_iter"]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("peak resident memory: %.0f MiB" % peak)
    import csv
    with open(args.out, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as fh:
        json.dump({"rows": rows, "peak_rss_mib": peak, "jax": jax.__version__, "backend": jax.default_backend(),
                   "when": time.strftime("%Y-%m-%d %H:%M:%S")}, fh, indent=1)
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
