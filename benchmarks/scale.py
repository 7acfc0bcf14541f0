"""Memory and time of large fits, each in a fresh one-core process under a memory watch.

Two questions of the issue "Performance a user feels":

* the memory of a fit at n = 1e6, k = 8, d = 10;
* what a fit at n = 1e7, k = 3, d = 2 does on this machine (24 GiB): does it
  finish, and with how much memory?

Every fit is ``ms.GaussianMoE(k).fit(X, y, n_init=S, max_iter=M)`` (``_fit_once.py
--simulate``: the data are drawn inside the child by
:func:`_bench_common.simulate_moe`, seed ``cell_seed(n, k, d)``) in a process
pinned to one core, every other option at its default (k-means starts, Newton
polish).  The iteration cap ``M`` (``--max-iter``, default 5) and the starts
``S`` (``--n-init``, default 1; on CPU the starts run one after another) bound
the run time; the memory of EM does not grow with its iterations.  Memory is recorded three ways: the
process's peak resident set (``os.wait4``, includes drawing the data), the
resident set just before ``fit``, and the peak during ``fit`` (the child
resets its high-water mark after drawing the data).  A watcher kills the child
when its resident memory passes ``--mem-limit-gib`` (default: 70 % of the
memory available at the start), or when it runs past ``--timeout`` CPU
seconds (or ``--wall-timeout`` wall seconds).

For the n = 1e7 question, fits at ``--steps`` (default 1e6 and 2e6) give
memory and CPU time per point, and a straight line through them a prediction
at 1e7; then the 1e7 fit runs under the watch.  The line is recorded but not
trusted: the memory of a fit is not linear in n (``benchmarks/README.md``).  With ``--predict-only`` the 1e7 fit runs only when the line
predicts it inside both limits, and is recorded as ``not run`` otherwise.

Writes ``benchmarks/results/scale.csv`` and ``.json`` and prints a table.
Timings on a shared machine move between runs.

Usage (from the repository root)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/scale.py
    OPENBLAS_NUM_THREADS=1 python benchmarks/scale.py --n-init 10 --max-iter 20 --timeout 3600
"""
from __future__ import annotations

import argparse

import numpy as np

from _bench_common import (RUNNER, benchmark_env, fmt, last_json, machine_info, pinned, print_table,
                           python_cmd, run_measured, write_results)


def available_gib() -> float:
    """MemAvailable of /proc/meminfo in GiB (0 where unreadable)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return 0.0


def run_fit(n: int, k: int, d: int, args, mem_limit_gib: float) -> dict:
    """One fit in a fresh pinned process; the row of measurements."""
    cmd = python_cmd(RUNNER, "--simulate", n, k, d, "--k", k, "--n-init", args.n_init, "--max-iter", args.max_iter)
    m = run_measured(pinned(cmd, args.cpu), env=benchmark_env(), cpu_limit_s=args.timeout,
                     timeout_s=args.wall_timeout, mem_limit_mib=mem_limit_gib * 1024)
    rep = last_json(m["stdout"]) or {}
    if m["killed_for_memory"]:
        status = "killed: resident memory passed %.1f GiB" % mem_limit_gib
    elif m["timed_out"]:
        status = "timed out (%.0f CPU s or %.0f wall s)" % (args.timeout, args.wall_timeout)
    elif m["returncode"] != 0 or not rep:
        status = "error: " + (m["stderr"].strip().splitlines() or ["exit %d" % m["returncode"]])[-1][:300]
    else:
        status = "ok"
    gib = 1.0 / 1024
    row = {"n": n, "k": k, "d": d, "status": status, "process_wall_s": round(m["wall_s"], 2),
           "process_cpu_s": round(m["cpu_s"], 2), "process_peak_rss_gib": round(m["max_rss_mib"] * gib, 3),
           "watched_peak_rss_gib": round(m["watched_rss_mib"] * gib, 3)}
    if rep:
        row.update({"fit_s": round(rep["fit_s"], 2), "data_s": round(rep["data_s"], 2), "n_iter": rep["n_iter"],
                    "loglik": rep["loglik"], "rss_before_fit_gib": round(rep["rss_before_fit_mib"] * gib, 3),
                    "fit_peak_rss_gib": (round(rep["fit_peak_rss_mib"] * gib, 3)
                                         if rep["fit_peak_rss_mib"] is not None else None)})
        row["fit_extra_gib"] = (round(row["fit_peak_rss_gib"] - row["rss_before_fit_gib"], 3)
                                if row["fit_peak_rss_gib"] is not None else None)
    print("n=%d k=%d d=%d: %s, process %.1f s (CPU %.1f s), peak %.2f GiB" % (
        n, k, d, status, m["wall_s"], m["cpu_s"], m["max_rss_mib"] * gib), flush=True)
    return row


def predict(rows: list, n: int) -> dict:
    """Straight lines through the step fits (peak memory, process CPU time against n), evaluated at n."""
    ok = [r for r in rows if r["status"] == "ok"]
    if len(ok) < 2:
        return {}
    ns = np.array([r["n"] for r in ok], dtype=float)
    out = {"from_n": [r["n"] for r in ok]}
    for key in ("process_peak_rss_gib", "fit_peak_rss_gib", "process_cpu_s", "process_wall_s"):
        vals = np.array([r.get(key) if r.get(key) is not None else np.nan for r in ok], dtype=float)
        if np.all(np.isfinite(vals)):
            slope, intercept = np.polyfit(ns, vals, 1)
            out[key] = round(float(intercept + slope * n), 3)
            out[key + "_per_million_points"] = round(float(slope * 1e6), 4)
    return out


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-init", type=int, default=1, help="starts of every fit (run one after another on CPU)")
    ap.add_argument("--max-iter", type=int, default=5, help="EM iteration cap of every fit (bounds the run time)")
    ap.add_argument("--timeout", type=float, default=900.0, help="CPU seconds per fit before it is killed")
    ap.add_argument("--wall-timeout", type=float, default=3600.0, help="wall seconds per fit before it is killed")
    ap.add_argument("--mem-limit-gib", type=float, default=None,
                    help="kill a fit above this resident memory (default: 70%% of MemAvailable at the start)")
    ap.add_argument("--steps", type=float, nargs="+", default=[1e6, 2e6], help="sizes of the k=3, d=2 steps")
    ap.add_argument("--target", type=float, default=1e7, help="the large k=3, d=2 size")
    ap.add_argument("--skip-wide", action="store_true", help="skip the n=1e6, k=8, d=10 fit")
    ap.add_argument("--predict-only", action="store_true",
                    help="run the large fit only when the straight line through the steps predicts it inside the limits")
    ap.add_argument("--cpu", type=int, default=0)
    args = ap.parse_args(argv)
    limit = args.mem_limit_gib or round(0.7 * available_gib(), 1)
    meta = {"machine": machine_info(), "mem_limit_gib": limit, "timeout_cpu_s": args.timeout,
            "timeout_wall_s": args.wall_timeout,
            "fit": "GaussianMoE(k).fit(X, y, n_init=%d, max_iter=%d), other options default"
                   % (args.n_init, args.max_iter)}
    print("memory limit %.1f GiB, time limit %.0f CPU s per fit; n_init=%d, max_iter=%d"
          % (limit, args.timeout, args.n_init, args.max_iter))
    rows = []
    if not args.skip_wide:
        rows.append(dict(run_fit(1_000_000, 8, 10, args, limit), case="n=1e6 k=8 d=10"))
        write_results(rows, "scale", meta)
    steps = [dict(run_fit(int(n), 3, 2, args, limit), case="step") for n in args.steps]
    rows += steps
    write_results(rows, "scale", meta)
    target = int(args.target)
    pred = predict(steps, target)
    meta["prediction_at_target"] = pred
    fits_time = pred.get("process_cpu_s", 0) <= args.timeout
    fits_mem = pred.get("process_peak_rss_gib", 0) <= limit
    if not args.predict_only or (pred and fits_time and fits_mem):
        rows.append(dict(run_fit(target, 3, 2, args, limit), case="target"))
    else:
        reason = ("fewer than two step fits finished" if not pred else
                  "predicted %.1f GiB and %.0f CPU s against limits %.1f GiB and %.0f CPU s"
                  % (pred["process_peak_rss_gib"], pred["process_cpu_s"], limit, args.timeout))
        rows.append({"n": target, "k": 3, "d": 2, "status": "not run: " + reason, "case": "target"})
        print("n=%d not run: %s" % (target, reason))
    print()
    print_table(["case", "n", "k", "d", "status", "process s", "CPU s", "fit s", "iter", "peak GiB", "before fit",
                 "fit peak"],
                [[r["case"], str(r["n"]), str(r["k"]), str(r["d"]), r["status"][:40], fmt(r.get("process_wall_s")),
                  fmt(r.get("process_cpu_s")), fmt(r.get("fit_s")), fmt(r.get("n_iter")),
                  fmt(r.get("process_peak_rss_gib")), fmt(r.get("rss_before_fit_gib")),
                  fmt(r.get("fit_peak_rss_gib"))] for r in rows])
    if pred:
        print("straight line through the steps, at n=%d: %s" % (target, pred))
    csv_path, _ = write_results(rows, "scale", meta)
    print("wrote %s (+ .json)" % csv_path)
    return rows


if __name__ == "__main__":
    main()
