"""moestat against flexmix on the same simulated data: whole processes, one core, same run.

For each cell (n, K, d) of a grid, a K-expert softmax-gated Gaussian mixture
of experts on d covariates is drawn once (:func:`_bench_common.simulate_moe`,
seed ``(12, n, K, d)``) and written to a CSV file; then, as separate whole
processes pinned to one core (``taskset -c CPU``, one BLAS thread):

* moestat: ``_fit_once.py`` -- ``import moestat``, read the file,
  ``ms.GaussianMoE(K).fit(X, y)`` with its defaults (10 starts);
* flexmix: ``flexmix_compare.R`` -- ``stepFlexmix(y ~ x, k = K, nrep = 5,
  concomitant = FLXPmultinom(~ x))`` under flexmix's default control.

Measured from outside each process: wall time, CPU time and peak resident
memory (``os.wait4``); reported by each process: import / library load time,
fit time, iterations (moestat: of the best start; flexmix: of the best
repetition) and the final log-likelihood.  moestat runs with its on-disk
compilation cache as a user has it (``~/.cache/moestat/jax``, or
``MOESTAT_JAX_CACHE``), warm after the first cell.  A process that runs past
the time limit (``--timeout`` CPU seconds, default 600, or ``--wall-timeout``
wall seconds, default 3600) is killed and recorded as ``timed_out``, and the
larger n of the same K, d are recorded as ``skipped``.  Without ``Rscript`` and flexmix only
moestat runs, and the rows say so.

Grids: the default is n = 1e3, 1e4, 1e5 at K = 3, d = 2, plus K = 2..8 (d = 2)
and d = 1..5 (K = 3) at n = 1e4 -- 13 cells, about 16 CPU minutes.
``--full`` is the issue's grid, n = 1e3, 1e4, 1e5, 1e6 x K = 2..8 x d = 1..5
(140 cells; many hours).  ``--n``, ``--K``,
``--d`` give any product grid; ``--append`` keeps the rows of other cells
already in the results file, so that a grid can be filled in pieces.

Writes ``benchmarks/results/flexmix_compare.csv`` and ``.json`` (rows are
rewritten after each cell, so an interrupted run keeps what it measured) and
prints a table with the ratios flexmix / moestat (whole process wall time and
CPU time) and log-likelihood differences.  Timings on a shared machine move
between runs; the CPU-time ratio is the steadier one.

Usage (from the repository root)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/flexmix_compare.py               # default grid
    OPENBLAS_NUM_THREADS=1 python benchmarks/flexmix_compare.py --n 10000 100000 --K 3 --d 2
    OPENBLAS_NUM_THREADS=1 python benchmarks/flexmix_compare.py --full --timeout 900
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

from _bench_common import (HERE, RESULTS, RUNNER, benchmark_env, cell_seed, fmt, last_json, machine_info, pinned, print_table,
                           python_cmd, run_measured, simulate_moe, write_csv_data, write_results)

R_SCRIPT = HERE / "flexmix_compare.R"
FULL_GRID = {"n": [1_000, 10_000, 100_000, 1_000_000], "K": list(range(2, 9)), "d": list(range(1, 6))}


def default_cells() -> list:
    """n = 1e3, 1e4, 1e5 at (K, d) = (3, 2); K = 2..8 and d = 1..5 at n = 1e4."""
    cells = {(n, 3, 2) for n in (1_000, 10_000, 100_000)}
    cells |= {(10_000, k, 2) for k in range(2, 9)}
    cells |= {(10_000, 3, d) for d in range(1, 6)}
    return sorted(cells)


def product_cells(ns, ks, ds) -> list:
    return sorted((n, k, d) for n in ns for k in ks for d in ds)


def flexmix_available() -> str:
    """'' when Rscript with flexmix and jsonlite is usable, else the reason it is not."""
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    probe = subprocess.run(["Rscript", "-e", "library(flexmix); library(jsonlite)"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else "flexmix or jsonlite not installed in R"


def measure(side: str, cmd: list, args) -> dict:
    """Run one side's process; its measured and reported numbers prefixed with the side's name."""
    load_before = os.getloadavg()[0]
    m = run_measured(cmd, env=benchmark_env(), cpu_limit_s=args.timeout, timeout_s=args.wall_timeout)
    rep = last_json(m["stdout"]) or {}
    if m["timed_out"]:
        status = "timed_out"
    elif m["returncode"] != 0 or not rep or rep.get("error"):
        status = "error"
    else:
        status = "ok"
    row = {"status": status, "wall_s": round(m["wall_s"], 3), "cpu_s": round(m["cpu_s"], 3),
           "max_rss_mib": round(m["max_rss_mib"], 1),
           "load1": "%.2f-%.2f" % (load_before, os.getloadavg()[0])}   # 1-minute load average before-after
    for key in ("import_s", "load_s", "data_s", "fit_s", "n_iter", "loglik", "converged", "k_final"):
        if key in rep:
            row[key] = round(rep[key], 3) if key.endswith("_s") else rep[key]
    if status == "error":
        row["error"] = (rep.get("error") or m["stderr"].strip().splitlines() or ["exit %d" % m["returncode"]])[-1]
    return {"%s_%s" % (side, key): val for key, val in row.items()}


def ratios(row: dict) -> dict:
    """flexmix / moestat for wall, CPU and fit time; log-likelihood differences."""
    out = {}
    both = row.get("moestat_status") == "ok" and row.get("flexmix_status") == "ok"
    for key in ("wall_s", "cpu_s", "fit_s"):
        out["ratio_" + key[:-2]] = (round(row["flexmix_" + key] / row["moestat_" + key], 2) if both else None)
    if row.get("moestat_status") == "ok" and row.get("flexmix_status") == "timed_out":
        out["ratio_wall_at_least"] = round(row["flexmix_wall_s"] / row["moestat_wall_s"], 2)
        out["ratio_cpu_at_least"] = round(row["flexmix_cpu_s"] / row["moestat_cpu_s"], 2)
    out["loglik_moestat_minus_flexmix"] = (row["moestat_loglik"] - row["flexmix_loglik"]) if both else None
    if row.get("moestat_status") == "ok":
        out["loglik_moestat_minus_truth"] = row["moestat_loglik"] - row["loglik_true"]
    return out


def run_cell(n, k, d, args, data_dir, flexmix_reason, timed_out_at) -> dict:
    X, y, ll_true = simulate_moe(n, k, d, seed=cell_seed(n, k, d))
    path = data_dir / ("moe_n%d_K%d_d%d.csv" % (n, k, d))
    write_csv_data(path, X, y)
    row = {"n": n, "K": k, "d": d, "seed": ",".join(map(str, cell_seed(n, k, d))), "loglik_true": ll_true}
    row.update(measure("moestat", pinned(python_cmd(RUNNER, "--csv", path, "--k", k, "--n-init", args.n_init),
                                         args.cpu), args))
    if flexmix_reason:
        row["flexmix_status"] = "not_run: " + flexmix_reason
    elif (k, d) in timed_out_at and timed_out_at[(k, d)] < n:
        row["flexmix_status"] = "skipped: timed out at n=%d" % timed_out_at[(k, d)]
    else:
        row.update(measure("flexmix", pinned(["Rscript", str(R_SCRIPT), str(path), str(k), str(args.nrep)], args.cpu),
                           args))
        if row["flexmix_status"] == "timed_out":
            timed_out_at[(k, d)] = n
    path.unlink()
    row.update(ratios(row))
    return row


def previous_rows(stem: str, cells: list, meta: dict) -> list:
    """Rows of ``results/<stem>.json`` for cells not in ``cells``; their runs' machine records go into ``meta``."""
    path = RESULTS / (stem + ".json")
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    meta["runs"] = old.get("runs", []) + meta["runs"]
    return [r for r in old["rows"] if (r["n"], r["K"], r["d"]) not in set(cells)]


def table_row(r: dict) -> list:
    ok_f = r.get("flexmix_status") == "ok"
    fx_wall = (fmt(r["flexmix_wall_s"], ".1f") if ok_f
               else ">%.0f" % r["flexmix_wall_s"] if r.get("flexmix_status") == "timed_out"
               else r.get("flexmix_status", "-").split(":")[0])
    ratio = (fmt(r["ratio_wall"], ".2f") if r.get("ratio_wall") is not None
             else ">%.1f" % r["ratio_wall_at_least"] if "ratio_wall_at_least" in r else "-")
    ms_proc = "%.1f (%.1f+%.1f)" % (r["moestat_wall_s"], r.get("moestat_import_s", float("nan")),
                                    r.get("moestat_fit_s", float("nan")))
    ratio_cpu = (fmt(r["ratio_cpu"], ".2f") if r.get("ratio_cpu") is not None
                 else ">%.1f" % r["ratio_cpu_at_least"] if "ratio_cpu_at_least" in r else "-")
    return [str(r["n"]), str(r["K"]), str(r["d"]), ms_proc, fx_wall, ratio, ratio_cpu,
            fmt(r.get("loglik_moestat_minus_flexmix"), "+.3f"), fmt(r.get("loglik_moestat_minus_truth"), "+.1f"),
            "%s/%s" % (r.get("moestat_n_iter", "-"), r.get("flexmix_n_iter", "-")),
            "%s/%s" % (fmt(r.get("moestat_max_rss_mib"), ".0f"), fmt(r.get("flexmix_max_rss_mib"), ".0f")),
            str(r.get("flexmix_k_final", "-"))]


HEADER = ["n", "K", "d", "moestat s (import+fit)", "flexmix s", "wall ratio", "cpu ratio", "ll m-f",
          "ll m-truth", "iter m/f", "RSS MiB m/f", "flexmix K"]


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the issue's grid: n 1e3..1e6 x K 2..8 x d 1..5")
    ap.add_argument("--n", type=int, nargs="+", help="sizes (with --K and --d: a product grid)")
    ap.add_argument("--K", type=int, nargs="+", default=[3], help="experts (product grid; default 3)")
    ap.add_argument("--d", type=int, nargs="+", default=[2], help="covariates (product grid; default 2)")
    ap.add_argument("--timeout", type=float, default=600.0, help="CPU seconds per process before it is killed")
    ap.add_argument("--wall-timeout", type=float, default=3600.0, help="wall seconds per process before it is killed")
    ap.add_argument("--cpu", type=int, default=0, help="core both processes are pinned to (taskset -c)")
    ap.add_argument("--n-init", type=int, default=10, help="moestat starts (its default: 10)")
    ap.add_argument("--nrep", type=int, default=5, help="stepFlexmix repetitions")
    ap.add_argument("--no-flexmix", action="store_true", help="run moestat only")
    ap.add_argument("--out", default="flexmix_compare", help="stem of the files in benchmarks/results/")
    ap.add_argument("--append", action="store_true",
                    help="keep the rows of other cells already in the results file (to fill a grid in pieces)")
    args = ap.parse_args(argv)
    if args.full:
        cells = product_cells(FULL_GRID["n"], FULL_GRID["K"], FULL_GRID["d"])
    elif args.n:
        cells = product_cells(args.n, args.K, args.d)
    else:
        cells = default_cells()
    reason = "--no-flexmix" if args.no_flexmix else flexmix_available()
    meta = {"runs": [{"machine": machine_info(), "cells": [list(c) for c in cells]}], "timeout_cpu_s": args.timeout,
            "timeout_wall_s": args.wall_timeout, "cpu": args.cpu,
            "moestat_fit": "GaussianMoE(K).fit(X, y, n_init=%d), other options default" % args.n_init,
            "flexmix_fit": "stepFlexmix(y ~ x, k = K, nrep = %d, concomitant = FLXPmultinom(~ x)), default control"
                           % args.nrep,
            "flexmix": reason or "run", "data_seed": "numpy default_rng((12, n, K, d))",
            "moestat_compile_cache": os.environ.get("MOESTAT_JAX_CACHE") or "moestat's default (~/.cache/moestat/jax)"}
    print("%d cells; one core (cpu %d); flexmix: %s" % (len(cells), args.cpu, reason or "installed, run"))
    rows, timed_out_at = (previous_rows(args.out, cells, meta) if args.append else []), {}
    with tempfile.TemporaryDirectory(prefix="moestat_flexmix_") as tmp:
        for n, k, d in cells:
            rows.append(run_cell(n, k, d, args, pathlib.Path(tmp), reason, timed_out_at))
            print("  ".join("%s %s" % (h, c) for h, c in zip(HEADER, table_row(rows[-1]))), flush=True)
            rows.sort(key=lambda r: (r["n"], r["K"], r["d"]))
            write_results(rows, args.out, meta)
    print()
    print_table(HEADER, [table_row(r) for r in rows])
    csv_path, _ = write_results(rows, args.out, meta)
    print("ratios are flexmix / moestat; ll m-f = moestat - flexmix log-likelihood; wrote %s (+ .json)" % csv_path)
    return rows


if __name__ == "__main__":
    main()
