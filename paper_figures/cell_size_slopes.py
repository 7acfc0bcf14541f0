"""Per-parameter error slopes split by the size of the true atom's Voronoi cell.

    PYTHONPATH=$PWD python paper_figures/cell_size_slopes.py RUN [--from N] [--out CSV]

A run's per-parameter errors (``err_moe.<parameter>[j]`` in each variant's
``results.csv``, written by ``moestat reproduce``) pool replicates in which the
true atom j's Voronoi cell holds one fitted atom (an exactly specified cell,
parametric rates) with replicates in which it holds two or more (an
over-specified cell, slower rates); which cell gets the extra atom differs
between replicates under the MLE protocol, so a per-atom slope mixes the two
rates (``cell_size_share`` in ``slopes.csv`` says how much).  This script
splits them: for every variant, parameter and cell size, the replicates of
every true atom whose cell has that size are pooled, and the slope of the
log median error on log n is fitted over the sizes with at least 3 such
errors (all of them, and from ``--from`` on).  Writes
paper_figures/cell-size-slopes-<RUN>.csv (or ``--out``) and prints it.
"""
from __future__ import annotations

import glob
import os
import re
import sys

import numpy as np
import pandas as pd

from moestat.montecarlo.analysis import ols_slope

HERE = os.path.dirname(os.path.abspath(__file__))
MIN_COUNT = 3


def cell_size_slopes(results: pd.DataFrame, n_from: float = 0.0) -> pd.DataFrame:
    """One row per (parameter, cell size): median slopes over all sizes and from ``n_from``, per-n medians."""
    pat = re.compile(r"^err_moe\.(.+)\[(\d+)\]$")
    found = [(m.group(1), int(m.group(2))) for m in map(pat.match, results.columns) if m]
    params = sorted({p for p, _ in found if p != "size"})
    atoms = sorted({j for p, j in found if p == "size"})
    sizes = sorted({int(s) for j in atoms for s in results["err_moe.size[%d]" % j].dropna().unique()})
    rows = []
    for par in params:
        for size in sizes:
            parts = [results.loc[results["err_moe.size[%d]" % j] == size, ["n", "err_moe.%s[%d]" % (par, j)]]
                     .set_axis(["n", "e"], axis=1) for j in atoms if "err_moe.%s[%d]" % (par, j) in results]
            p = pd.concat(parts)
            p = p[np.isfinite(p["e"]) & (p["e"] > 0)]
            if p.empty:
                continue
            g = p.groupby("n")["e"]
            med, cnt = g.median(), g.count()
            ok = (cnt >= MIN_COUNT).to_numpy()
            n = med.index.to_numpy(float)
            late = ok & (n >= n_from)
            rows.append({"parameter": par, "cell_size": size,
                         "slope": ols_slope(np.log(n[ok]), np.log(med.to_numpy()[ok]))[0],
                         "slope_from": ols_slope(np.log(n[late]), np.log(med.to_numpy()[late]))[0],
                         "n_from": n_from, "sizes": int(ok.sum()),
                         "medians": " ".join("%.3g" % v for v in med), "counts": " ".join(str(c) for c in cnt)})
    return pd.DataFrame(rows)


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    n_from, out = 0.0, None
    if "--from" in argv:
        i = argv.index("--from")
        n_from = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if "--out" in argv:
        i = argv.index("--out")
        out = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    run = argv[0].rstrip("/")
    frames = []
    for f in sorted(glob.glob(os.path.join(run, "*", "results.csv"))):
        df = cell_size_slopes(pd.read_csv(f), n_from)
        df.insert(0, "variant", os.path.basename(os.path.dirname(f)))
        frames.append(df)
    if not frames:
        raise SystemExit("no <variant>/results.csv under %s" % run)
    table = pd.concat(frames, ignore_index=True)
    out = out or os.path.join(HERE, "cell-size-slopes-%s.csv" % os.path.basename(run))
    table.to_csv(out, index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.round(3).to_string(index=False))
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1:])
