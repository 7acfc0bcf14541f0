"""Where one Monte Carlo replicate's CPU time goes (``moestat reproduce``'s worker, one process, one core).

For each spec (``name`` or ``name:variant``) and size n, a fresh one-core
process (``OPENBLAS_NUM_THREADS=1``) runs :func:`moestat.montecarlo.worker.run_task`
on a warm-up replicate (compiles every program; excluded), then on
``--reps`` timed replicates, one replicate per task as the pool workers do.
XLA runs on one thread, as in the harness's pool workers. The worker's pieces are wrapped with CPU timers (``time.process_time``,
all threads of the process; a wrapped device call waits for its result),
and each piece is reported *exclusive* of the wrapped pieces it calls:

* ``data: simulate``, ``data: design + pad`` -- :func:`moestat.sampling.simulate_data`,
  the designs and :func:`moestat.data.design.make_data` (padding to the bucket);
* ``starts`` -- the protocol's starting values (:func:`moestat.montecarlo.protocols.starts`);
* ``EM program`` -- the compiled starts-to-fits program (:func:`moestat.fitting.pipeline.run`),
  split into ``EM iterations`` (the replicate's iterations times the per-iteration
  cost measured below) and ``EM program fixed`` (the rest: final log-likelihood,
  effective points, set-up inside the program);
* ``transfer + choice`` -- device transfers around the fit, :func:`moestat.fitting.pipeline.finish`;
* ``Voronoi losses``, ``density losses`` (TV / KL quadrature), ``atoms``, ``routing summary``;
* ``row + JSON`` -- canonical parameters, :func:`params_to_json`; ``store write`` -- one
  :meth:`moestat.montecarlo.Store.write` of the task's rows into a scratch SQLite file;
* ``other`` -- the rest of ``run_task`` (Python between the pieces).

The per-iteration EM cost comes from the same program with ``max_iter`` 2 and
12 and a tolerance that never stops (one start): (T12 - T2) / 10.

Results: ``benchmarks/results/mc_replicate_breakdown.{csv,json}`` (``--stem``), one row per
(spec, n, piece) with CPU seconds per replicate, and the load average.

Usage (from the repository root)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/mc_replicate_breakdown.py
    OPENBLAS_NUM_THREADS=1 python benchmarks/mc_replicate_breakdown.py --specs deepseek-thm1 --sizes 1000 --reps 3
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import REPO, benchmark_env, cached_reference_or_exit, machine_info, print_table, python_cmd, run_measured, write_results  # noqa: E402

SPECS = ["deepseek-thm1", "deepseek-thm4", "gaussian-gated-m1:k4", "demystifying-k3"]

#: (label, module, attribute): the pieces timed; a missing attribute (another code version) is skipped
PIECES = [
    ("data: simulate", "moestat.montecarlo.worker", "simulate_data"),
    ("data: design + pad", "moestat.montecarlo.worker", "replicate_data"),
    ("starts", "moestat.montecarlo.protocols", "starts"),
    ("EM program", "moestat.fitting.pipeline", "run"),
    ("transfer + choice", "moestat.montecarlo.worker", "fit_replicate_cpu"),
    ("transfer + choice", "moestat.montecarlo.worker", "fit_replicate"),
    ("routing summary", "moestat.montecarlo.worker", "routing_of"),
    ("atoms", "moestat.montecarlo.worker", "model_atoms"),
    ("Voronoi losses", "moestat.montecarlo.worker", "theory_loss"),
    ("density losses", "moestat.montecarlo.worker", "density_loss"),
    ("density losses", "moestat.montecarlo.worker", "regression_loss"),
    ("losses (other)", "moestat.montecarlo.worker", "compute_losses"),
    ("row + JSON", "moestat.montecarlo.worker", "_row"),
]


class Timers:
    """Exclusive CPU time per label of nested wrapped calls."""

    def __init__(self):
        self.stack, self.total, self.iterations = [], {}, 0

    def wrap(self, label, fn):
        import jax

        @functools.wraps(fn)
        def inner(*a, **kw):
            self.stack.append(0.0)
            t0 = time.process_time()
            try:
                out = fn(*a, **kw)
                if label == "EM program":    # wait for the device; count every start's iterations
                    jax.block_until_ready(out)
                    fits = getattr(out, "fits", out)
                    self.iterations += int(np.sum(np.asarray(fits.n_iter)))
                return out
            finally:
                dt = time.process_time() - t0
                child = self.stack.pop()
                self.total[label] = self.total.get(label, 0.0) + dt - child
                if self.stack:
                    self.stack[-1] += dt
        return inner


def em_iteration_cost(exp, n):
    """CPU seconds of one EM iteration of replicate 0 (one start): (T(12) - T(2)) / 10."""
    import jax
    from moestat._jax import to_device
    from moestat.fitting import em, pipeline
    from moestat.montecarlo import protocols
    from moestat.montecarlo.worker import replicate_data
    x, y, data = replicate_data(exp, n, 0)
    p0 = jax.tree_util.tree_map(lambda a: to_device(np.asarray(a)[:1]), protocols.starts(exp, n, 0, x, y, data))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    ctl = exp.ctl._replace(tol=np.asarray(-1.0))        # never converges: exactly max_iter iterations
    seed = np.asarray(0)
    t = {}
    for m in (2, 12):
        cfg = dataclasses.replace(exp.cfg, max_iter=m)
        jax.block_until_ready(pipeline.run(p0, data, ctl, fixed, seed, cfg))
        best = np.inf
        for _ in range(3):
            c0 = time.process_time()
            jax.block_until_ready(pipeline.run(p0, data, ctl, fixed, seed, cfg))
            best = min(best, time.process_time() - c0)
        t[m] = best
    return max((t[12] - t[2]) / 10.0, 0.0)


def child(name: str, sizes: list, reps: int) -> list:
    """In a fresh process: the breakdown of ``reps`` replicates at each size."""
    import importlib

    from moestat.montecarlo import Store, load_spec
    base, _, variant = name.partition(":")
    spec = load_spec(base)
    if variant:
        spec = next(v for v in spec.variants() if v.variant == variant)
    ref = cached_reference_or_exit(spec, name)
    timers = Timers()
    for label, mod, attr in PIECES:
        m = importlib.import_module(mod)
        if hasattr(m, attr):
            setattr(m, attr, timers.wrap(label, getattr(m, attr)))
    from moestat.montecarlo import worker
    # make_data lives in worker's namespace; its time belongs to "data: design + pad" (the exclusive
    # remainder of replicate_data), so it is not wrapped separately
    out = []
    store_dir = tempfile.mkdtemp(prefix="mc-breakdown-")
    for n in sizes:
        task = lambda r: {"spec": spec.raw, "reference": ref, "n": int(n), "reps": [r]}  # noqa: E731
        worker.run_task(task(1000))                                   # compiles; excluded
        worker.run_task(task(1001))
        exp = worker.experiment_for(spec.raw, ref, int(n))
        per_iter = em_iteration_cost(exp, int(n))
        timers.total.clear()
        timers.iterations = 0
        rows, total, write = [], 0.0, 0.0
        with Store(os.path.join(store_dir, "%s-%d.sqlite" % (name.replace(":", "-"), n))) as st:
            for r in range(reps):
                c0 = time.process_time()
                got = worker.run_task(task(r))
                total += time.process_time() - c0
                c0 = time.process_time()
                st.write("bench", got)
                write += time.process_time() - c0
                rows += got
        iters = float(np.mean([r["n_iter"] for r in rows]))
        starts = float(np.mean([r["n_starts"] for r in rows]))
        all_iters = timers.iterations / reps               # every start's iterations per replicate
        t = {k: v / reps for k, v in timers.total.items()}
        t["store write"] = write / reps
        t["other"] = total / reps - sum(v for k, v in t.items() if k != "store write")
        em_prog = t.pop("EM program", 0.0)
        t["EM iterations"] = min(per_iter * all_iters, em_prog)
        t["EM program fixed"] = em_prog - t["EM iterations"]
        load = os.getloadavg()
        for piece, v in t.items():
            out.append({"spec": name, "n": int(n), "piece": piece, "cpu_s_per_rep": round(v, 5)})
        out.append({"spec": name, "n": int(n), "piece": "TOTAL", "cpu_s_per_rep": round(total / reps + write / reps, 5),
                    "n_iter_mean": iters, "n_starts": starts,
                    "iterations_all_starts": all_iters, "em_s_per_iter": round(per_iter, 6), "reps": reps,
                    "load1": round(load[0], 2)})
        print(json.dumps(out[-1]), flush=True)
    for r in out:
        print(json.dumps(r), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--specs", default=",".join(SPECS))
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--stem", default="mc_replicate_breakdown")
    ap.add_argument("--label", default="", help="a tag stored with every row (e.g. before / after)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sizes = [int(float(v)) for v in args.sizes.split(",") if v]
    if args.child:
        child(args.child, sizes, args.reps)
        return
    rows = []
    for name in [s for s in args.specs.split(",") if s]:
        cmd = python_cmd(os.path.abspath(__file__), "--child", name, "--sizes", args.sizes, "--reps", args.reps)
        # the environment of the harness's pool workers (moestat._parallel.SINGLE_THREAD_ENV): one XLA thread
        res = run_measured(cmd, env=benchmark_env(XLA_FLAGS="--xla_cpu_multi_thread_eigen=false"), cwd=str(REPO),
                           timeout_s=3600)
        if res["returncode"] != 0:
            print(res["stderr"][-3000:], file=sys.stderr)
            raise SystemExit("breakdown of %s failed" % name)
        got = [json.loads(line) for line in res["stdout"].splitlines() if line.startswith("{")]
        rows += [dict(r, label=args.label) for r in got if "piece" in r and r not in rows]
    seen, uniq = set(), []
    for r in rows:
        key = (r["spec"], r["n"], r["piece"], r["label"])
        if key not in seen:
            seen.add(key)
            uniq.append(r)
    meta = {"machine": machine_info(), "command": " ".join(["python", "benchmarks/mc_replicate_breakdown.py"]
                                                          + (argv or sys.argv[1:]))}
    write_results(uniq, args.stem, meta)
    pieces = list(dict.fromkeys(r["piece"] for r in uniq))
    cols = list(dict.fromkeys((r["spec"], r["n"]) for r in uniq))
    table = [[p] + [str(next((r["cpu_s_per_rep"] for r in uniq if (r["spec"], r["n"]) == c and r["piece"] == p), ""))
                    for c in cols] for p in pieces]
    print_table(["piece"] + ["%s n=%d" % c for c in cols], table)


if __name__ == "__main__":
    main()
