"""Where an EM iteration's time goes: E-step, gate M-step, expert M-step (softmax gate, Gaussian linear experts).

Times 30 iterations of each stage combination inside one compiled
``fori_loop`` (no dispatch overhead), k = 3, d = 2, float64, one core, and
reports ns per point (pinned to one CPU): E-step alone, E-step + gate Newton statistics, + the
gate's guard objective, + the experts' Gram statistics, + the whole gate
M-step, + the whole expert M-step, and the full iteration; then the whole
compiled EM loop (``em.fit_restarts``): the default (gate guard checked in the
next E-step, statistics from one contraction with the designs' product
features, ``em._moment_sweep``), the same with the direct products
(``em._direct_sweep``), and the in-step guard with its own pass.  Minimum over
repetitions of the process's CPU time (pinned to one core), interleaved so that a load change hits every
variant alike.

    OPENBLAS_NUM_THREADS=1 python benchmarks/em_breakdown.py [n ...]      # default 100000

Writes benchmarks/results/em_breakdown.csv.  Nothing is asserted.
"""
from __future__ import annotations

import csv
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import moestat as ms
from moestat.fitting import em, newton
from moestat._math import ksum
from moestat.data.design import make_data
from moestat.experts.gaussian import gram_stats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_em as bench  # noqa: E402  (the benchmark's model, data and start)
IT = 30


def setup(n):
    """Data, configuration, control and the benchmark's start (engineering.md's model, benchmarks/bench_em.py)."""
    _, Xd, y = bench.simulate(n)
    model = ms.GaussianMoE(bench.K)
    dat = make_data(Xd, Xd, y, np.ones(n))
    cfg = em.with_intercepts(model.config(max_iter=IT), Xd, Xd, np.ones(n))  # as a fit makes it
    ctl = model.control({"var_y": float(np.var(y))}, tol=-1.0)
    g0, c0, s0 = bench.start_params()
    p = em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(g0)),
                     ms.experts.GaussianParams(jnp.asarray(c0), jnp.asarray(s0)))
    return dat, cfg, ctl, p, em.no_fixed(p)


def stages(n):
    dat, cfg, ctl, p, fixed = setup(n)

    def e(p, d):
        return em._e_step(p, d, cfg)

    def s_estep(p, d):
        ll, tau, _, _, lg = e(p, d)
        return p, ll

    def s_stats(p, d):
        ll, tau, _, _, lg = e(p, d)
        g, H = newton.softmax_newton_stats(jnp.exp(lg), tau, d.w, d.Xg)
        return p, ll + g.sum() + H.sum() + jnp.dot(ksum(tau * lg), d.w)

    def s_guard(p, d):
        ll, tau, _, _, lg = e(p, d)
        return p, ll + newton.softmax_objective(p.gate.coef * 1.01, tau, d.w, d.Xg)

    def s_gram(p, d):
        ll, tau, _, _, lg = e(p, d)
        A, b, c, Nk = gram_stats(tau, d.w, d.X, d.y)
        return p, ll + A.sum() + b.sum() + c.sum() + Nk.sum()

    def s_gate(p, d):
        ll, tau, _, _, lg = e(p, d)
        return p._replace(gate=cfg.gate.m_step(p.gate, tau, d.Xg, d.w, ctl, cfg.max_halvings, fixed.gate,
                                               log_w=lg)), ll

    def s_expert(p, d):
        ll, tau, _, _, lg = e(p, d)
        return p._replace(expert=cfg.expert.m_step(p.expert, tau, d.X, d.y, d.w, ctl, cfg.max_halvings,
                                                   fixed.expert)), ll

    def s_full(p, d):
        ll, tau, _, _, lg = e(p, d)
        return em.m_step(p, tau, d, cfg, ctl, fixed, log_w=lg), ll

    named = [("E-step", s_estep), ("E + gate Newton statistics", s_stats), ("E + gate guard objective", s_guard),
             ("E + expert Gram statistics", s_gram), ("E + gate M-step", s_gate), ("E + expert M-step", s_expert),
             ("full iteration", s_full)]
    return p, dat, named


def looped(step):
    @jax.jit
    def run(p, d):
        def body(_, carry):
            p, acc = carry
            p2, v = step(p, d)
            # the same parameters every iteration (identical work), but the result is used
            p = jax.tree_util.tree_map(lambda a, b: a + 0.0 * b, p, p2)
            return p, acc + v
        return lax.fori_loop(0, IT, body, (p, jnp.zeros((), p.gate.coef.dtype)))
    return run


def em_loops(n):
    """The compiled EM loop (em.fit_restarts, 30 iterations) with the speculative and the in-step gate guard."""
    dat, cfg, ctl, p, fixed = setup(n)
    p0 = jax.tree_util.tree_map(lambda a: a[None], p)          # one start
    keys = jax.random.split(jax.random.PRNGKey(0), 1)
    speculative, use_moments = em._speculative, em._use_moments
    out = []
    never = (lambda a, b: False)
    try:
        for name, spec, mom in (("EM loop, moment statistics (default)", speculative, use_moments),
                                ("EM loop, direct statistics, guard in E", speculative, never),
                                ("EM loop, guard pass in the M-step", never, never)):
            em._speculative, em._use_moments = spec, mom
            jax.clear_caches()
            compiled = em.fit_restarts.lower(p0, dat, ctl, fixed, keys, cfg=cfg).compile()
            out.append((name, lambda c=compiled: c(p0, dat, ctl, fixed, keys)))
    finally:
        em._speculative, em._use_moments = speculative, use_moments
    return out


def main(argv):
    bench.one_core()
    sizes = [int(a) for a in argv] or [100_000]
    rows = []
    for n in sizes:
        p, dat, named = stages(n)
        fns = [(name, (lambda f=looped(s): f(p, dat))) for name, s in named] + em_loops(n)
        for _, f in fns:
            jax.block_until_ready(f())
        best = {name: np.inf for name, _ in fns}
        for _ in range(8):
            for name, f in fns:
                t0 = time.process_time()
                jax.block_until_ready(f())
                best[name] = min(best[name], (time.process_time() - t0) / (IT * n) * 1e9)
        for name, _ in fns:
            rows.append({"n": n, "padded_n": int(dat.w.shape[0]), "stage": name, "ns_per_point": round(best[name], 1)})
            print("%9d  %-40s %7.1f ns/point" % (n, name, best[name]))
    out = os.path.join(HERE, "results", "em_breakdown.csv")
    with open(out, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1:])
