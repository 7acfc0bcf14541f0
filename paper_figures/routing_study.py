"""Router dynamics and balance of fitted DeepSeekMoE models (a statistical analogue of arXiv:2505.10860, App. H),
and the M6-T capacity question: does dropping overflow points bias or slow estimation?

Run from the repository root:

    PYTHONPATH=$PWD OPENBLAS_NUM_THREADS=1 python paper_figures/routing_study.py

Writes ``paper_figures/routing-study.png``, ``routing-study.csv`` (router statistics per model and n),
``routing-capacity.csv`` (error against capacity factor) and ``routing-study-replicates.csv`` (one row per fit).

Design (sized for a shared 2-core machine, about 5-10 minutes):

* Models: the ``deepseek-thm2`` (softmax-routed) and ``deepseek-thm4`` (normalized-sigmoid-routed) specs of
  ``moestat/simulations`` -- truth k1* = 1 shared + k2* = 2 routed experts, fitted with k1 = 2, k2 = 3 --
  with the spec's data streams (``SeedSequence([seed, n, rep])``), ``SIZES`` x ``REPS`` replicates.
* Fits: the spec's ``mle`` protocol (k-means / random-centre starts, here ``N_INIT`` of them instead of 10),
  EM with the spec's tolerance 1e-6 and at most 1000 iterations, best non-degenerate start, the gate recorded
  at every iteration (``EMConfig.record_gate``).  All sizes are padded to one size bucket (one compiled program
  per model).
* Router: the routed block (3 experts); routing sets are top-1 (``K = 1``), ties to the lower index.
  Saturation (theory.md §2.7) compares each EM iteration's sets with those of the last iteration; change rate
  compares consecutive iterations; Jain's index uses the top-1 loads and the routing-weight shares of the
  fitted router on the replicate's data.
* Capacity (thm2, n = ``CAP_N``): the full-sample fit's router (top-1 over the routed experts) routes the points
  in their (random) order; each routed expert accepts at most floor(c N / 3) points
  (:func:`moestat.diagnostics.capacity_overflow`); the overflow points are dropped and the model refitted on the
  rest from the spec's near-truth ``paper`` protocol starts (the MLE restarts of the dynamics part give D2
  losses dominated by far-out over-fitted atoms).  Baseline: the same number of points dropped uniformly at
  random.  Errors: the spec's D2 Voronoi loss and the TV distance between the fitted and true conditional
  densities (:func:`moestat.montecarlo.worker.density_loss`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import jax
import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from moestat import diagnostics as dg, routing
from moestat.fitting import em, pipeline  # noqa: E402
from moestat._jax import to_device  # noqa: E402
from moestat.data.design import bucket_size, make_data  # noqa: E402
from moestat.montecarlo import load_spec, protocols  # noqa: E402
from moestat.montecarlo.adapters import model_atoms  # noqa: E402
from moestat.montecarlo.setup import Experiment  # noqa: E402
from moestat.montecarlo.spec import Spec  # noqa: E402
from moestat.montecarlo.worker import compute_losses, density_loss, key_seed, replicate_data, replicate_info  # noqa: E402

SIZES = (500, 1000, 2000, 5000, 10000)
REPS = 6
N_INIT = 3
CAP_N = 5000
CAPACITY_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5)
K = 1
OUT = os.path.dirname(os.path.abspath(__file__))
SETTINGS = {"thm2": "softmax", "thm4": "normalized sigmoid"}


def experiment(setting, protocol="mle"):
    raw = json.loads(json.dumps(load_spec("deepseek-" + setting).raw))
    raw["protocol"] = protocol
    raw["protocols"]["mle"]["n_init"] = N_INIT
    exp = Experiment.build(Spec(raw))
    exp.extras["true_atoms"] = model_atoms(exp.truth, exp.truth.canonical(exp.true_params))   # for the D2 loss
    return exp


def fit(exp, cfg, x, y, n, rep, NB):
    """Best start of EM on (x, y) padded to NB points: (canonical params, FitResult of that start, Data)."""
    X, Gd = exp.fit.designs(x)
    data = make_data(X, Gd, np.asarray(y, dtype=np.float64), np.ones(n), N=NB)
    p0 = jax.tree_util.tree_map(to_device, protocols.starts(exp, n, rep, x, y, data))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    est = pipeline.estimate(p0, data, exp.ctl, fixed, exp.cfg, replicate_info(exp, n), seed=key_seed(exp, n, rep),
                            polish_fit=False, run_cfg=cfg)
    return exp.fit.canonical(est.fit.params), est.fit, data


def dynamics(exp, setting, NB):
    cfg = dataclasses.replace(exp.cfg, record_gate=True)
    gate = exp.fit.gate
    rows, curves, fits = [], [], {}
    for n in SIZES:
        for rep in range(REPS):
            t0 = time.perf_counter()
            x, y, _ = replicate_data(exp, n, rep)
            params, one, data = fit(exp, cfg, x, y, n, rep, NB)
            path = routing.routing_path(gate, one.gate_trace, data.Xg, n, K)
            p = routing.router_probs(gate, params.gate, data.Xg, n)
            summ = routing.routing_summary(p, K)
            sat = path["saturation"].to_numpy()
            T = sat.size
            reach = int(np.argmax(sat >= 0.9)) if (sat >= 0.9).any() else T
            chg = path["change_rate"].to_numpy()[1:]
            row = {"setting": setting, "router": SETTINGS[setting], "n": n, "rep": rep, "n_iter": int(one.n_iter),
                   "converged": bool(one.converged), "iter_to_90pct_saturation": reach,
                   "saturation_at_10pct": float(sat[int(0.1 * (T - 1))]),
                   "saturation_at_iter5": float(sat[min(5, T - 1)]),
                   "change_rate_mean": float(np.mean(chg)) if chg.size else 0.0,
                   "change_rate_first10": float(np.mean(chg[:10])) if chg.size else 0.0,
                   "seconds": time.perf_counter() - t0}
            row.update(summ)
            rows.append(row)
            curves.append((setting, n, rep, sat))
            fits[(n, rep)] = (params, x, y)
            print("%s n=%d rep=%d iters=%d sat@5=%.2f jain=%.3f (%.1fs)" % (
                setting, n, rep, T, row["saturation_at_iter5"], summ["jain_topk"], row["seconds"]), flush=True)
    return rows, curves, fits


def truth_jain(exp, n, rep):
    """Jain index (top-1 loads) of the true routed gate on a replicate's data."""
    x, _, _ = replicate_data(exp, n, rep)
    _, Gt = exp.truth.designs(x)
    p = routing.router_probs(exp.truth.gate, exp.true_params.gate, jax.numpy.asarray(Gt.T), n)
    return dg.jain_index(dg.topk_assignment(p, K).sum(0)), dg.jain_index(dg.utilization(p))


def losses(exp, params):
    return {"D2": compute_losses(exp, params)[0]["D2"], "TV": density_loss(exp, params, "tv").value}


def capacity(exp, fits, NB):
    """Refits after dropping overflow points (or as many random points), near-truth starts (paper protocol)."""
    gate = exp.fit.gate
    rows = []
    for rep in range(REPS):
        params, x, y = fits[(CAP_N, rep)]
        _, Gd = exp.fit.designs(x)
        p = routing.router_probs(gate, params.gate, jax.numpy.asarray(Gd.T), CAP_N)
        prm, one, _ = fit(exp, exp.cfg, x, y, CAP_N, rep, NB)
        rows.append(dict({"rep": rep, "capacity_factor": np.inf, "dropping": "none", "kept": CAP_N,
                          "n_iter": int(one.n_iter)}, **losses(exp, prm)))
        for c in CAPACITY_FACTORS:
            share, dropped = dg.capacity_overflow(p, K, c, return_mask=True)
            keep = ~dropped
            m = int(keep.sum())
            rng = np.random.default_rng([rep, int(100 * c)])
            rand_keep = np.zeros(CAP_N, dtype=bool)
            rand_keep[rng.choice(CAP_N, m, replace=False)] = True
            for how, mask in (("capacity", keep), ("random", rand_keep)):
                prm, one, _ = fit(exp, exp.cfg, x[mask], y[mask], m, rep, NB)
                rows.append(dict({"rep": rep, "capacity_factor": c, "dropping": how, "kept": m,
                                  "dropped_share": share, "n_iter": int(one.n_iter)}, **losses(exp, prm)))
            print("capacity c=%.2f rep=%d kept=%d D2 cap=%.4f rand=%.4f" % (c, rep, m, rows[-2]["D2"], rows[-1]["D2"]),
                  flush=True)
    return rows


def main():
    t_start = time.perf_counter()
    NB = bucket_size(max(SIZES))
    all_rows, all_curves, truth = [], [], {}
    cap_rows = []
    for setting in SETTINGS:
        exp = experiment(setting)
        rows, curves, fits = dynamics(exp, setting, NB)
        all_rows += rows
        all_curves += curves
        truth[setting] = np.mean([truth_jain(exp, n, 0) for n in SIZES], axis=0)
        if setting == "thm2":
            cap_rows = capacity(experiment(setting, "paper"), fits, NB)
    reps = pd.DataFrame(all_rows)
    reps.to_csv(os.path.join(OUT, "routing-study-replicates.csv"), index=False, float_format="%.6g")
    cols = ["n_iter", "iter_to_90pct_saturation", "saturation_at_iter5", "saturation_at_10pct", "change_rate_mean",
            "change_rate_first10", "jain_topk", "jain_weight", "load_imbalance", "entropy", "tsallis"]
    table = reps.groupby(["setting", "router", "n"])[cols].median().reset_index()
    table["true_router_jain_topk"] = table["setting"].map({s: v[0] for s, v in truth.items()})
    table["true_router_jain_weight"] = table["setting"].map({s: v[1] for s, v in truth.items()})
    table.to_csv(os.path.join(OUT, "routing-study.csv"), index=False, float_format="%.4g")
    cap = pd.DataFrame(cap_rows)
    capt = cap.groupby(["capacity_factor", "dropping"]).agg(
        kept=("kept", "mean"), D2_mean=("D2", "mean"), D2_median=("D2", "median"), TV_mean=("TV", "mean"),
        TV_median=("TV", "median"), n_iter=("n_iter", "median")).reset_index()
    capt.to_csv(os.path.join(OUT, "routing-capacity.csv"), index=False, float_format="%.4g")
    print(table.to_string())
    print(capt.to_string())

    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    colors = {"thm2": "C0", "thm4": "C3"}
    for setting in SETTINGS:
        cs = [c[3] for c in all_curves if c[0] == setting and c[1] == max(SIZES)]
        L = 60
        M = np.stack([np.pad(c[:L], (0, max(0, L - c[:L].size)), constant_values=c[-1]) for c in cs])
        ax[0].plot(np.median(M, 0), color=colors[setting], label="%s (%s)" % (setting, SETTINGS[setting]))
        ax[0].fill_between(np.arange(L), M.min(0), M.max(0), color=colors[setting], alpha=0.15)
        t = table[table.setting == setting]
        ax[1].plot(t.n, t.change_rate_first10, "o-", color=colors[setting], label=setting)
        ax[2].plot(t.n, t.jain_topk, "o-", color=colors[setting], label="%s fitted (top-1 loads)" % setting)
        ax[2].plot(t.n, t.jain_weight, "s--", color=colors[setting], alpha=0.6, label="%s fitted (weights)" % setting)
        ax[2].axhline(truth[setting][1], color=colors[setting], ls=":", label="%s true router (weights)" % setting)
    ax[0].set(xlabel="EM iteration", ylabel="saturation (top-1 vs last iterate)",
              title="saturation, n = %d (median, range)" % max(SIZES))
    ax[1].set(xscale="log", xlabel="n", ylabel="change rate (mean of first 10 iterations)", title="change rate")
    ax[2].set(xscale="log", xlabel="n", ylabel="Jain index", title="expert utilization (routed block)", ylim=(0.3, 1.02))
    for how, mk in (("capacity", "o-"), ("random", "s--")):
        s = capt[capt.dropping == how]
        ax[3].plot(s.capacity_factor, s.TV_mean, mk, label="%s drop" % how)
    ax[3].axhline(float(capt[capt.dropping == "none"].TV_mean.iloc[0]), color="k", ls=":", label="no drop")
    ax[3].set(yscale="log", xlabel="capacity factor c", ylabel="TV distance to the truth (mean over reps)",
              title="thm2, n = %d: dropping overflow points" % CAP_N)
    for a in ax:
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "routing-study.png"), dpi=110)
    print("wall %.0f s" % (time.perf_counter() - t_start))


if __name__ == "__main__":
    sys.exit(main())
