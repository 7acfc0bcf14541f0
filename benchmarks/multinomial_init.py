"""Which initialisation finds the MLE of a multinomial-logistic MoE on hard designs?

For each design and simulated data set, the reference is the maximum that
direct optimisation (SciPy BFGS + trust-exact, ``tests/references/direct.py``)
finds when started at the truth.  Every strategy fits the data with 10 full EM
runs; a strategy *reaches* the MLE when its log-likelihood is within 1e-4 of
the reference or above it ("above" counts data sets where EM found a higher
maximum than the truth-started optimisation); "best known" counts the data
sets where it is within 1e-4 of the highest maximum any method found.

Strategies
    restarts      core default: k-means / random-centre partitions of [x, one-hot y]
    kmeans        k-means of [x, one-hot y] from 10 seeds
    random        random hard labels (flexmix's default)
    cem           10 short CEM runs (50 iterations) from the restarts above, EM from the best
    nogate        fit the mixture with an intercept-only gate first, then EM from it with the full gate
    gate_voronoi  random Voronoi partitions of the gate covariates (no screening)
    screened      MultinomialMoE default: 40 candidates (k-means of the gate covariates and of
                  [x, one-hot y], random Voronoi cells, half in the gate covariates and half in
                  [x, one-hot y]), short EM each (relative tol 1e-4), the 10 best distinct ones
                  (MAP partitions agreeing on < 99 % of the points) continue to full EM

Run:  OPENBLAS_NUM_THREADS=1 python benchmarks/multinomial_init.py [n_reps] [designs]
Writes benchmarks/results/multinomial_init.json and prints a table.
"""
from __future__ import annotations

import json
import os
import sys
import time
import warnings

import numpy as np

import moestat as ms
from moestat.fitting.em import MoEParams
from moestat.gating.softmax import SoftmaxParams
from moestat.fitting.screen import candidate_responsibilities, gate_features
from moestat.truths import multinomial_regimes as mr
import _references  # noqa: F401  (tests/ on sys.path)
from references.direct import direct_mle

DESIGNS = {
    # the validation design of the tests (steep gate 15 x1 - 8 x2)
    "steep": (mr.STEEP_GATE, mr.STEEP_EXPERTS),
    # a design with many local maxima (gate -2 + 8 x1 + 4 x2, experts with opposite slopes)
    "local": (np.array([[0.0, 0, 0], [-2.0, 8.0, 4.0]]),
              np.array([[[0.0, 0, 0], [1.0, 2.0, -1.0], [-1.0, -2.0, 1.0]],
                        [[0.0, 0, 0], [-0.5, -2.0, 1.0], [0.5, 1.5, -1.5]]])),
}
STRATEGIES = ("restarts", "kmeans", "random", "cem", "nogate", "gate_voronoi", "screened")
N, N_INIT = 2000, 10


class _GateVoronoi(ms.MultinomialMoE):
    """Random Voronoi partitions of the gate covariates as plain restarts (screening's candidates, unscreened)."""

    def _starts(self, init, design, dat, base, ctl, fixed, cfg, n_init, seed, bs):
        from moestat.fitting import em
        from moestat._jax import to_device
        Fe = self.expert.init_features(design.X, design.y)
        R = candidate_responsibilities(gate_features(design.Xg), Fe, design.w, self.n_experts, n_init, seed,
                                       expert_share=0.0)
        R = np.pad(R, ((0, 0), (0, 0), (0, dat.w.shape[0] - design.n)), constant_values=1.0 / self.n_experts)
        em1 = em.EMConfig(gate=cfg.gate, expert=cfg.expert, k=cfg.k, max_iter=1, algorithm="em")
        return em.params_from_resp(to_device(R), base, dat, ctl, fixed, em1, batch_size=bs)


def fit(strategy, x, y):
    k = 2
    if strategy == "screened":
        return ms.MultinomialMoE(k).fit(x, y, n_init=N_INIT)
    plain = ms.MultinomialMoE(k, screen=1)
    if strategy == "restarts":
        return plain.fit(x, y, n_init=N_INIT)
    if strategy in ("kmeans", "random"):
        return plain.fit(x, y, n_init=N_INIT, init=strategy)
    if strategy == "cem":
        rc = plain.fit(x, y, n_init=N_INIT, algorithm="cem", max_iter=50, polish=False)
        return plain.fit(x, y, init=rc)
    if strategy == "nogate":
        r0 = plain.fit(x, y, gate_X=np.zeros((len(y), 0)), n_init=N_INIT)
        gc = np.zeros((k, x.shape[1] + 1))
        gc[:, 0] = r0.params_tree.gate.coef[:, 0]
        return plain.fit(x, y, init=MoEParams(gate=SoftmaxParams(coef=gc), expert=r0.params_tree.expert))
    if strategy == "gate_voronoi":
        return _GateVoronoi(k).fit(x, y, n_init=N_INIT)
    raise ValueError(strategy)


def main(n_reps=20, designs=("steep", "local")):
    warnings.simplefilter("ignore")
    out = {"n": N, "n_init": N_INIT, "reps": n_reps, "designs": {}}
    for name in designs:
        G, A = DESIGNS[name]
        rows = []
        for r in range(n_reps):
            x, y, _ = mr.simulate_multinomial(N, G, A, seed=[2024, N, r])
            X = np.column_stack([np.ones(N), x])
            ref = direct_mle(X, X, y, G, A)[0]
            row = {"rep": r, "ref": ref}
            for s in STRATEGIES:
                fit(s, x, y) if r == 0 else None            # compile outside the timing
                t = time.perf_counter()
                res = fit(s, x, y)
                row[s] = {"loglik": res.loglik, "diff": res.loglik - ref, "seconds": time.perf_counter() - t,
                          "n_iter": int(res.n_iter)}
            rows.append(row)
            print("%s rep %2d ref %.4f  " % (name, r, ref)
                  + "  ".join("%s %+.1e" % (s, row[s]["diff"]) for s in STRATEGIES), flush=True)
        summary = {}
        best = np.array([max([row["ref"]] + [row[s]["loglik"] for s in STRATEGIES]) for row in rows])
        for s in STRATEGIES:
            d = np.array([row[s]["diff"] for row in rows])
            ll = np.array([row[s]["loglik"] for row in rows])
            t = np.array([row[s]["seconds"] for row in rows])
            summary[s] = {"reached": int((d >= -1e-4).sum()), "above_ref": int((d > 1e-4).sum()),
                          "reached_best": int((ll >= best - 1e-4).sum()),
                          "worst_gap": float(d.min()), "median_seconds": float(np.median(t)),
                          "max_seconds": float(t.max())}
        out["designs"][name] = {"summary": summary, "rows": rows}
        print("\n%s design, %d data sets, n = %d, %d full EM runs per fit" % (name, n_reps, N, N_INIT))
        print("%-13s %8s %10s %11s %12s %10s %10s" % ("strategy", "reached", "above ref", "best known", "worst gap",
                                                     "median s", "max s"))
        for s, v in summary.items():
            print("%-13s %5d/%-2d %10d %8d/%-2d %12.3g %10.2f %10.2f"
                  % (s, v["reached"], n_reps, v["above_ref"], v["reached_best"], n_reps, v["worst_gap"],
                     v["median_seconds"], v["max_seconds"]))
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "multinomial_init.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20,
         tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ("steep", "local"))
