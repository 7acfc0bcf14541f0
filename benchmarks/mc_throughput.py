"""Monte Carlo throughput: the DeepSeekMoE Fig. 6 study (Thm 1-4, full grid) through ``moestat reproduce``.

Two measurements (issue "Performance a user feels", Monte Carlo throughput):

(a) The study.  For each spec ``deepseek-thm1`` ... ``deepseek-thm4`` (20 sizes
    100...1e5, ``--replicates`` per size, 40 in the paper) one fresh
    ``moestat reproduce SPEC --workers W --out DIR`` process, timed from
    outside (wall time, and CPU time of the process and its workers from
    ``os.wait4``).  Twice: with an empty on-disk compile cache
    (``MOESTAT_JAX_CACHE`` = a new folder: every program is compiled) and again
    with the cache that the first pass filled (fresh output folders, so every
    replicate is fitted again).  Per spec: replicate fits per second of wall
    time and per CPU second.  The Thm 4 reference fit (n = 5e5) is taken from
    the per-user reference cache when it holds it (``MOESTAT_REFERENCE_CACHE``,
    see :mod:`moestat.montecarlo.reference`); the row says whether it was
    cached or computed, and its compute time is reported separately.
    ``--code DIR`` runs another checkout's ``moestat`` (e.g. an older commit
    unpacked with ``git archive``) for a before/after comparison.
(b) Batching over replicates on CPU (``--batching``).  In one process per
    spec, replicates of one size are fitted (EM only: starts, EM, best start)
    one by one (what each pool worker does), and as one
    ``em.fit_replicates`` call over all (replicate, start) pairs -- vectorised
    (``vmap`` over the whole block) and sequential inside one program
    (``lax.map`` with batch 1).  Each path is run once to compile and then
    timed (process CPU time) on other replicates of the same size.

(c) Projected full grids (``--project SPEC,...``; ``name`` or ``name:variant``,
    a spec with variants stands for all of them).  In a fresh one-core process
    per spec (the pool workers' environment), ``--project-sizes`` sizes spread
    over the spec's full grid are run through
    :func:`moestat.montecarlo.worker.run_task` one replicate per task
    (``--project-reps`` each, after a first call per size that compiles or
    loads its bucket's programs); the CPU seconds per replicate are
    interpolated linearly in n over the full grid and multiplied by its
    replicates.  The row gives the CPU seconds of the whole grid, the first
    calls (bucket programs, once per bucket and worker) and the projected
    wall time on two idle cores, (replicates + 2 x first calls) / 2.

Every number comes from a machine shared with other users: wall times hold
their load (the load average is recorded next to each row); CPU times are the
work done.  Writes ``benchmarks/results/mc_throughput.{csv,json}``.

Usage (from the repository root)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/mc_throughput.py                       # 40 replicates, cold + warm
    OPENBLAS_NUM_THREADS=1 python benchmarks/mc_throughput.py --replicates 4 --caches warm
    OPENBLAS_NUM_THREADS=1 python benchmarks/mc_throughput.py --replicates 0 --batching  # batching only
    OPENBLAS_NUM_THREADS=1 python benchmarks/mc_throughput.py --replicates 0 --project deepseek-thm1,gaussian-gated-m1
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import (REPO, RESULTS, benchmark_env, machine_info, print_table, python_cmd,  # noqa: E402
                           run_measured, write_results, cached_reference_or_exit)

SPECS = ["deepseek-thm1", "deepseek-thm2", "deepseek-thm3", "deepseek-thm4"]


def store_summary(out_dir: str) -> dict:
    """Rows stored, and the sum and median of the per-replicate seconds, of a run's store."""
    con = sqlite3.connect(os.path.join(out_dir, "results.sqlite"))
    try:
        secs = np.array([r[0] for r in con.execute("SELECT seconds FROM results")], dtype=float)
        iters = np.array([r[0] for r in con.execute("SELECT n_iter FROM results")], dtype=float)
    finally:
        con.close()
    return {"fits": int(secs.size), "replicate_s_sum": round(float(secs.sum()), 1),
            "replicate_s_median": round(float(np.median(secs)), 4) if secs.size else None,
            "n_iter_median": float(np.median(iters)) if iters.size else None}


def reference_note(stderr: str) -> str:
    """How the run got its reference fit: 'cached', 'computed in X s' or '-'."""
    for line in stderr.splitlines():
        if "reference fit" in line and "per-user cache" in line:
            return "cached"
        if line.startswith("reference fit done in"):
            return "computed in " + line.split("done in", 1)[1].strip()
    return "-"


def study(args, work: str) -> list:
    """(a): one ``moestat reproduce`` process per spec and cache state."""
    rows = []
    jax_cache = args.jax_cache or os.path.join(work, "jax-cache")
    for cache in args.caches:
        if cache == "cold" and os.path.isdir(jax_cache):
            raise SystemExit("the cold pass needs an empty compile cache; %s exists" % jax_cache)
        for name in args.specs:
            out = os.path.join(work, cache, name)
            env = benchmark_env(MOESTAT_JAX_CACHE=jax_cache)
            if args.code:
                rest = env["PYTHONPATH"].split(os.pathsep)[1:]
                env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(args.code)] + rest)
            cmd = python_cmd("-m", "moestat.cli", "reproduce", name, "--replicates", args.replicates,
                             "--workers", args.workers, "--out", out, "--no-progress")
            load0 = os.getloadavg()[0]
            # ``python -m`` puts the working folder first on sys.path: run in the checkout to import
            res = run_measured(cmd, env=env, cwd=os.path.abspath(args.code or REPO), timeout_s=args.timeout)
            if res["returncode"] != 0:
                print(res["stderr"][-3000:], file=sys.stderr)
                raise SystemExit("%s failed (exit %s)" % (" ".join(map(str, cmd)), res["returncode"]))
            summ = store_summary(out)
            row = {"part": "study", "spec": name, "code": "baseline" if args.code else "this", "cache": cache,
                   "workers": args.workers,
                   "replicates": args.replicates, "sizes": 20, **summ,
                   "wall_s": round(res["wall_s"], 1), "cpu_s": round(res["cpu_s"], 1),
                   "fits_per_s": round(summ["fits"] / res["wall_s"], 2),
                   "fits_per_cpu_s": round(summ["fits"] / res["cpu_s"], 2),
                   "reference": reference_note(res["stderr"]),
                   "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows + totals(rows)


def totals(rows: list) -> list:
    """One "all" row per cache state and replicate count: the specs' wall and CPU times added up."""
    out = []
    keys = dict.fromkeys((r.get("code"), r["cache"], r["replicates"], r["workers"]) for r in rows
                         if r["part"] == "study" and r["spec"] != "all")
    for code, cache, reps, workers in keys:
        part = [r for r in rows if r["part"] == "study" and r["spec"] != "all" and r["cache"] == cache
                and r["replicates"] == reps and r["workers"] == workers and r.get("code") == code]
        wall, cpu, fits = (sum(r[k] for r in part) for k in ("wall_s", "cpu_s", "fits"))
        out.append({"part": "study", "spec": "all", "code": code, "cache": cache, "workers": workers, "replicates": reps,
                    "sizes": 20, "fits": fits, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                    "fits_per_s": round(fits / wall, 2), "fits_per_cpu_s": round(fits / cpu, 2),
                    "reference": ", ".join(r["spec"].replace("deepseek-", "") for r in part)})
        print(json.dumps(out[-1]), flush=True)
    return out


def batching_child(name: str, sizes: list, reps: int) -> list:
    """(b), run in a fresh process: CPU seconds per replicate of the three fitting paths at each size."""
    import jax
    from moestat.montecarlo import load_spec
    from moestat.montecarlo.worker import experiment_for, fit_block_batched, fit_replicate_cpu
    exp = experiment_for(load_spec(name).raw)
    out = []
    for n in sizes:
        warm, timed = list(range(100, 100 + reps)), list(range(reps))
        row = {"part": "batching", "spec": name, "n": n, "replicates": reps}
        lls = {}
        for path, fn in (("one_by_one", lambda rr: [fit_replicate_cpu(exp, n, r) for r in rr]),
                         ("vmap_block", lambda rr: fit_block_batched(exp, n, rr, batch=10 ** 6)[0]),
                         ("lax_map_block", lambda rr: fit_block_batched(exp, n, rr, batch=1)[0])):
            c0 = time.process_time()
            fn(warm)                                           # compiles this path's programs
            row[path + "_first_s"] = round(time.process_time() - c0, 2)
            c0 = time.process_time()
            ests = fn(timed)
            jax.block_until_ready(ests[-1].fit.params)
            row[path + "_s_per_rep"] = round((time.process_time() - c0) / reps, 4)
            lls[path] = np.array([float(np.asarray(e.runs.loglik)[e.best]) for e in ests])
        for path in ("vmap_block", "lax_map_block"):
            row[path + "_speedup"] = round(row["one_by_one_s_per_rep"] / row[path + "_s_per_rep"], 2)
            row[path + "_max_dloglik"] = float(np.max(np.abs(lls[path] - lls["one_by_one"])))
        row["load"] = round(os.getloadavg()[0], 2)
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def projection_child(name: str, protocol: str | None, n_sizes: int, reps: int) -> list:
    """(c), run in a fresh process: CPU seconds per replicate at sizes spread over the full grid, projected."""
    from moestat.montecarlo import load_spec
    from moestat.montecarlo.worker import mc_bucket, run_task
    base, _, variant = name.partition(":")
    spec = load_spec(base).with_protocol(protocol)
    specs = [v for v in spec.variants() if not variant or v.variant == variant]
    out = []
    for sp in specs:
        ref = cached_reference_or_exit(sp, name)
        grid = np.asarray(sp.grid(False), dtype=float)
        R = sp.replicates(False)
        sizes = grid[np.unique(np.round(np.linspace(0, grid.size - 1, n_sizes)).astype(int))].astype(int)
        per_rep, first, iters = [], [], []
        for n in sizes:
            task = lambda rr: {"spec": sp.raw, "reference": ref, "n": int(n), "reps": rr}  # noqa: E731
            c0 = time.process_time()
            run_task(task([10_000]))                       # compiles or loads this bucket's programs
            first.append(time.process_time() - c0)
            c0 = time.process_time()
            rows = [row for r in range(reps) for row in run_task(task([r]))]
            per_rep.append((time.process_time() - c0) / reps)
            iters.append(float(np.mean([row["n_iter"] for row in rows])))
            first[-1] -= per_rep[-1]
        cpu = float(R * np.interp(grid, sizes, per_rep).sum())
        buckets = len({mc_bucket(int(n)) for n in grid})
        compile_cpu = buckets * max(float(np.mean(first)), 0.0)
        row = {"part": "projection", "spec": sp.name + (":" + sp.variant if getattr(sp, "variant", None) else ""),
               "protocol": sp.protocol, "sizes": int(grid.size), "replicates": int(R), "fits": int(grid.size * R),
               "sampled_n": [int(v) for v in sizes], "cpu_s_per_rep": [round(v, 4) for v in per_rep],
               "n_iter_mean": [round(v, 1) for v in iters], "first_call_s": [round(v, 2) for v in first],
               "grid_cpu_s": round(cpu, 1), "first_calls_cpu_s": round(compile_cpu, 1),
               "projected_wall_s_2cores": round((cpu + 2 * compile_cpu) / 2.0, 1),
               "load": round(os.getloadavg()[0], 2)}
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def projection(args) -> list:
    """(c) for each spec in a fresh, single-threaded process (the environment of the pool's workers)."""
    rows = []
    for name in args.project:
        cmd = python_cmd(os.path.abspath(__file__), "--projection-child", name, "--project-sizes", args.project_sizes,
                         "--project-reps", args.project_reps) + (["--protocol", args.protocol] if args.protocol else [])
        res = run_measured(cmd, env=benchmark_env(XLA_FLAGS="--xla_cpu_multi_thread_eigen=false"), cwd=str(REPO),
                           timeout_s=args.timeout)
        if res["returncode"] != 0:
            print(res["stderr"][-3000:], file=sys.stderr)
            raise SystemExit("projection of %s failed" % name)
        rows += [json.loads(line) for line in res["stdout"].splitlines() if line.startswith("{")]
    return rows


def batching(args) -> list:
    """(b) for each spec in a fresh, single-threaded process."""
    rows = []
    for name in args.specs:
        cmd = python_cmd(os.path.abspath(__file__), "--batching-child", name, "--batch-sizes",
                         ",".join(map(str, args.batch_sizes)), "--batch-reps", args.batch_reps)
        res = run_measured(cmd, env=benchmark_env(), cwd=str(REPO), timeout_s=args.timeout)
        if res["returncode"] != 0:
            print(res["stderr"][-3000:], file=sys.stderr)
            raise SystemExit("batching measurement of %s failed" % name)
        rows += [json.loads(line) for line in res["stdout"].splitlines() if line.startswith("{")]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicates", type=int, default=40, help="replicates per size (0: skip the study)")
    ap.add_argument("--specs", default=",".join(SPECS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--caches", default="cold,warm", help="cold, warm or both (cold first)")
    ap.add_argument("--batching", action="store_true", help="also measure batching over replicates (b)")
    ap.add_argument("--batch-sizes", default="100,1000,10000,100000")
    ap.add_argument("--batch-reps", type=int, default=8)
    ap.add_argument("--code", help="import moestat from this checkout in the study (default: this one)")
    ap.add_argument("--work", help="folder for stores and the compile cache (default: a new temporary one)")
    ap.add_argument("--jax-cache", help="the on-disk compile cache (default WORK/jax-cache, empty at the start)")
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--stem", default="mc_throughput", help="results file name (benchmarks/results/STEM.*)")
    ap.add_argument("--merge", help="instead of measuring, merge earlier results (comma-separated stems)")
    ap.add_argument("--project", default="", help="project full-grid times of these specs (c)")
    ap.add_argument("--project-sizes", type=int, default=4, help="sizes sampled from each full grid")
    ap.add_argument("--project-reps", type=int, default=2, help="replicates timed at each sampled size")
    ap.add_argument("--protocol", help="the specs' protocol in (c) (default: each spec's)")
    ap.add_argument("--batching-child", help=argparse.SUPPRESS)
    ap.add_argument("--projection-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.specs = [s for s in args.specs.split(",") if s]
    args.caches = [c for c in args.caches.split(",") if c]
    args.batch_sizes = [int(v) for v in str(args.batch_sizes).split(",") if v]
    args.project = [s for s in args.project.split(",") if s]
    if args.batching_child:
        batching_child(args.batching_child, args.batch_sizes, args.batch_reps)
        return
    if args.projection_child:
        projection_child(args.projection_child, args.protocol, args.project_sizes, args.project_reps)
        return
    meta = {"machine": machine_info(),
            "command": " ".join(["python", "benchmarks/mc_throughput.py"] + (argv or sys.argv[1:])),
            "code": os.path.abspath(args.code) if args.code else str(REPO),
            "reference_cache": os.environ.get("MOESTAT_REFERENCE_CACHE") or "~/.cache/moestat/references"}
    work = args.work or tempfile.mkdtemp(prefix="moestat-mc-throughput-")
    if args.merge:
        parts = [json.loads((RESULTS / (stem + ".json")).read_text()) for stem in args.merge.split(",")]
        rows = [dict(r, code=r.get("code") or ("this" if p.get("code", str(REPO)) == str(REPO) else "baseline"))
                for p in parts for r in p["rows"] if not str(r.get("spec")).startswith("all")]
        rows = [r for r in rows if r["part"] == "study"] + totals(rows) + [r for r in rows if r["part"] != "study"]
        meta = {"merged": {stem: {k: v for k, v in p.items() if k != "rows"} for stem, p in
                           zip(args.merge.split(","), parts)}}
        work = "(merged)"
    else:
        rows = study(args, work) if args.replicates > 0 else []
    if args.batching:
        rows += batching(args)
    if args.project:
        rows += projection(args)
    csv_path, json_path = write_results(rows, args.stem, meta)
    study_rows = [r for r in rows if r["part"] == "study"]
    if study_rows:
        print_table(["spec", "cache", "fits", "wall s", "CPU s", "fits/s", "fits/CPU s", "reference", "load"],
                    [[str(v) for v in (r["spec"], r["cache"], r["fits"], r["wall_s"], r["cpu_s"], r["fits_per_s"],
                                       r["fits_per_cpu_s"], r.get("reference", ""), r.get("load_end", ""))]
                     for r in study_rows])
    batch_rows = [r for r in rows if r["part"] == "batching"]
    if batch_rows:
        print_table(["spec", "n", "one-by-one s/rep", "vmap s/rep", "lax.map s/rep", "vmap x", "lax.map x"],
                    [[str(r[k]) for k in ("spec", "n", "one_by_one_s_per_rep", "vmap_block_s_per_rep",
                                          "lax_map_block_s_per_rep", "vmap_block_speedup", "lax_map_block_speedup")]
                     for r in batch_rows])
    proj_rows = [r for r in rows if r["part"] == "projection"]
    if proj_rows:
        print_table(["spec", "protocol", "fits", "grid CPU s", "first calls CPU s", "projected wall s (2 cores)", "load"],
                    [[str(r[k]) for k in ("spec", "protocol", "fits", "grid_cpu_s", "first_calls_cpu_s",
                                          "projected_wall_s_2cores", "load")] for r in proj_rows])
    print("wrote %s and %s (stores and cache in %s)" % (csv_path, json_path, work))


if __name__ == "__main__":
    main()
