"""Statistical checks of moestat's inference (issue 4), too heavy for the test suite.

Prints and writes (JSON + PNG figures):
  1. observed-information SEs on sim_moe2 against the bundled reference;
  2. empirical and parametric bootstrap SEs against the observed-information SEs, with Monte Carlo bands;
  3. bootstrap likelihood-ratio tests (k vs k+1) on sim_moe2 and on data from the 3-expert model;
  4. the sampling sd of the MLE over data sets from sim_moe2's true model, mean observed SE, Wald coverage;
  5. select_k on replicates simulated from the 3-expert model: how often each criterion picks k = 3.

    python benchmarks/inference_checks.py [--reps 50] [--B 1000] [--lrt-B 99] [--sampling-reps 300]
                                          [--jobs 1] [--out DIR] [--only reference,bootstrap,...]
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

import moestat as ms  # noqa: E402


def fit_sim_moe2():
    df = ms.datasets.load_sim_moe2()
    res = ms.GaussianMoE(2).fit("y ~ x", data=df)
    return df, res if res.params_tree.expert.coef[0, 1] > 0 else res.relabel([1, 0])


def check_reference(res):
    ref = ms.datasets.sim_moe2_reference()["mle"]["params"]
    f = res.summary_frame()
    rows = [{"block": r.block, "expert": int(r.expert), "term": r.term, "estimate": r.estimate, "se": r.std_err,
             "se_reference": p["se"], "rel_diff": r.std_err / p["se"] - 1} for r, p in zip(f.itertuples(), ref)]
    return {"loglik": res.loglik, "max_abs_rel_diff": max(abs(r["rel_diff"]) for r in rows), "rows": rows}


def check_bootstrap(res, B, jobs, out):
    obs = res.summary_frame()
    result = {}
    fig, axes = plt.subplots(2, 4, figsize=(13, 6))
    for kind, color in (("empirical", "C0"), ("parametric", "C1")):
        t = time.time()
        b = res.bootstrap(B=B, kind=kind, seed=2024, n_jobs=jobs)
        wall = time.time() - t
        se_b = b.bse.to_numpy()
        mc = se_b / np.sqrt(2 * (int(b.valid.sum()) - 1))      # sd of a bootstrap SE (normal approximation)
        ratio = se_b / obs["std_err"].to_numpy()
        result[kind] = {"B": B, "valid": int(b.valid.sum()), "relabelled": b.n_relabelled, "wall_s": wall,
                        "se_boot": se_b.tolist(), "mc_sd": mc.tolist(), "ratio": ratio.tolist(),
                        "z_diff": ((se_b - obs["std_err"].to_numpy()) / mc).tolist(),
                        "ci_low": b.conf_int()["lower"].tolist(), "ci_high": b.conf_int()["upper"].tolist()}
        for j, ax in enumerate(axes.ravel()):
            ax.hist(b.estimates.iloc[:, j][b.valid], bins=40, density=True, histtype="step", color=color, label=kind)
    for j, ax in enumerate(axes.ravel()):
        r = obs.iloc[j]
        x = np.linspace(r.estimate - 4 * r.std_err, r.estimate + 4 * r.std_err, 200)
        ax.plot(x, stats.norm.pdf(x, r.estimate, r.std_err), "k--", lw=1, label="N(est, obs. SE²)")
        ax.set_title("%s %d: %s" % (r.block, r.expert, r.term), fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("sim_moe2: bootstrap distributions (B=%d) vs observed-information normal" % B)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bootstrap_vs_observed.png"), dpi=110)
    plt.close(fig)
    result["terms"] = ["%s %d %s" % (r.block, r.expert, r.term) for r in obs.itertuples()]
    result["se_observed"] = obs["std_err"].tolist()
    return result


def simulate_sim_moe2_truth(n, rng):
    """A fresh data set from the model sim_moe2 was drawn from (sim_moe2_truth.json)."""
    import pandas as pd
    t = ms.datasets.sim_moe2_truth()
    x = rng.uniform(-1, 1, n)
    z = rng.random(n) < 1 / (1 + np.exp(-(t["gating"]["w0"] + t["gating"]["w1"] * x)))
    e = [t["experts"][int(i)] for i in z]
    y = np.array([c["b0"] + c["b1"] * xi + c["sigma"] * rng.standard_normal() for c, xi in zip(e, x)])
    return pd.DataFrame({"x": x, "y": y})


def check_sampling(reps, out):
    """The actual sampling sd of the MLE over data sets from the truth, the mean observed-information SE,
    and the coverage of 95 % Wald intervals (n = 500, like sim_moe2)."""
    t = ms.datasets.sim_moe2_truth()
    g, e = t["gating"], t["experts"]
    truth = np.array([e[0]["b0"], e[0]["b1"], e[0]["sigma"], e[1]["b0"], e[1]["b1"], e[1]["sigma"], g["w0"], g["w1"]])
    rng = np.random.default_rng(99)
    est, se = [], []
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        for r in range(reps):
            res = ms.GaussianMoE(2).fit("y ~ x", data=simulate_sim_moe2_truth(500, rng))
            res = res if res.params_tree.expert.coef[0, 1] > 0 else res.relabel([1, 0])
            f = res.summary_frame()
            est.append(f["estimate"].to_numpy())
            se.append(f["std_err"].to_numpy())
    est, se = np.array(est), np.array(se)
    q = stats.norm.ppf(0.975)
    cover = np.mean(np.abs(est - truth) <= q * se, axis=0)
    return {"reps": reps, "n": 500, "truth": truth.tolist(), "sd_of_estimates": est.std(0, ddof=1).tolist(),
            "mean_observed_se": se.mean(0).tolist(), "wald95_coverage": cover.tolist(),
            "mean_estimate": est.mean(0).tolist(), "wall_s": time.time() - t0}


def check_lrt(df2, res2, B, jobs, out):
    df3 = ms.datasets.simulate_moe3(500, seed=123)
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        for name, data, ks in (("sim_moe2", df2, (1, 2, 3)), ("moe3", df3, (2, 3, 4))):
            for k in ks:
                fits[name, k] = res2 if (name, k) == ("sim_moe2", 2) else ms.GaussianMoE(k).fit("y ~ x", data=data)
        cases = [("sim_moe2", 1), ("sim_moe2", 2), ("moe3", 2), ("moe3", 3)]
        result, tests = [], []
        for name, k in cases:
            t0 = time.time()
            t = ms.bootstrap_lrt(fits[name, k], fits[name, k + 1], B=B, n_init=3, seed=7, n_jobs=jobs)
            tests.append((name, t))
            result.append({"data": name, "true_k": 2 if name == "sim_moe2" else 3, "k0": k, "k1": k + 1,
                           "LR": t.statistic, "p": t.pvalue, "B": t.B, "null_median": float(np.median(t.boot_statistics)),
                           "null_q95": float(np.quantile(t.boot_statistics, 0.95)), "wall_s": time.time() - t0})
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for ax, (name, t) in zip(axes, tests):
        ax.hist(t.boot_statistics, bins=25, color="0.7", label="LR under the fitted null")
        hi = ax.get_xlim()[1]
        if t.statistic <= hi:
            ax.axvline(t.statistic, color="C3", label="observed LR = %.1f" % t.statistic)
        else:  # far off the null distribution's scale
            ax.annotate("observed LR = %.1f  →" % t.statistic, xy=(hi, 0), xytext=(0.45, 0.6),
                        textcoords="axes fraction", color="C3", fontsize=8)
        ax.set_title("%s: k=%d vs %d, p=%.3f" % (name, t.k0, t.k1, t.pvalue), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "bootstrap_lrt.png"), dpi=110)
    plt.close(fig)
    return result


def check_select_k(reps, out):
    picks = {c: [] for c in ("bic", "aic", "icl")}
    curves = None
    t0 = time.time()
    for r in range(reps):
        df = ms.datasets.simulate_moe3(500, seed=1000 + r)
        sel = ms.select_k(ms.GaussianMoE(2), "y ~ x", data=df, ks=range(1, 6))
        for c in picks:
            picks[c].append(sel.choose(c))
        if r == 0:
            curves = sel
    counts = {c: {int(k): int(np.sum(np.array(v) == k)) for k in range(1, 6)} for c, v in picks.items()}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    curves.plot(ax=axes[0])
    axes[0].set_title("replicate 0 (n=500, true k=3)")
    w = 0.27
    for j, c in enumerate(("bic", "aic", "icl")):
        axes[1].bar(np.arange(1, 6) + (j - 1) * w, [counts[c][k] for k in range(1, 6)], width=w, label=c.upper())
    axes[1].set_xlabel("chosen k")
    axes[1].set_ylabel("replicates (of %d)" % reps)
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "select_k_moe3.png"), dpi=110)
    plt.close(fig)
    return {"reps": reps, "n": 500, "counts": counts, "wall_s": time.time() - t0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--B", type=int, default=1000)
    ap.add_argument("--lrt-B", type=int, default=99)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "inference"))
    ap.add_argument("--sampling-reps", type=int, default=300)
    ap.add_argument("--only", default="reference,bootstrap,sampling,lrt,select_k")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    only = a.only.split(",")
    df, res = fit_sim_moe2()
    out = {}
    path = os.path.join(a.out, "inference_checks.json")
    if os.path.exists(path):
        out = json.load(open(path))
    steps = {"reference": lambda: check_reference(res), "bootstrap": lambda: check_bootstrap(res, a.B, a.jobs, a.out),
             "lrt": lambda: check_lrt(df, res, a.lrt_B, a.jobs, a.out), "select_k": lambda: check_select_k(a.reps, a.out),
             "sampling": lambda: check_sampling(a.sampling_reps, a.out)}
    for name in only:
        t = time.time()
        out[name] = steps[name]()
        print("== %s (%.1f s)\n%s" % (name, time.time() - t, json.dumps(out[name], indent=1)[:3000]), flush=True)
        with open(path, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
