"""Two ways to fewer data passes in the EM loop, against the rows + dots of ``em._moment_sweep`` (k = 3, d = 2).

A micro-benchmark of the loop body (50 iterations under ``fori_loop``, one
pinned process, CPU time, min and median of 7): the E-step, the gate's 5
Newton rows and the experts' 3 rows, contracted with the product features of
``moestat.fitting.moments`` -- (1) as written in ``em`` (rows, then dots),
(2) all 62 statistics as one variadic ``lax.reduce`` over the points, (3) the
two per-point sums as ``jnp.sum(w * x)`` instead of ``jnp.dot``.  The
parameter update is a tiny fake move so the loop cannot be hoisted; not an
EM.  Also checks whether XLA:CPU puts two consumers of one ``exp`` into one
multi-output fusion.  Prints and writes ``results/kernel_passes.json``.

    OPENBLAS_NUM_THREADS=1 taskset -c 1 python benchmarks/kernel_passes.py 100000
"""
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)
from moestat._math import kmax, ksum, log_positive  # noqa: E402
from moestat.fitting import moments  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def multi_output_fusion() -> bool:
    """Does a two-output program whose outputs share exp(x) compute the exp inside one fusion?"""
    def f(x, y):
        e = jnp.exp(x)
        return e * 2 + y, jnp.sin(e) * y
    x = jnp.ones(100000)
    txt = jax.jit(f).lower(x, x).compile().as_text()
    return "wrapped_exponential" not in txt


n = int(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else 100000
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (2, n)); X = np.vstack([np.ones(n), x]); y = rng.normal(size=n); w = np.ones(n)
X, y, w = map(jnp.asarray, (X, y, w))
G0 = jnp.asarray([[0., 0, 0], [0.3, 1.0, -0.5], [-0.2, 0.4, 0.8]])
B0 = jnp.asarray([[0.1, 1.0, 0.2], [-0.5, 0.3, 0.9], [0.4, -0.7, 0.1]])
S0 = jnp.asarray([0.5, 0.8, 1.2])
Fg = moments.features(X, True)                       # (6, N)
Fe = moments.features(jnp.concatenate([X, y[None]]), True)   # (10, N)

def estep(G, B, S):
    eta = G @ X
    mg = kmax(eta); eg = jnp.exp(eta - mg[None]); sg = ksum(eg)
    lse_g = mg + log_positive(sg); probs = eg / sg[None]
    mu = B @ X
    lf = -0.5 * jnp.log(2 * jnp.pi * S)[:, None] - 0.5 / S[:, None] * (y[None] - mu) ** 2
    lj = eta + lf
    m = kmax(lj); e = jnp.exp(lj - m[None]); s = ksum(e)
    ll = m + log_positive(s) - lse_g
    tau = e / s[None]
    return probs, tau, ll, lse_g

def rows_of(probs, tau):
    pf = probs[1:]; wp = pf * w
    grad = w * (tau[1:] - pf)
    curv = [wp[0] * (1 - pf[0]), wp[0] * (-pf[1]), wp[1] * (1 - pf[1])]
    return jnp.concatenate([grad, jnp.stack(curv)]), tau * w

def update(G, B, S, Mg, Me, ll, lse):
    # cheap fake update so that the loop cannot be hoisted: small moves from the statistics
    eps = 1e-9
    G = G.at[1:].add(eps * Mg[:2, :3])
    B = B + eps * Me[:, :3]
    S = S * (1 + eps * jnp.tanh(ll + lse))
    return G, B, S

def step_dots(c):
    G, B, S, acc = c
    probs, tau, ll, lse = estep(G, B, S)
    rg, re = rows_of(probs, tau)
    Mg = moments.contract(rg, Fg); Me = moments.contract(re, Fe)
    lls, lses = jnp.dot(ll, w), jnp.dot(lse, w)
    G, B, S = update(G, B, S, Mg, Me, lls, lses)
    return G, B, S, acc + lls

def step_reduce(c):
    G, B, S, acc = c
    probs, tau, ll, lse = estep(G, B, S)
    rg, re = rows_of(probs, tau)
    ops = [rg[r] * Fg[f] for r in range(5) for f in range(6)] + [re[r] * Fe[f] for r in range(3) for f in range(10)]
    ops += [ll * w, lse * w]
    z = [jnp.zeros((), jnp.float64)] * len(ops)
    out = lax.reduce(ops, z, lambda a, b: tuple(u + v for u, v in zip(a, b)), (0,))
    Mg = jnp.stack(out[:30]).reshape(5, 6); Me = jnp.stack(out[30:60]).reshape(3, 10)
    lls, lses = out[60], out[61]
    G, B, S = update(G, B, S, Mg, Me, lls, lses)
    return G, B, S, acc + lls

def make(step, iters=50):
    @jax.jit
    def run(G, B, S):
        return lax.fori_loop(0, iters, lambda i, c: step(c), (G, B, S, jnp.zeros(())))
    return run

def step_sum(c):
    G, B, S, acc = c
    probs, tau, ll, lse = estep(G, B, S)
    rg, re = rows_of(probs, tau)
    Mg = moments.contract(rg, Fg); Me = moments.contract(re, Fe)
    lls, lses = jnp.sum(ll * w), jnp.sum(lse * w)
    G, B, S = update(G, B, S, Mg, Me, lls, lses)
    return G, B, S, acc + lls

fs = {"rows + dots": make(step_dots), "variadic reduce": make(step_reduce), "jnp.sum(w * l)": make(step_sum)}
for k, f in fs.items():
    out = f(G0, B0, S0); jax.block_until_ready(out)
    print(k, "ll sum", float(out[3]))
res = {k: [] for k in fs}
for rep in range(7):
    for k, f in fs.items():
        t = time.process_time(); jax.block_until_ready(f(G0, B0, S0)); res[k].append(time.process_time() - t)
out = {"n": n, "load1": os.getloadavg()[0], "multi_output_fusion": multi_output_fusion()}
for k, v in res.items():
    out[k] = {"min_ns": min(v) / 50 / n * 1e9, "median_ns": float(np.median(v)) / 50 / n * 1e9}
    print("%-16s CPU ns per point per iteration: min %.1f, median %.1f" % (k, out[k]["min_ns"], out[k]["median_ns"]))
print("XLA:CPU fuses a shared exp into a multi-output fusion:", out["multi_output_fusion"])
os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
with open(os.path.join(HERE, "results", "kernel_passes.json"), "w") as fh:
    json.dump(out, fh, indent=1)
