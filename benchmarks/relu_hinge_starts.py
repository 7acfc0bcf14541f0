"""The ReLU experts' hinge kink search (``ReLUExpert(hinge_candidates=16)``): how often one start reaches the truth,
and what it costs per EM iteration.

    OPENBLAS_NUM_THREADS=1 taskset -c 1 python benchmarks/relu_hinge_starts.py [n_datasets]

Study: two ReLU experts under a softmax gate, kinks, directions and outer weights drawn at random per data set,
x ~ U(-3, 3), n = 1000, one default start, polish off; a fit "reaches the truth" when its log-likelihood is at
least the true parameters' on the same data.  Timing: the shared + routed ReLU truth of tests/_truths.py,
4 starts, median of 3 fits after a compile run, n = 1e3 and 3e4.  Writes benchmarks/results/relu_hinge_starts.json.
"""
from __future__ import annotations

import json
import os
import sys
import time
import warnings

import numpy as np

import moestat as ms
from moestat.fitting import em
from moestat.truths.truth import TrueModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
VARIANTS = {"off": 0, "hinge 16": 16}


def study(n_sets: int) -> dict:
    out = {}
    for label, h in VARIANTS.items():
        model = ms.GaussianMoE(2, expert=ms.experts.ReLUExpert(hinge_candidates=h))
        margins, t0 = [], time.perf_counter()
        for rep in range(n_sets):
            r = np.random.default_rng(1000 + rep)
            c, s = r.uniform(-2, 2, 2), r.choice([-1.0, 1.0], 2)
            b = r.uniform(1, 3, 2) * r.choice([-1, 1], 2)
            P = em.MoEParams(gate=ms.gating.SoftmaxParams(coef=np.array([[0.0, 0.0], [r.uniform(-1, 1), 2.0]])),
                             expert=ms.experts.NeuronParams(coef=np.column_stack([-s * c, s]), scale=b,
                                                            sigma2=np.array([0.1, 0.1])))
            T = TrueModel(name="k2", model=model, params=P, x_law={"law": "uniform", "low": -3.0, "high": 3.0, "d": 1})
            x, y, _ = T.simulate(1000, seed=[rep])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ms.MoEWarning)
                res = model.fit(x, y, n_init=1, polish=False)
            margins.append(float(res.loglik - T.loglik(x, y)))
        reached = int(np.sum(np.asarray(margins) >= 0))
        out[label] = {"reached": reached, "n_sets": n_sets, "seconds": time.perf_counter() - t0, "margins": margins}
        print("%-9s one start reaches the truth in %d/%d data sets (%.1f s incl. compile)"
              % (label, reached, n_sets, out[label]["seconds"]), flush=True)
    return out


def timing() -> dict:
    import dataclasses
    from _truths import n_experts, truth
    out = {}
    for n in (1000, 30000):
        for label, h in VARIANTS.items():
            T = truth("shared_routed", "relu", n_experts("shared_routed"))
            T.model.expert = dataclasses.replace(T.model.expert, hinge_candidates=h)
            x, y, _ = T.simulate(n, seed=[11, n])
            ts = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ms.MoEWarning)
                T.model.fit(x, y, n_init=4, polish=False)        # compile
                for _ in range(3):
                    t0 = time.perf_counter()
                    res = T.model.fit(x, y, n_init=4, polish=False)
                    ts.append(time.perf_counter() - t0)
            its = int(res.restarts["n_iter"].sum())
            key = "n=%d %s" % (n, label)
            out[key] = {"fit_seconds": float(np.median(ts)), "iterations": its,
                        "ms_per_iteration": 1e3 * float(np.median(ts)) / its}
            print("shared_routed x ReLU, %s: fit (4 starts) %.3f s, %d EM iterations, %.2f ms/iteration"
                  % (key, out[key]["fit_seconds"], its, out[key]["ms_per_iteration"]), flush=True)
    return out


if __name__ == "__main__":
    n_sets = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    result = {"study": study(n_sets), "timing": timing()}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "relu_hinge_starts.json"), "w") as fh:
        json.dump(result, fh, indent=1)
