"""Two fixed costs of a Monte Carlo replicate: padding to the size bucket, and fresh pages for XLA's buffers.

1. **Padding.** A replicate of n points is padded to ``mc_bucket(n)`` (weight-0
   rows) so that one compiled EM program serves a bucket; its EM work grows
   with the padded length.  For every spec's full grid this prints the sum of
   padded over real sizes (the grid's padding work factor) and the number of
   buckets, for the ladder in use (powers of two up to 16384, quarter powers
   above) and for powers of two all the way (the ladder before 2026-12-04).
   Pure arithmetic, no fitting.
2. **Heap.** Each call of a compiled XLA:CPU program allocates its temporary
   buffers and frees them on return; glibc maps blocks that large freshly
   (``mmap``) and unmaps them, so every call faults its pages in again.
   ``moestat._parallel.keep_heap_memory`` (set in the harness's worker
   processes and the ``moestat`` command) keeps them.  Measured here in one
   process pinned to one core, the two settings interleaved (``mallopt``
   switched between calls), on the EM program of one ``--spec`` replicate
   (all its starts) at each ``--sizes`` n: median and minimum CPU time per call
   and the minor page faults per call.

Results: ``benchmarks/results/mc_padding_heap.{csv,json}`` (``--stem``).

Usage (from the repository root, on an otherwise idle machine)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/mc_padding_heap.py
    OPENBLAS_NUM_THREADS=1 python benchmarks/mc_padding_heap.py --spec deepseek-thm4 --sizes 30000,100000 --calls 10
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import machine_info, print_table, write_results  # noqa: E402

#: glibc mallopt parameters and their defaults (malloc.h; mmap max 65536, trim threshold 128 KiB)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULTS = {M_MMAP_MAX: 65536, M_TRIM_THRESHOLD: 128 * 1024}


def padding_rows() -> list:
    from moestat.data.design import bucket_size
    from moestat.montecarlo import load_spec
    from moestat.montecarlo.spec import available_specs
    from moestat.montecarlo.worker import MC_BUCKET_MIN, mc_bucket
    rows = []
    for name in sorted(available_specs()):
        spec = load_spec(name)
        grid = np.asarray(spec.grid(False), dtype=np.int64)
        now = np.array([mc_bucket(int(n)) for n in grid])
        before = np.array([bucket_size(int(n), MC_BUCKET_MIN, 2.0) for n in grid])
        rows.append({"spec": name, "sizes": len(grid), "n_min": int(grid.min()), "n_max": int(grid.max()),
                     "padding_factor": round(float(now.sum() / grid.sum()), 4), "buckets": len(set(now)),
                     "padding_factor_pow2": round(float(before.sum() / grid.sum()), 4),
                     "buckets_pow2": len(set(before))})
    return rows


def heap_rows(spec_name: str, sizes: list, calls: int) -> list:
    import jax

    from moestat.fitting import em, pipeline
    from moestat.montecarlo import load_spec, protocols, worker
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    spec = load_spec(spec_name)
    rows = []
    for n in sizes:
        exp = worker.experiment_for(spec.raw, n=n)
        x, y, data = worker.replicate_data(exp, n, 1)
        p0 = jax.tree_util.tree_map(worker.to_device, protocols.starts(exp, n, 1, x, y, data))
        fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
        seed = np.int64(worker.key_seed(exp, n, 1))

        def call():
            return jax.block_until_ready(pipeline.run(p0, data, exp.ctl, fixed, seed, exp.cfg))

        call()                                            # compile
        out = {"default": ([], []), "keep": ([], [])}
        for _ in range(calls):
            for mode in ("default", "keep"):
                if mode == "keep":
                    libc.mallopt(M_MMAP_MAX, 0)
                    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
                else:
                    for param, value in DEFAULTS.items():
                        libc.mallopt(param, value)
                call()                                    # the first call after a switch settles the heap
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                c0 = time.process_time()
                call()
                out[mode][0].append(time.process_time() - c0)
                out[mode][1].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
        for mode, (cpu, faults) in out.items():
            rows.append({"spec": spec_name, "n": n, "padded_n": int(data.w.shape[0]), "heap": mode,
                         "cpu_ms_median": round(1e3 * float(np.median(cpu)), 2),
                         "cpu_ms_min": round(1e3 * float(np.min(cpu)), 2),
                         "minor_faults_per_call": int(np.median(faults)), "calls": calls,
                         "load1": round(os.getloadavg()[0], 2)})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="demystifying-k4")
    ap.add_argument("--sizes", default="30000,100000", help="comma-separated replicate sizes")
    ap.add_argument("--calls", type=int, default=10, help="timed calls per setting (interleaved)")
    ap.add_argument("--stem", default="mc_padding_heap")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    pad = padding_rows()
    print("padding work factor (sum of padded / real sizes) of each spec's full grid")
    print_table(["spec", "sizes", "n range", "factor", "buckets", "factor pow2", "buckets pow2"],
                [[r["spec"], str(r["sizes"]), "%d..%d" % (r["n_min"], r["n_max"]), "%.3f" % r["padding_factor"],
                  str(r["buckets"]), "%.3f" % r["padding_factor_pow2"], str(r["buckets_pow2"])] for r in pad])
    heap = []
    if sys.platform.startswith("linux"):
        heap = heap_rows(args.spec, [int(s) for s in args.sizes.split(",")], args.calls)
        print("\nEM program of one %s replicate (all starts), CPU ms per call, one core" % args.spec)
        print_table(["n", "padded", "heap", "median ms", "min ms", "faults/call"],
                    [[str(r["n"]), str(r["padded_n"]), r["heap"], "%.1f" % r["cpu_ms_median"], "%.1f" % r["cpu_ms_min"],
                      str(r["minor_faults_per_call"])] for r in heap])
    paths = write_results([dict(r, table="padding") for r in pad] + [dict(r, table="heap") for r in heap],
                          args.stem, {"machine": machine_info(), "command": " ".join(["python"] + sys.argv)})
    print("wrote %s" % ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
