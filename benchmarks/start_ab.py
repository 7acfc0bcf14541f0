"""A default start's M-steps (``em.params_from_resp``): this checkout's ``em.py`` against another's, in ONE process.

The start of ``first_fit.py``'s fit (n = 1e5, k = 3, d = 2: the k-means
responsibilities that ``fit(n_init=1)`` hands to ``pipeline.run_from_resp``)
is captured, and both versions of ``params_from_resp`` (``START_STEPS``
M-steps; the gate's guarded Newton steps to their fixed point) are timed on it,
interleaved, one pinned process, CPU time, minimum and median of
``--repeats``; the largest difference between the two starts' parameters is
printed, and the passes over the data that each version's gate steps take (counted in separate,
instrumented programs).  The other checkout's ``em.py`` is loaded as in ``kernel_ab.py``.
Prints and writes ``results/start_ab.json``.

    git archive 868faf0 moestat | tar -x -C /tmp/kernel_base
    OPENBLAS_NUM_THREADS=1 python benchmarks/start_ab.py /tmp/kernel_base --cpu 1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="root of the other checkout (holds moestat/fitting/em.py)")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    import jax

    import moestat as ms
    from moestat.fitting import em, pipeline
    from _bench_common import cell_seed, simulate_moe
    from kernel_ab import load_base

    warnings.simplefilter("ignore")          # max_iter=1 does not converge
    base_em = load_base(em, args.base)
    X, y, _ = simulate_moe(args.n, 3, 2, seed=cell_seed(args.n, 3, 2))
    got = {}
    real = pipeline.run_from_resp

    def capture(R, base, data, ctl, fixed, seed, cfg, **kw):
        got.update(R=R, base=base, data=data, ctl=ctl, fixed=fixed, cfg=pipeline.start_config(cfg))
        return real(R, base, data, ctl, fixed, seed, cfg, **kw)
    pipeline.run_from_resp = capture
    try:
        ms.GaussianMoE(3).fit(X, y, n_init=1, max_iter=1, polish=False)
    finally:
        pipeline.run_from_resp = real
    g = got
    fns = {name: jax.jit(lambda R, mod=mod: mod.params_from_resp(R, g["base"], g["data"], g["ctl"], g["fixed"],
                                                                g["cfg"], n_steps=pipeline.START_STEPS))
           for name, mod in (("before", base_em), ("after", em))}
    outs = {name: jax.block_until_ready(f(g["R"])) for name, f in fns.items()}
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in
               zip(jax.tree_util.tree_leaves(outs["before"]), jax.tree_util.tree_leaves(outs["after"])))
    times = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, f in fns.items():
            t0 = time.process_time()
            jax.block_until_ready(f(g["R"]))
            times[name].append(time.process_time() - t0)
    passes = {name: gate_passes(mod, g) for name, mod in (("before", base_em), ("after", em))}
    res = {"n": args.n, "load1": os.getloadavg()[0], "max_abs_param_difference": diff, "gate_passes": passes}
    for name, v in times.items():
        res[name] = {"min_ms": 1e3 * min(v), "median_ms": 1e3 * float(np.median(v))}
        print("%-6s start M-steps: min %.2f ms, median %.2f ms" % (name, res[name]["min_ms"], res[name]["median_ms"]))
    print("largest difference between the two starts' parameters: %.1e" % diff)
    print("passes over the data of the start's gate steps: before %d, after %d" % (passes["before"], passes["after"]))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "start_ab.json"), "w") as fh:
        json.dump(res, fh, indent=1)


def gate_passes(mod, g) -> int:
    """Passes over the data the start's gate Newton steps take in ``mod`` (a callback counts the calls of the
    pass function at run time, in a program of its own: the timed ones are not instrumented)."""
    import jax
    from moestat.fitting import pipeline

    calls = []
    real = mod._speculative_newton

    def counted(at, theta0, *a, **kw):
        def at_counted(theta):
            jax.debug.callback(lambda: calls.append(1))
            return at(theta)
        return real(at_counted, theta0, *a, **kw)
    mod._speculative_newton = counted
    try:
        inner = mod.params_from_resp.__wrapped__     # not the jitted function: its trace is cached, uncounted
        f = jax.jit(lambda R: inner(R, g["base"], g["data"], g["ctl"], g["fixed"], g["cfg"], n_steps=pipeline.START_STEPS))
        jax.block_until_ready(f(g["R"]))
        jax.effects_barrier()
    finally:
        mod._speculative_newton = real
    return len(calls)


if __name__ == "__main__":
    main()
