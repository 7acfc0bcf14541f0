"""Over-fitted MLE replicates: plain EM, SQUAREM-accelerated EM and short-EM screening on the same starts.

The MLE protocol of ``demystifying-k3`` (softmax-gated Gaussian MoE, k = 3 fitted to k* = 2 data) is the
case where EM crawls: most starts reach ``max_iter`` (3000) before the relative tolerance 1e-8.  For each
replicate (the harness's own data stream and starting partitions, ``n_init`` of them) this runs, in one
process, one after another:

* ``plain``: EM from every start to tol (the harness's default loop: the speculative softmax sweep);
* ``squarem``: the same starts with ``accelerate`` (:func:`moestat.fitting.em._fit_one_squarem`);
* ``screened``: every start to the loose tolerance 1e-6, the best ``--finalists`` distinct ones continued
  (:func:`moestat.fitting.shortem.estimate_screened`, the estimators' default strategy).

Reported per replicate and strategy: CPU seconds (``time.process_time``), EM steps of every start, the
chosen log-likelihood and its difference from the plain run's.  The first replicate's timings include
compilation (one program per strategy); use two or more replicates.

    OPENBLAS_NUM_THREADS=1 python benchmarks/overfit_mle_strategies.py --n 30000 --reps 0 1 2
    -> results/overfit_mle_strategies.csv, .json
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import fmt, machine_info, print_table, write_results  # noqa: E402

from moestat.fitting import em, shortem  # noqa: E402
from moestat.montecarlo import protocols, worker  # noqa: E402
from moestat.montecarlo.spec import Spec, load_spec  # noqa: E402


def experiments(name: str, n: int, n_init: int):
    raw = copy.deepcopy(load_spec(name).with_protocol("mle").raw)
    raw["protocols"]["mle"].update(n_init=n_init, accelerate=False)
    plain = worker.experiment_for(Spec(raw).raw, None, n)
    raw["protocols"]["mle"]["accelerate"] = True
    return plain, worker.experiment_for(Spec(raw).raw, None, n)


def screened(exp, n, rep, drawn, finalists):
    x, y, data = drawn
    R, base = protocols.mle_responsibilities(exp, n, rep, x, y, data)
    return shortem.estimate_screened(R, base, data, exp.ctl, em.no_fixed(base), exp.cfg,
                                     worker.replicate_info(exp, n), finalists=finalists, n_live=int(n),
                                     seed=worker.key_seed(exp, n, rep), polish_fit=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default="demystifying-k3")
    ap.add_argument("--n", type=int, default=30000)
    ap.add_argument("--reps", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-init", type=int, default=6)
    ap.add_argument("--finalists", type=int, default=2)
    ap.add_argument("--stem", default="overfit_mle_strategies")
    args = ap.parse_args(argv)
    plain_exp, fast_exp = experiments(args.spec, args.n, args.n_init)
    rows = []
    for rep in args.reps:
        drawn = worker.replicate_data(plain_exp, args.n, rep)
        runs = {"plain": lambda: worker.fit_replicate_cpu(plain_exp, args.n, rep, drawn),
                "squarem": lambda: worker.fit_replicate_cpu(fast_exp, args.n, rep, drawn),
                "screened": lambda: screened(plain_exp, args.n, rep, drawn, args.finalists)}
        base_ll = None
        for name, run in runs.items():
            t0 = time.process_time()
            est = jax.device_get(run())
            cpu = time.process_time() - t0
            ll = float(np.asarray(est.runs.loglik)[est.best])
            base_ll = ll if base_ll is None else base_ll
            steps = np.asarray(est.runs.n_iter).astype(int)
            rows.append({"spec": args.spec, "n": args.n, "rep": rep, "strategy": name, "cpu_s": round(cpu, 3),
                         "em_steps_all_starts": int(steps.sum()), "em_steps": " ".join(map(str, steps)),
                         "starts_at_max_iter": int(np.sum(steps >= plain_exp.cfg.max_iter)),
                         "loglik": ll, "loglik_minus_plain": ll - base_ll})
    meta = {"machine": machine_info(), "command": "python benchmarks/overfit_mle_strategies.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "n_init": args.n_init, "max_iter": plain_exp.cfg.max_iter,
        "tol": float(plain_exp.ctl.tol)}
    paths = write_results(rows, args.stem, meta)
    print_table(["rep", "strategy", "cpu_s", "em_steps_all_starts", "starts_at_max_iter", "loglik_minus_plain"],
                [[fmt(r["rep"]), r["strategy"], fmt(r["cpu_s"], ".2f"), fmt(r["em_steps_all_starts"]),
                  fmt(r["starts_at_max_iter"]), "%+.4f" % r["loglik_minus_plain"]] for r in rows])
    for path in paths:
        print("wrote", path)


if __name__ == "__main__":
    main()
