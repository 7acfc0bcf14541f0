"""The moment contraction's shapes: the gate's and the experts' weight rows in two dots or in one, in ONE process.

``em._moment_sweep`` contracts the gate's Newton rows (r of them) with the
gate design's product features and the experts' k rows ``tau * w`` with the
features of [X; y]; with a shared design the gate's features are rows of the
experts', so all r + k rows can go into one dot with the experts' features
(``JOINT_CONTRACTION_ROWS``).  For each (experts' features, gate's features,
r, k) this times 50 iterations under ``fori_loop`` of: rows written by a fusion
from the loop state (as the E-step writes them), then either the two dots or
the one (``moments.contract``, which pads 3 mod 4 rows), n points, one pinned
process, CPU time, minimum of ``--repeats``.  The shapes are those of k = 2…5
softmax experts with d = 2 (r = (k-1) + k(k-1)/2) and two wider designs.
Also times XLA's float64 ``exp`` against a Cody–Waite polynomial written in jnp.
Prints and writes ``results/contraction_shapes.json``.

    OPENBLAS_NUM_THREADS=1 python benchmarks/contraction_shapes.py --cpu 1
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

#: (experts' features, gate's features, gate rows r, experts' rows k)
SHAPES = [(10, 6, 2, 2), (10, 6, 5, 3), (10, 6, 9, 4), (10, 6, 14, 5), (15, 10, 5, 3), (21, 15, 5, 3),
          (28, 21, 5, 3)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=105880, help="points (default: the fitting bucket of n = 1e5)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    import jax
    import jax.numpy as jnp
    from jax import lax
    jax.config.update("jax_enable_x64", True)
    from moestat.fitting import moments

    n, iters = args.n, 50
    rng = np.random.default_rng(0)

    def looped(body, state):
        return jax.jit(lambda: lax.fori_loop(0, iters, body, (jnp.zeros(()), state))[0])

    def case(fe, fg, r, k, joint):
        Fe, Fg = jnp.asarray(rng.normal(size=(fe, n))), jnp.asarray(rng.normal(size=(fg, n)))
        R0 = jnp.asarray(rng.normal(size=(r + k, n)))

        def body(i, c):
            acc, R = c
            rows = R * (1 + 1e-12 * acc)          # depends on the loop state: not hoisted
            if joint:
                return acc + jnp.sum(moments.contract(rows, Fe)), R
            return acc + jnp.sum(moments.contract(rows[:r], Fg)) + jnp.sum(moments.contract(rows[r:], Fe)), R
        return looped(body, R0)

    def myexp(x):
        kk = jnp.round(x * 1.4426950408889634)
        t = x - kk * 0.6931471803691238 - kk * 1.9082149292705877e-10
        p = 1.0 / 39916800
        for c in (1 / 3628800, 1 / 362880, 1 / 40320, 1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.5, 1.0, 1.0):
            p = p * t + c
        return p * lax.bitcast_convert_type((kk.astype(jnp.int64) + 1023) << 52, jnp.float64)

    x0 = jnp.asarray(rng.uniform(-30, 0, 3 * n))

    def elementwise(f):
        return looped(lambda i, c: (c[0] + jnp.sum(f(c[1] + c[0] * 1e-300)), c[1]), x0)

    cases = {("contraction", s, j): case(*s, j) for s in SHAPES for j in (False, True)}
    cases.update({("elementwise", name, None): elementwise(f) for name, f in
                  (("xla exp", jnp.exp), ("polynomial exp", myexp), ("multiply-add", lambda v: v * 1.0001 + 0.5))})
    for f in cases.values():
        f().block_until_ready()
    best = {key: np.inf for key in cases}
    for _ in range(args.repeats):
        for key, f in cases.items():
            t0 = time.process_time()
            f().block_until_ready()
            best[key] = min(best[key], time.process_time() - t0)
    out = {"n": n, "iterations": iters, "load1": os.getloadavg()[0], "contraction": [], "elementwise": {}}
    print("n = %d, %d iterations, CPU ns per point and iteration (min of %d)" % (n, iters, args.repeats))
    for s in SHAPES:
        two, one = (best["contraction", s, j] / iters / n * 1e9 for j in (False, True))
        out["contraction"].append({"expert_features": s[0], "gate_features": s[1], "gate_rows": s[2],
                                   "expert_rows": s[3], "two_dots_ns": two, "one_dot_ns": one})
        print("features %2d / %2d, rows %2d + %d = %2d: two dots %6.2f  one dot %6.2f" % (s[0], s[1], s[2], s[3],
                                                                                          s[2] + s[3], two, one))
    for key, v in best.items():
        if key[0] == "elementwise":
            out["elementwise"][key[1]] = v / iters / x0.size * 1e9
            print("%-15s %.2f ns per element" % (key[1], out["elementwise"][key[1]]))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "contraction_shapes.json"), "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
