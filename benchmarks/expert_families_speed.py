"""EM cost per point and iteration for the expert/gate families of the experts branch (CPU, float64).

For each model: simulate n points, build the padded data, run exactly
``iters`` EM iterations from one start (tol = 0) twice, and report the second
(compiled) run in ns per point per iteration (pinned to one CPU), plus the compile+first-run time.
Writes ``benchmarks/results/expert_families_speed.csv``.

Usage: OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/expert_families_speed.py [--n 100000] [--iters 50]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import moestat as ms  # noqa: E402
from moestat.fitting import em, pipeline  # noqa: E402
from moestat.data.design import make_data  # noqa: E402
from _truths import truth  # noqa: E402

MODELS = {
    "softmax x linear": ("softmax", "linear", "linear", 2),
    "softmax x relu": ("softmax", "relu", "relu", 2),
    "softmax x gelu": ("softmax", "gelu", "relu", 2),
    "softmax x poly2": ("softmax", ms.experts.GaussianPolynomial(degree=2), "linear", 2),
    "gaussian x linear": ("gaussian", "linear", "linear", 2),
    "gaussian x relu": ("gaussian", "relu", "relu", 2),
    "shared_routed x linear (1+2)": ("shared_routed", "linear", "linear", 3),
    "shared_routed x stacked relu+relu(bias=False) (1+2)":
        ("shared_routed", ms.experts.Stacked((("relu", 1), (ms.experts.ReLUExpert(bias=False), 2))), "relu", 3),
}


def main():
    from bench_em import one_core
    one_core()      # one core's figure, like bench_em.py
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--iters", type=int, default=50)
    a = ap.parse_args()
    rows = []
    for name, (g, e, te, k) in MODELS.items():
        T = truth(g, te, k)
        x, y, _ = T.simulate(a.n, seed=[5])
        model = ms.GaussianMoE(k, gating=T.model.gate, expert=e)
        d = model.design(x, y)
        info = model.expert.prepare(d.y, d.w)
        info["n_total"] = float(d.w.sum())
        dat = make_data(d.X, d.Xg, d.y, d.w)
        cfg = model.config(max_iter=a.iters)
        ctl = model.control(info, tol=0.0)
        base = model.base_params(d.X.shape[1], d.Xg.shape[1], info)
        fixed = em.no_fixed(base)
        R = pipeline.start_responsibilities(model.gate, model.expert, d.X, d.y, d.w, k, 1, 0)
        p0 = em.params_from_resp(jax.numpy.asarray(pipeline.pad_responsibilities(R, dat.w.shape[0])), base, dat,
                                 ctl, fixed, pipeline.start_config(cfg))
        keys = jax.random.split(jax.random.PRNGKey(0), 1)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            out = jax.block_until_ready(em.fit_restarts(p0, dat, ctl, fixed, keys, cfg))
            times.append(time.perf_counter() - t0)
        it = int(out.n_iter[0])
        rows.append(dict(model=name, n=a.n, N=int(dat.w.shape[0]), iters=it, first_s=times[0], run_s=times[1],
                         ns_per_point_iter=1e9 * times[1] / (it * dat.w.shape[0])))
        print("%-52s iters=%d first=%.2fs run=%.3fs  %.0f ns/point/iter" % (
            name, it, times[0], times[1], rows[-1]["ns_per_point_iter"]), flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    pd.DataFrame(rows).to_csv(os.path.join(HERE, "results", "expert_families_speed.csv"), index=False)


if __name__ == "__main__":
    main()
