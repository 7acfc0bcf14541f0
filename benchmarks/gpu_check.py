"""GPU check: the default fit on the accelerator reaches the reference MLE, and the EM kernel's speed there.

    PYTHONPATH=. python benchmarks/gpu_check.py [OUT_DIR]

Prints the JAX backend, fits sim_moe2 (log-likelihood against the reference MLE), runs the kernel
benchmark (benchmarks/bench_em.py: ns per point per iteration, JAX on the default device vs NumPy) at
n = 1e5 and 1e6, a vmapped batch of 32 replicate fits (the Monte Carlo harness's GPU path,
em.fit_replicates with batch_size = 32) against one-by-one fits, the default ``GaussianMoE(3).fit`` at
n = 1e5 (wall time of the first call and of two more), and one
Monte Carlo size bucket of ``deepseek-thm1`` / ``gaussian-gated-m1`` fitted replicate by replicate
(``worker.fit_replicate_cpu``, what a pool worker does) and as one vmapped block
(``worker.fit_block_batched``, what ``moestat reproduce --batch auto`` does on a GPU): wall seconds per
replicate after a compiling call.  Writes gpu_check.json after every part (a part that fails is recorded
and the rest still runs).
"""
import json
import os
import sys
import time

import numpy as np


def main(out_dir="."):
    import jax
    import jax.numpy as jnp

    import moestat as ms
    import bench_em as bench
    from moestat.fitting import em
    from moestat.data.design import make_data

    rep = {"jax": jax.__version__, "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}
    print(rep, flush=True)
    df = ms.datasets.load_sim_moe2()
    t0 = time.perf_counter()
    res = ms.GaussianMoE(2).fit("y ~ x", data=df)
    ref = ms.datasets.sim_moe2_reference()["mle"]["loglik"]
    rep["sim_moe2"] = {"loglik": res.loglik, "reference": ref, "diff": res.loglik - ref,
                       "seconds_incl_compile": time.perf_counter() - t0}
    print("sim_moe2 loglik %.10f reference %.10f diff %.2e" % (res.loglik, ref, res.loglik - ref), flush=True)
    rows = []
    for n in (100_000, 1_000_000):
        _, Xd, y = bench.simulate(n)
        j = bench.time_jax(Xd, y, 50)
        rows.append({"n": n, "jax_ns_per_point_iter": j["ns_per_point_iter"], "compile_s": j["compile_s"]})
        print("n=%d jax %.2f ns/point/iter (compile %.1f s)" % (n, j["ns_per_point_iter"], j["compile_s"]), flush=True)
    rep["bench"] = rows
    # vmapped replicates (32 data sets of n = 1e5) vs one at a time
    R, n = 32, 100_000
    model = ms.GaussianMoE(bench.K)
    datas = []
    for r in range(R):
        _, Xd, y = bench.simulate(n, seed=r)
        datas.append(make_data(Xd, Xd, y, np.ones(n)))
    dat = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *datas)
    cfg = model.config(max_iter=50)
    ctl = model.control({"var_y": 1.0}, tol=-1.0)
    g0, c0, s0 = bench.start_params()
    p = em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(g0)), ms.experts.GaussianParams(jnp.asarray(c0), jnp.asarray(s0)))
    p0 = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (R,) + a.shape), p)
    fixed = em.no_fixed(p)
    keys = jax.random.split(jax.random.PRNGKey(0), R)
    out = {}
    for bs in (1, R):
        f = lambda: em.fit_replicates(p0, dat, ctl, fixed, keys, cfg, batch_size=bs)
        jax.block_until_ready(f())
        t0 = time.perf_counter()
        o = jax.block_until_ready(f())
        dt = time.perf_counter() - t0
        out[bs] = o
        rep["replicates_batch_%d" % bs] = {"seconds": dt, "ns_per_point_iter": dt / (R * n * 50) * 1e9}
        print("R=%d n=%d batch_size=%d: %.3f s, %.2f ns/point/iter" % (R, n, bs, dt, dt / (R * n * 50) * 1e9), flush=True)
    rep["batch_max_rel_loglik_diff"] = float(np.max(np.abs(np.asarray(out[1].loglik) - np.asarray(out[R].loglik))
                                                  / np.abs(np.asarray(out[1].loglik))))
    print("vmapped vs one-by-one max rel loglik diff %.2e" % rep["batch_max_rel_loglik_diff"], flush=True)
    _save(rep, out_dir)
    for part in (default_fit, mc_bucket):
        try:
            part(rep)
        except Exception as exc:  # record and go on: the device lease is short
            rep[part.__name__ + "_error"] = repr(exc)
            print(part.__name__, "failed:", repr(exc), flush=True)
        _save(rep, out_dir)


def _save(rep, out_dir):
    with open(os.path.join(out_dir, "gpu_check.json"), "w") as fh:
        json.dump(rep, fh, indent=1, default=float)


def default_fit(rep, n=100_000):
    """The default fit (10 starts, screening, EM, polish) at n = 1e5, k = 3, d = 2: first call and warm calls."""
    import moestat as ms
    import bench_em as bench
    X, _, y = bench.simulate(n)
    out = {"n": n}
    for key in ("first_s", "second_s", "third_s"):
        t0 = time.perf_counter()
        res = ms.GaussianMoE(bench.K).fit(X, y)
        out[key] = time.perf_counter() - t0
    out["loglik"] = res.loglik
    out["em_iterations"] = int(res.n_iter)
    rep["default_fit"] = out
    print("default fit n=%d: first %.2f s, warm %.2f / %.2f s, %d EM iterations, loglik %.4f"
          % (n, out["first_s"], out["second_s"], out["third_s"], out["em_iterations"], res.loglik), flush=True)


def mc_bucket(rep, specs=("deepseek-thm1", "gaussian-gated-m1"), sizes=(1000, 100_000), R=40, R_one=6):
    """One size bucket of R replicates: one by one against one vmapped block, wall seconds per replicate."""
    import jax
    from moestat.montecarlo import load_spec
    from moestat.montecarlo.worker import experiment_for, fit_block_batched, fit_replicate_cpu
    rows = rep.setdefault("mc_bucket", [])
    for name in specs:
        exp = experiment_for(load_spec(name).raw)
        for n in sizes:
            row = {"spec": name, "n": n, "replicates": R}
            lls = {}
            paths = (("one_by_one", lambda rr: [fit_replicate_cpu(exp, n, r) for r in rr]),
                     ("vmap_block", lambda rr: fit_block_batched(exp, n, rr)[0]))
            for path, fn in paths:
                m = R if path == "vmap_block" else R_one             # a block's batch is part of its program
                t0 = time.perf_counter()
                fn(list(range(1000, 1000 + (m if path == "vmap_block" else 1))))   # compiles this path's programs
                row[path + "_first_s"] = time.perf_counter() - t0
                reps = list(range(m))
                t0 = time.perf_counter()
                ests = fn(reps)
                jax.block_until_ready(ests[-1].fit.params)
                row[path + "_s_per_rep"] = (time.perf_counter() - t0) / len(reps)
                lls[path] = np.array([float(np.asarray(e.runs.loglik)[e.best]) for e in ests])
            m = min(len(lls["one_by_one"]), len(lls["vmap_block"]))
            row["max_dloglik"] = float(np.max(np.abs(lls["one_by_one"][:m] - lls["vmap_block"][:m])))
            row["speedup"] = row["one_by_one_s_per_rep"] / row["vmap_block_s_per_rep"]
            rows.append(row)
            print(json.dumps(row, default=float), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
