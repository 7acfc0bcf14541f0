"""Collect harness runs into paper_figures/: each run's figure and slopes, one slope table, the README.

    python paper_figures/collect.py runs/demystifying-k2-paper runs/gaussian-gated-m1-paper-quick ...

Each run folder (written by ``moestat reproduce``) contributes its
``slopes.csv`` (kept here as ``slopes-<folder>.csv``) and its figure.  The
table ``paper_figures/slopes.csv`` is then rebuilt from *every*
``slopes-*.csv`` kept here, so collecting a new run never drops older rows;
``theory_row`` is filled from the shipped spec where an older run predates
that column.  Per-parameter slopes (``param_slopes.csv`` of the run and of
each variant) are kept as ``param_slopes-<folder>[-<variant>].csv``.  ``README.md`` renders the table, the text of ``notes.md`` and
one figure per run.  Quick-grid rows are labelled ``quick`` in the ``grid``
column (they test the machinery; the full grids are the reproductions).
"""
from __future__ import annotations

import glob
import math
import os
import shutil
import sys

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))

COLUMNS = ["experiment", "loss", "slope", "ci_low", "ci_high", "median_slope", "predicted", "published", "n_min",
           "n_max", "n_sizes", "replicates", "failures", "protocol", "grid", "wall_s", "theory_row", "command"]


def _f(v, fmt="%+.3f"):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(v) else fmt % v


def theory_rows() -> dict:
    """{(experiment, loss name): theory.md §7 row} from the shipped specs (variants included)."""
    from moestat.montecarlo.spec import available_specs, load_spec
    out = {}
    for name in available_specs():
        for v in load_spec(name).variants():
            for L in v.losses:
                if L.get("theory_row") is not None:
                    out[(name, L["name"])] = int(L["theory_row"])
    return out


def add_runs(run_dirs: list[str]) -> None:
    """Copy each run's slopes.csv (as slopes-<folder>.csv) and figure into paper_figures/."""
    for d in run_dirs:
        tag = os.path.basename(os.path.normpath(d))
        sl = pd.read_csv(os.path.join(d, "slopes.csv"))
        sl["command"] = sl["command"] + " --out runs/" + tag
        sl.to_csv(os.path.join(HERE, "slopes-%s.csv" % tag), index=False)
        for png in glob.glob(os.path.join(d, "*.png")):
            shutil.copy(png, HERE)
        # per-parameter slopes (theory.md §7 rows 5-7, 12-15), per variant where the spec has variants
        for ps in glob.glob(os.path.join(d, "param_slopes.csv")) + glob.glob(os.path.join(d, "*", "param_slopes.csv")):
            sub = os.path.relpath(os.path.dirname(ps), d)
            shutil.copy(ps, os.path.join(HERE, "param_slopes-%s%s.csv" % (tag, "" if sub == "." else "-" + sub)))


def table() -> pd.DataFrame:
    """The slope table of every run kept here (rows of older runs get ``theory_row`` from the specs)."""
    rows = theory_rows()
    frames = []
    for path in sorted(glob.glob(os.path.join(HERE, "slopes-*.csv"))):
        sl = pd.read_csv(path)
        tag = os.path.basename(path)[len("slopes-"):-len(".csv")]
        if "--out" not in str(sl["command"].iloc[0]):
            sl["command"] = sl["command"] + " --out runs/" + tag
        if "theory_row" not in sl:
            sl["theory_row"] = [rows.get((e, l)) for e, l in zip(sl["experiment"], sl["loss"])]
        sl["grid"] = ["quick" if q else "full" for q in sl["quick"].astype(bool)]
        frames.append(sl)
    out = pd.concat(frames, ignore_index=True)[COLUMNS]
    out["theory_row"] = out["theory_row"].astype("Int64")
    order = {"full": 0, "quick": 1}
    out = out.assign(_g=out["grid"].map(order)).sort_values(["experiment", "protocol", "_g", "loss"], kind="stable")
    return out.drop(columns="_g").reset_index(drop=True)


def render(df: pd.DataFrame) -> str:
    head = ("| experiment | grid | protocol | loss | §7 row | OLS slope [95% bootstrap CI] | median slope | predicted | "
            "published | n range × sizes × reps | failed fits | wall s | command |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = []
    for _, r in df.iterrows():
        lines.append("| %s | %s | %s | %s | %s | %s [%s, %s] | %s | %s | %s | %d–%d × %d × %d | %d | %.0f | `%s` |" % (
            r["experiment"], r["grid"], r["protocol"], r["loss"], "–" if pd.isna(r["theory_row"]) else r["theory_row"],
            _f(r["slope"]), _f(r["ci_low"]), _f(r["ci_high"]), _f(r["median_slope"]), _f(r["predicted"], "%+.2f"),
            _f(r["published"]), r["n_min"], r["n_max"], r["n_sizes"], r["replicates"], r["failures"], r["wall_s"],
            r["command"]))
    notes_path = os.path.join(HERE, "notes.md")
    notes = open(notes_path).read() if os.path.exists(notes_path) else ""
    figs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "*.png")))
    return ("# Paper figures\n\nThe slope table (`slopes.csv`, rebuilt by `python paper_figures/collect.py RUN_DIR ...`)"
            ": one row per run and loss; `grid` says whether the row is a quick check or the full grid.\n\n"
            + head + "\n" + "\n".join(lines) + "\n\n" + notes + "\n\n## Figures\n\n"
            + "\n\n".join("![%s](%s)" % (f, f) for f in figs) + "\n")


def collect(run_dirs: list[str]) -> pd.DataFrame:
    add_runs(run_dirs)
    df = table()
    df.to_csv(os.path.join(HERE, "slopes.csv"), index=False)
    with open(os.path.join(HERE, "README.md"), "w") as fh:
        fh.write(render(df))
    return df


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    print(collect(sys.argv[1:]).to_string(max_colwidth=40))
