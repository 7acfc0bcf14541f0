"""Why D3 of deepseek-thm3 falls faster than n^-1/2: the normalized-sigmoid intercept ridge.

    python paper_figures/deepseek_thm3_ridge.py runs/deepseek-thm3-paper-quick

With beta*_1 = 0 (the sparse regime of Thm 3) the routed weights are
sigma(beta_0i) / sum_j sigma(beta_0j): every scale c = sum_i sigma(beta_0i) in
(0, 1 / max_j w*_j) gives the same gate, so the fitted intercepts are pinned
only weakly (through the small fitted slopes).  Reads the run's results.csv
(per-replicate losses and fitted parameters), prints per-n means of D3, of
D3 at its infimum over the true ridge (loss ``D3-ridge``) and of the fitted
ridge scale c-hat, and draws ``deepseek-thm3-ridge.png`` next to this script.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))


def ridge_scale(params_json: str) -> float:
    """c-hat = sum_i sigma(beta_0i) over the fitted routed experts (the truth: sigma(-0.5) + sigma(0.5) = 1)."""
    p = json.loads(params_json)
    b0 = np.asarray(p["gate"]["routed"]["coef"], dtype=float)[:, 0]
    return float((1.0 / (1.0 + np.exp(-b0))).sum())


def max_abs_slope(params_json: str) -> float:
    p = json.loads(params_json)
    return float(np.abs(np.asarray(p["gate"]["routed"]["coef"], dtype=float)[:, 1]).max())


def without_gate_terms(df: pd.DataFrame) -> np.ndarray:
    """D3 of each replicate with the routed gate terms (||Δβ1||, |Δβ0|, their squares) left out.

    Same Voronoi cells (they are defined on (β1, η, ν) either way); shared terms, routed mass terms of
    over-specified cells and routed expert terms stay.  Rebuilt from the stored fitted parameters.
    """
    from moestat.losses import VoronoiRule, rule_D1, rule_D3_routed, voronoi_loss
    from moestat.montecarlo.adapters import model_atoms
    from moestat.montecarlo.setup import fill_params
    from moestat.montecarlo.spec import load_spec
    from moestat.montecarlo.worker import experiment_for
    exp = experiment_for(load_spec("deepseek-thm3").raw)
    true = exp.extras["true_atoms"]
    out = []
    for pj in df["params"]:
        fit = model_atoms(exp.fit, fill_params(exp.base(), json.loads(pj)))
        r = rule_D3_routed(fit["routed"])
        ex = dict(r.exponents, gate_slope=(None, None), gate_intercept=(None, None))
        routed = VoronoiRule(exponents=ex, mass=r.mass, weighted=r.weighted,
                             cell_blocks=tuple(b for b in fit["routed"].blocks if b != "gate_intercept"))
        shared = voronoi_loss(fit["shared"], true["shared"], rule_D1(fit["shared"]), translation=False).value
        out.append(shared + voronoi_loss(fit["routed"], true["routed"], routed, translation=False).value)
    return np.asarray(out)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(c_hat=df["params"].map(ridge_scale), slope_max=df["params"].map(max_abs_slope),
                   no_gate=without_gate_terms(df))
    cols = {"D3": ("loss_D3", "mean"), "D3_median": ("loss_D3", "median"),
            "D3_ridge": ("loss_D3-ridge", "mean"), "D3_ridge_median": ("loss_D3-ridge", "median"),
            "D3_no_gate": ("no_gate", "mean"), "D3_no_gate_median": ("no_gate", "median"),
            "c_hat_min": ("c_hat", "min"), "c_hat_max": ("c_hat", "max"), "max_abs_beta1": ("slope_max", "median")}
    return df.groupby("n").agg(**cols).reset_index(), df


def slope(n, v):
    return float(np.polyfit(np.log(n), np.log(v), 1)[0])


def figure(df: pd.DataFrame, summary: pd.DataFrame, path: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = summary["n"].to_numpy(float)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for col, lab, c in (("D3", "D3 (as defined)", "C3"), ("D3_ridge", "D3 at its infimum over the intercept ridge",
                                                          "C0"), ("D3_no_gate", "D3 without the routed gate terms",
                                                                  "C1")):
        v = summary[col].to_numpy(float)
        ax[0].plot(n, v, "o-", color=c, label="%s, slope %.2f" % (lab, slope(n, v)))
    ax[0].plot(df["n"], df["loss_D3"], ".", color="C3", alpha=0.3, ms=4)
    ax[0].plot(df["n"], df["loss_D3-ridge"], ".", color="C0", alpha=0.3, ms=4)
    xx = np.geomspace(n.min(), n.max(), 20)
    v = summary["D3_no_gate"].to_numpy(float)
    ax[0].plot(xx, np.exp(np.mean(np.log(v)) + 0.5 * np.mean(np.log(n))) * xx ** -0.5, "k:", label="slope −0.5")
    ax[0].set(xscale="log", yscale="log", xlabel="n", ylabel="loss (mean; dots: replicates)")
    ax[0].legend(fontsize=7.5)
    ax[1].plot(df["n"], df["slope_max"], "o", mfc="none", color="C2")
    ax[1].set(xscale="log", yscale="log", xlabel="n", ylabel="max_i |β̂1i| (fitted routed gate slopes; truth 0)",
              title="fitted routed gate slopes, per replicate", )
    fig.suptitle("deepseek-thm3 (β*1 = 0): D3's unweighted routed gate terms carry the small-n transient",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


if __name__ == "__main__":
    run = sys.argv[1] if len(sys.argv) > 1 else "runs/deepseek-thm3-paper-quick"
    data = pd.read_csv(os.path.join(run, "results.csv"))
    summary, df = summarise(data)
    if "loss_D3-no-gate" in df:  # the run's own value of the same loss (spec option omit_blocks)
        print("max |recomputed - stored| D3-no-gate: %.2e" % np.max(np.abs(df["no_gate"] - df["loss_D3-no-gate"])))
    pd.set_option("display.width", 160)
    print(summary.to_string(index=False, float_format=lambda v: "%.4g" % v))
    for col in ("D3", "D3_ridge", "D3_no_gate"):
        print("slope of %s: mean %.3f, median %.3f" % (col, slope(summary["n"], summary[col]),
                                                       slope(summary["n"], summary[col + "_median"])))
    print(figure(df, summary, os.path.join(HERE, "deepseek-thm3-ridge.png")))
