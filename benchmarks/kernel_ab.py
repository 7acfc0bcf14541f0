"""EM kernel before/after in ONE process: this checkout's EM loop against another checkout's ``em.py``.

On a shared machine two processes timed minutes apart see different loads (the
same code measured 62-94 ns per point per iteration at n = 1e5 within an hour),
so a kernel change is judged here by timing both loops interleaved in one
pinned process, CPU time, minimum over repetitions.  The other checkout's
``moestat/fitting/em.py`` is executed as a module next to this checkout's
package (it uses this checkout's gates, experts and helpers, so it is a
before/after of the EM loop module); ``--base-max-columns`` sets
``moments.MAX_COLUMNS`` while the old loop is traced (8 before the product
features were used for wider designs).  Data, model and start are
``bench_em.py``'s for k = 3, d = 2, otherwise a random softmax-gated design
(seed 1).  Both loops run ``--iters`` iterations (tolerance -1); the
log-likelihood traces are compared.  Nothing is asserted or written.

    git archive da80ea5 moestat | tar -x -C /tmp/kernel_base
    OPENBLAS_NUM_THREADS=1 python benchmarks/kernel_ab.py /tmp/kernel_base --n 100000 --k 3 --d 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def data(n, k, d):
    """(design with intercept, y, start gate, start coefficients, start variances)."""
    import bench_em as bench
    if (k, d) == (bench.K, bench.D):
        _, Xd, y = bench.simulate(n)
        return (Xd, y) + bench.start_params()
    rng = np.random.default_rng(1)
    Xd = np.column_stack([np.ones(n), rng.normal(size=(n, d))])
    G = rng.normal(size=(k, d + 1))
    G[0] = 0
    C = rng.normal(size=(k, d + 1)) * 2
    eta = Xd @ G.T
    p = np.exp(eta - eta.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    z = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    y = (Xd * C[z]).sum(1) + 0.5 * rng.normal(size=n)
    return Xd, y, G * 0.7, C * 0.8 + 0.1, np.full(k, 0.5)


def load_base(em, path):
    """The other checkout's em.py as module ``moestat.fitting.em_base`` (this package's siblings)."""
    src = open(os.path.join(path, "moestat", "fitting", "em.py")).read()
    src = src.replace('@stored_jit(static_argnames=("cfg",))', "")
    mod = types.ModuleType("moestat.fitting.em_base")
    mod.__package__ = "moestat.fitting"
    sys.modules[mod.__name__] = mod
    exec(compile(src, mod.__name__, "exec"), mod.__dict__)
    # the PyTree containers must be the ones the call passes
    mod.MoEParams, mod.EMControl, mod.FitResult = em.MoEParams, em.EMControl, em.FitResult
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="root of the other checkout (holds moestat/fitting/em.py)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--d", type=int, default=2)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--base-max-columns", type=int, default=8)
    ap.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the first allowed)")
    args = ap.parse_args(argv)
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {allowed[0] if args.cpu is None else args.cpu})
    import jax
    import jax.numpy as jnp
    from threadpoolctl import threadpool_limits

    import moestat as ms
    from moestat.data.design import make_data
    from moestat.fitting import em, moments

    base = load_base(em, args.base)
    n, k = args.n, args.k
    Xd, y, g0, c0, s0 = data(n, k, args.d)
    model = ms.GaussianMoE(k)
    dat = make_data(Xd, Xd, y, np.ones(n))
    ctl = model.control({"var_y": float(np.var(y))}, tol=-1.0)
    p0 = em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(g0)[None]),
                      ms.experts.GaussianParams(jnp.asarray(c0)[None], jnp.asarray(s0)[None]))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    keys = jax.random.split(jax.random.PRNGKey(0), 1)
    cfg = model.config(max_iter=args.iters)
    runs, cols = {}, moments.MAX_COLUMNS
    with threadpool_limits(1):
        # each loop gets the configuration a fit of its checkout makes for these data (e.g. the intercept
        # flags, where its em.py has them; the EMConfig class is this checkout's)
        cfgs = {name: mod.with_intercepts(cfg, Xd, Xd, np.ones(n)) if hasattr(mod, "with_intercepts") else cfg
                for name, mod in (("before", base), ("after", em))}
        for name, fn, max_cols in (("before", base.fit_restarts, args.base_max_columns),
                                   ("after", em.fit_restarts, cols)):
            moments.MAX_COLUMNS = max_cols       # read while tracing
            try:
                runs[name] = (fn, jax.block_until_ready(fn(p0, dat, ctl, fixed, keys, cfgs[name])))
            finally:
                moments.MAX_COLUMNS = cols
        best = {name: np.inf for name in runs}
        for _ in range(args.repeats):
            for name, (fn, _) in runs.items():
                t0 = time.process_time()
                jax.block_until_ready(fn(p0, dat, ctl, fixed, keys, cfgs[name]))
                best[name] = min(best[name], (time.process_time() - t0) / (n * args.iters) * 1e9)
    tb = np.asarray(runs["before"][1].trace[0])
    print("n = %d, k = %d, d = %d, padded %d, %d iterations, load average %s"
          % (n, k, args.d, dat.w.shape[0], args.iters, " ".join("%.2f" % v for v in os.getloadavg())))
    for name, (_, res) in runs.items():
        t = np.asarray(res.trace[0])
        print("%-7s %8.1f CPU ns/point/iteration   max rel. log-likelihood difference to before %.1e   "
              "smallest relative step %.1e" % (name, best[name], np.max(np.abs(t - tb) / np.abs(tb)),
                                               np.min(np.diff(t) / np.abs(t[1:]))))
    print("after / before: %.2f" % (best["after"] / best["before"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
