"""Collect harness runs into paper_figures/: copy each run's figure and slopes, write the slope table.

    python paper_figures/collect.py runs/demystifying-k2-paper runs/demystifying-k3-mle-quick ...

Every number in the table comes from a run's ``slopes.csv`` (written by
``moestat reproduce``), next to the command that reproduces it.  The text
around the table lives in ``paper_figures/notes.md`` and is copied verbatim
under it.
"""
from __future__ import annotations

import glob
import math
import os
import shutil
import sys

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))


def _f(v, fmt="%+.3f"):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(v) else fmt % v


def collect(run_dirs: list[str]) -> str:
    rows, figs = [], []
    for d in run_dirs:
        sl = pd.read_csv(os.path.join(d, "slopes.csv"))
        for png in glob.glob(os.path.join(d, "*.png")):
            shutil.copy(png, HERE)
            figs.append(os.path.basename(png))
        tag = os.path.basename(os.path.normpath(d))
        sl.to_csv(os.path.join(HERE, "slopes-%s.csv" % tag), index=False)
        for _, r in sl.iterrows():
            cmd = "%s --out runs/%s" % (r["command"], tag)
            capped = "" if pd.isna(r.get("capped")) else " / %d" % r["capped"]
            rows.append("| %s | %s | %s | %s [%s, %s] | %s | %s | %s | %d–%d × %d sizes × %d reps | %d%s | %.0f | `%s` |" % (
                r["experiment"], r["protocol"] + (" (quick)" if r["quick"] else ""), r["loss"], _f(r["slope"]),
                _f(r["ci_low"]), _f(r["ci_high"]), _f(r["median_slope"]), _f(r["predicted"], "%+.2f"),
                _f(r["published"]), r["n_min"], r["n_max"], r["n_sizes"], r["replicates"], r["failures"], capped,
                r["wall_s"],
                cmd))
    head = ("| experiment | protocol | loss | OLS slope [95% bootstrap CI] | median slope | predicted | published | "
            "n range | failed fits / capped | wall s | command |\n|---|---|---|---|---|---|---|---|---|---|---|")
    notes = open(os.path.join(HERE, "notes.md")).read() if os.path.exists(os.path.join(HERE, "notes.md")) else ""
    text = "# Paper figures\n\n" + head + "\n" + "\n".join(rows) + "\n\n" + notes + "\n\n## Figures\n\n" + \
        "\n\n".join("![%s](%s)" % (f, f) for f in sorted(set(figs))) + "\n"
    with open(os.path.join(HERE, "README.md"), "w") as fh:
        fh.write(text)
    return text


if __name__ == "__main__":
    print(collect(sys.argv[1:]))
