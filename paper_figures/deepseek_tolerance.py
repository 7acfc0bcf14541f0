"""What the DeepSeekMoE curves measure at large n: the paper protocol's stopping rule.

    python paper_figures/deepseek_tolerance.py runs/deepseek-thm3-paper [--workers 2]

The paper protocol (App. G.1: EM with epsilon = 1e-6, near-truth starts) stops
when the log-likelihood rose by at most 1e-6 |l|.  At n >= 1e4 that happens
after 4-8 EM iterations, so the fit is still close to its start, whose noise
shrinks only like n^-0.083 (theory.md §6.2).  This script

1. reruns the same replicates (same data streams, same starts) of the spec at
   three sample sizes with the tolerance 1e-8 and up to 3000 iterations
   (into ``<run>-tol1e-8``, resumable), and
2. draws ``<spec>-tolerance.png`` next to this script: left, the full run's
   mean and median loss and median EM iterations against n; right, the loss and
   two per-parameter errors of each replicate at tolerance 1e-6 against 1e-8,
   and prints the per-n medians (the table in notes.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = [3793, 11288, 33598]
REPLICATES = 6


def stored(run_dir: str) -> pd.DataFrame:
    """One row per stored replicate: n, rep, n_iter, every loss and every per-parameter error."""
    con = sqlite3.connect(os.path.join(run_dir, "results.sqlite"))
    rows = []
    for n, rep, losses, errors, n_iter in con.execute("select n, rep, losses, errors, n_iter from results"):
        row = {"n": n, "rep": rep, "n_iter": n_iter}
        row.update(json.loads(losses))
        row.update({"err " + k: v for k, v in json.loads(errors).items()})
        rows.append(row)
    con.close()
    return pd.DataFrame(rows)


def tight_spec(run_dir: str) -> dict:
    con = sqlite3.connect(os.path.join(run_dir, "results.sqlite"))
    raw = json.loads(con.execute("select spec from specs").fetchone()[0])
    con.close()
    raw["name"] = raw["name"] + "-tol1e-8"
    prot = raw["protocol"] if isinstance(raw.get("protocol"), str) else "paper"
    raw["protocols"][prot].update(tol=1e-8, max_iter=3000)
    raw["grid"] = {"full": [{"values": SIZES}], "quick": [{"values": SIZES}]}
    raw["replicates"] = {"full": REPLICATES, "quick": REPLICATES}
    return raw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    from moestat.montecarlo import run_experiment
    from moestat.montecarlo.spec import Spec

    raw = tight_spec(args.run_dir)
    tight_dir = os.path.normpath(args.run_dir) + "-tol1e-8"
    run_experiment(Spec(raw), out_dir=tight_dir, workers=args.workers, resume=os.path.exists(tight_dir),
                   progress=False, figures=False, n_boot=100)
    full, tight = stored(args.run_dir), stored(tight_dir)
    loss = raw["losses"][0]["name"]
    errs = [c for c in ("err shared.expert[0]", "err routed.gate_intercept[0]") if c in full.columns]
    both = full.merge(tight, on=["n", "rep"], suffixes=(" tol1e-6", " tol1e-8"))
    cols = ["n_iter tol1e-6", "n_iter tol1e-8"] + ["%s tol1e-%d" % (c, t) for c in [loss] + errs for t in (6, 8)]
    table = both.groupby("n")[cols].median()
    pd.set_option("display.width", 200)
    print("medians over the %d replicates at each n:" % REPLICATES)
    print(table.T.to_string(float_format=lambda v: "%.4g" % v))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    g = full.groupby("n")
    a.loglog(g[loss].mean(), "o-", label="%s mean" % loss)
    a.loglog(g[loss].median(), "s--", label="%s median" % loss)
    a.set_xlabel("n")
    a.set_ylabel(loss)
    ax2 = a.twinx()
    ax2.semilogx(g["n_iter"].median(), "k:", label="median EM iterations")
    ax2.set_ylabel("EM iterations (median)")
    a.legend(loc="lower left", fontsize=8)
    ax2.legend(loc="upper right", fontsize=8)
    a.set_title("%s, paper protocol (tol 1e-6): full grid" % raw["name"].replace("-tol1e-8", ""), fontsize=9)
    markers = {loss: "o"}
    markers.update({c: m for c, m in zip(errs, ("^", "v"))})
    for c, m in markers.items():
        b.loglog(both[c + " tol1e-6"], both[c + " tol1e-8"], m, alpha=0.7, label=c.replace("err ", "error of "))
    lim = [min(b.get_xlim()[0], b.get_ylim()[0]), max(b.get_xlim()[1], b.get_ylim()[1])]
    b.plot(lim, lim, "k-", lw=0.6)
    b.set_xlabel("tolerance 1e-6 (stops after 4-60 iterations)")
    b.set_ylabel("tolerance 1e-8, same data and start")
    b.set_title("each replicate at n = %s" % ", ".join(map(str, SIZES)), fontsize=9)
    b.legend(fontsize=8)
    fig.tight_layout()
    out = os.path.join(HERE, "%s-tolerance.png" % raw["name"].replace("-tol1e-8", ""))
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
