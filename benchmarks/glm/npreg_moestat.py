"""moestat's Poisson and binomial mixtures of experts on flexmix's NPreg data, beside flexmix's numbers.

Fits the two models of ``flexmix_npreg_glm.R`` (k = 2, x in the experts and the softmax
gate) with ``n_init`` starts, prints moestat's and flexmix's log-likelihoods and writes
them to ``benchmarks/glm/npreg_moestat.json``.  Wall times are of a fresh process (compilation
included) on a shared 2-core machine and move a lot between runs.

Usage (from the repository root):
    PYTHONPATH=$PWD python benchmarks/glm/npreg_moestat.py [n_init]
"""
from __future__ import annotations

import json
import pathlib
import sys
import time
import warnings

import moestat as ms

HERE = pathlib.Path(__file__).resolve().parent
MODELS = {"poisson": "yp ~ x", "binomial": "cbind(yb, 1 - yb) ~ x"}


def main(n_init: int = 10) -> dict:
    df = ms.datasets.load_npreg()
    flexmix = json.loads((HERE / "flexmix_npreg_glm.json").read_text())["models"]
    out = {"n_init": n_init, "models": {}}
    for family, formula in MODELS.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            res = ms.GLMMoE(2, family=family).fit(formula, data=df, n_init=n_init)
        wall = time.perf_counter() - t0
        fx = max(flexmix[family]["default"]["loglik_best"], flexmix[family]["tight"]["loglik_best"])
        row = {"loglik": res.loglik, "flexmix_best": fx,
               "flexmix_default_best": flexmix[family]["default"]["loglik_best"],
               "difference": res.loglik - fx, "converged": res.converged, "n_iter": res.n_iter,
               "n_polish": res.n_polish, "wall_s": round(wall, 2),
               "coef": res.params_tree.expert.coef.tolist(), "gate": res.params_tree.gate.coef.tolist(),
               "warnings": [str(w.message) for w in rec]}
        out["models"][family] = row
        print("%-8s moestat %.6f  flexmix best %.6f  (default control %.6f)  diff %+.2e  %.1f s"
              % (family, res.loglik, fx, row["flexmix_default_best"], row["difference"], wall))
    (HERE / "npreg_moestat.json").write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
