"""Where an EM iteration's time goes inside a fit: XLA:CPU's per-kernel trace events, summed by name.

Runs ``fit(n_init=1, tol=0, max_iter=50, polish=False)`` (n = 1e5, k = 3,
d = 2, ``first_fit.py``'s data) once to compile, then three times under
``jax.profiler.trace`` with ``XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true``
(set by this script before JAX is imported), and sums the trace's events by
name.  Events seen once per EM iteration (3 × (iterations + 1) calls) are the
loop's fusions and dots, reported in ns per point and iteration; the others
(start, set-up, transfers) in ms per fit.  The names are XLA's (e.g.
``ynn_fusion.8`` is a dot, ``subtract_exponential_fusion.5`` an exp pass); the
compiled HLO (``jax.jit(...).lower(...).compile().as_text()``) says what each
holds.  Prints and writes ``results/loop_profile.json``.

    OPENBLAS_NUM_THREADS=1 python benchmarks/loop_profile.py --cpu 1
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import shutil
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_enable_xprof_traceme=true").strip()
    import jax

    import moestat as ms
    from _bench_common import cell_seed, simulate_moe

    warnings.simplefilter("ignore")
    n, fits = args.n, 3
    X, y, _ = simulate_moe(n, 3, 2, seed=cell_seed(n, 3, 2))
    model = ms.GaussianMoE(3)
    kw = dict(n_init=1, tol=0.0, max_iter=50, polish=False)
    iters = int(model.fit(X, y, **kw).n_iter)
    model.fit(X, y, **kw)
    tmp = tempfile.mkdtemp()
    try:
        with jax.profiler.trace(tmp):
            for _ in range(fits):
                model.fit(X, y, **kw)
        events = json.load(gzip.open(glob.glob(os.path.join(tmp, "**", "*.trace.json.gz"), recursive=True)[0]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    agg = collections.defaultdict(lambda: [0, 0.0])
    for e in events["traceEvents"]:
        if e.get("ph") == "X" and not e["name"].startswith("$"):
            agg[e["name"]][0] += 1
            agg[e["name"]][1] += e["dur"]               # microseconds
    per_iter = fits * (iters + 1)                       # the loop runs its body once more to see convergence
    loop = {k: v for k, v in agg.items() if v[0] == per_iter}
    other = {k: v for k, v in agg.items() if v[0] != per_iter}
    out = {"n": n, "iterations": iters, "fits": fits, "load1": os.getloadavg()[0],
           "loop_ns_per_point_iteration": {k: v[1] * 1e3 / per_iter / n for k, v in loop.items()},
           "other_ms_per_fit": {k: v[1] / 1e3 / fits for k, v in other.items()}}
    print("EM loop (%d calls each), ns per point and iteration:" % per_iter)
    for k, v in sorted(out["loop_ns_per_point_iteration"].items(), key=lambda kv: -kv[1]):
        print("  %-40s %6.2f" % (k[:40], v))
    print("  %-40s %6.2f" % ("sum", sum(out["loop_ns_per_point_iteration"].values())))
    print("other events, ms per fit (nested events overlap):")
    for k, v in sorted(out["other_ms_per_fit"].items(), key=lambda kv: -kv[1])[:20]:
        print("  %-40s %8.2f  (%d calls)" % (k[:40], v, other[k][0]))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "loop_profile.json"), "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
