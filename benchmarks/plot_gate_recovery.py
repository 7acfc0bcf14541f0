"""Log-log plot of the gate recovery sweep (``gate_recovery_sweep.py`` must have run first).

Writes ``benchmarks/results/gate_recovery_sweep.png``: mean aligned parameter
error against n for every gate case, with the OLS slope in the legend and a
reference line of slope -1/2.

    python benchmarks/plot_gate_recovery.py
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    df = pd.read_csv(os.path.join(HERE, "results", "gate_recovery_sweep.csv"))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for case, g in df.groupby("case", sort=False):
        m = g.groupby("n")["error"].mean()
        slope = np.polyfit(np.log(m.index), np.log(m.to_numpy()), 1)[0]
        ax.loglog(m.index, m.to_numpy(), "o-", label="%s (slope %.2f)" % (case, slope))
    n = np.array(sorted(df["n"].unique()), dtype=float)
    ax.loglog(n, 2.0 * (n / n[0]) ** -0.5, "k--", lw=1, label="slope -1/2")
    ax.set_xlabel("n")
    ax.set_ylabel("mean aligned parameter error")
    ax.set_title("Gate families, linear Gaussian experts (%d replicates)" % df["rep"].nunique())
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(HERE, "results", "gate_recovery_sweep.png")
    fig.savefig(path, dpi=120)
    print("wrote", path)


if __name__ == "__main__":
    main()
