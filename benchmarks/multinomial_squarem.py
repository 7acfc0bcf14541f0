"""Plain EM against SQUAREM-accelerated EM on over-fitted multinomial-logistic replicates (ICML'24 regime 2).

The over-fitted multinomial specs (``multinomial-regime2``, ``multinomial-modified``) run near-truth starts
to a relative tolerance of 1e-8, and their EM crawls (100-3000 iterations per fit, paper_figures/notes.md).
For each replicate of ``--spec`` at size ``--n``, the same starts (the spec's paper protocol) are run
through the harness's :func:`moestat.montecarlo.worker.fit_replicate_cpu` once with plain EM and once with
SQUAREM (``EMConfig.accelerate``): CPU seconds (data and starts included), EM steps, convergence and the final log-likelihood of the chosen
start.  One process pinned to one core; a warm-up replicate compiles both programs first.

Results: ``benchmarks/results/multinomial_squarem.{csv,json}``.

Usage (from the repository root)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/multinomial_squarem.py --spec multinomial-regime2 --n 40000 --reps 1,2,3,4,5
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import machine_info, print_table, write_results  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="multinomial-regime2")
    ap.add_argument("--n", type=int, default=40000)
    ap.add_argument("--reps", default="1,2,3,4,5", help="comma-separated replicate indices")
    ap.add_argument("--stem", default="multinomial_squarem")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from moestat.montecarlo import load_spec, worker

    rows = []
    for spec in load_spec(args.spec).variants():
        exp = worker.experiment_for(spec.raw, n=args.n)

        def fit(rep, accelerate):
            # the harness's own replicate fit (data, the protocol's starts, EM from each, best start), EM switched
            run = dataclasses.replace(exp, cfg=dataclasses.replace(exp.cfg, accelerate=accelerate))
            c0 = time.process_time()
            est = worker.fit_replicate_cpu(run, args.n, rep)
            return time.process_time() - c0, est.fit

        fit(0, False)
        fit(0, True)                                         # compile both programs
        for rep in [int(r) for r in args.reps.split(",")]:
            for accelerate in (False, True):
                cpu, f = fit(rep, accelerate)
                rows.append({"spec": args.spec, "variant": spec.variant, "n": args.n, "rep": rep,
                             "em": "squarem" if accelerate else "plain", "cpu_s": round(cpu, 3),
                             "em_steps": int(f.n_iter), "converged": bool(f.converged),
                             "loglik": float(f.loglik), "max_iter": exp.cfg.max_iter,
                             "load1": round(os.getloadavg()[0], 2)})
                print(rows[-1])
    plain = {(r["variant"], r["rep"]): r for r in rows if r["em"] == "plain"}
    table = []
    for r in rows:
        if r["em"] == "squarem":
            p = plain[(r["variant"], r["rep"])]
            table.append([str(r["variant"]), str(r["rep"]), "%.1f / %d" % (p["cpu_s"], p["em_steps"]),
                          "%.1f / %d" % (r["cpu_s"], r["em_steps"]), "%+.4f" % (r["loglik"] - p["loglik"])])
    print_table(["variant", "rep", "plain CPU s / steps", "SQUAREM CPU s / steps", "ll SQUAREM - plain"], table)
    paths = write_results(rows, args.stem, {"machine": machine_info(), "command": " ".join(["python"] + sys.argv)})
    print("wrote %s" % ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
