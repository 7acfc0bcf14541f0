"""Collect harness runs into paper_figures/: each run's figure and slopes, one slope table, the README.

    python paper_figures/collect.py runs/demystifying-k2-paper runs/gaussian-gated-m1-paper-quick ...
    python paper_figures/collect.py --params runs/deepseek-thm4-paper     # per-parameter slopes only
    python paper_figures/collect.py                                      # re-render from the kept files

Each run folder (written by ``moestat reproduce``) contributes its
``slopes.csv`` (kept here as ``slopes-<folder>.csv``) and its figure.  The
table ``paper_figures/slopes.csv`` is then rebuilt from *every*
``slopes-*.csv`` kept here, so collecting a new run never drops older rows;
``theory_row`` is filled from the shipped spec where an older run predates
that column.  Quick-grid rows are labelled ``quick`` in the ``grid`` column
(they test the machinery; the full grids are the reproductions).

Per-parameter slopes (theory.md §7 rows 5-7, 12-15) are kept as
``param_slopes-<folder>[-<variant>].csv``: recomputed from the run's
``results.csv`` (bootstrap CI and median slope, :func:`moestat.montecarlo.
analysis.error_slopes`) with the run's metadata, or copied from its
``param_slopes.csv`` when there is no ``results.csv``.  They enter
``slopes.csv`` after the loss rows, with ``quantity = "parameter"`` (loss rows:
``"loss"``), the error key in ``loss`` (``routed.slope[0]``: atom group, block,
true atom; `` (variant)`` appended for variants), the true atom's typical
cell size in ``cell_size`` and the share of replicates with that size in
``cell_size_share``; ``predicted`` and ``theory_row`` always come from
the shipped spec's ``param_rates``, so a kept file without a CI (a run whose
folder is gone) still gets them.  ``--params`` collects only the per-parameter
slopes of a run whose loss rows are not (yet) in the table.

``README.md`` renders the loss table, the text of ``notes.md``, the
full-grid per-parameter rows that have a prediction (with ``param_notes.md``) and one
figure per run.
"""
from __future__ import annotations

import glob
import json
import math
import os
import shutil
import sys

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))

COLUMNS = ["experiment", "loss", "slope", "ci_low", "ci_high", "median_slope", "predicted", "published", "n_min",
           "n_max", "n_sizes", "replicates", "failures", "protocol", "grid", "wall_s", "cpu_s", "theory_row", "command",
           "quantity", "cell_size", "cell_size_share"]
#: run metadata written into a kept param_slopes-*.csv (a run collected with --params has no slopes-*.csv)
META = ["experiment", "variant", "protocol", "quick", "wall_s", "command"]


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


def shipped_variant(name: str, variant: str | None, protocol: str | None = None):
    """The shipped spec ``name`` (its variant ``variant``), or None when no such spec is shipped."""
    from moestat.montecarlo.spec import available_specs, load_spec
    if name not in available_specs():
        return None
    spec = load_spec(name).with_protocol(protocol)
    return next((v for v in spec.variants() if v.variant == variant), None)


def run_param_slopes(folder: str, tag: str, n_boot: int = 1000) -> pd.DataFrame:
    """Per-parameter slopes of one run (or variant) folder from its results.csv, with the run's metadata.

    The predictions come from the shipped spec (the run's own copy may predate
    ``param_rates``); the bootstrap uses the run's seed, as its loss CIs do.
    """
    from moestat.montecarlo.analysis import error_slopes
    from moestat.montecarlo.runner import command_line
    with open(os.path.join(folder, "run.json")) as fh:
        run = json.load(fh)
    variant = run["spec"].get("variant")
    spec = shipped_variant(run["experiment"], variant, run["protocol"])
    rules = spec.param_rates if spec is not None else run["spec"].get("param_rates")
    df = pd.read_csv(os.path.join(folder, "results.csv"))
    out = error_slopes(df, rules, n_boot=n_boot, seed=int(run["spec"].get("seed", 0)))
    command = (command_line(spec, bool(run["quick"]), run["replicates"]) if spec is not None
               else "moestat reproduce %s --protocol %s%s" % (run["experiment"], run["protocol"],
                                                              " --quick" if run["quick"] else ""))
    meta = {"experiment": run["experiment"], "variant": variant, "protocol": run["protocol"],
            "quick": bool(run["quick"]), "wall_s": round(float(run["wall_s"]), 2),
            "command": command + " --out runs/" + tag}
    for key in META:
        out[key] = meta[key]
    return out


def add_runs(run_dirs: list[str], params_only: bool = False) -> None:
    """Copy each run's slopes.csv (as slopes-<folder>.csv), figure and per-parameter slopes into paper_figures/.

    ``params_only``: only the per-parameter slopes (``param_slopes-<folder>[-<variant>].csv``).
    """
    for d in run_dirs:
        tag = os.path.basename(os.path.normpath(d))
        if not params_only:
            sl = pd.read_csv(os.path.join(d, "slopes.csv"))
            sl["command"] = sl["command"] + " --out runs/" + tag
            sl.to_csv(os.path.join(HERE, "slopes-%s.csv" % tag), index=False)
            for png in glob.glob(os.path.join(d, "*.png")):
                shutil.copy(png, HERE)
        # per-parameter slopes (theory.md §7 rows 5-7, 12-15), per variant where the spec has variants
        for ps in glob.glob(os.path.join(d, "param_slopes.csv")) + glob.glob(os.path.join(d, "*", "param_slopes.csv")):
            folder = os.path.dirname(ps)
            sub = os.path.relpath(folder, d)
            dest = os.path.join(HERE, "param_slopes-%s%s.csv" % (tag, "" if sub == "." else "-" + sub))
            if all(os.path.exists(os.path.join(folder, f)) for f in ("results.csv", "run.json")):
                run_param_slopes(folder, tag).to_csv(dest, index=False)
            else:
                shutil.copy(ps, dest)


def _runs() -> dict:
    """{tag: slopes frame} of the runs kept here (slopes-<tag>.csv)."""
    rows = theory_rows()
    runs = {}
    for path in sorted(glob.glob(os.path.join(HERE, "slopes-*.csv"))):
        sl = pd.read_csv(path)
        tag = os.path.basename(path)[len("slopes-"):-len(".csv")]
        if "--out" not in str(sl["command"].iloc[0]):
            sl["command"] = sl["command"] + " --out runs/" + tag
        if "theory_row" not in sl:
            sl["theory_row"] = [rows.get((e, l)) for e, l in zip(sl["experiment"], sl["loss"])]
        sl["grid"] = ["quick" if q else "full" for q in sl["quick"].astype(bool)]
        runs[tag] = sl
    return runs


def _param_meta(ptag: str, ps: pd.DataFrame, runs: dict) -> dict | None:
    """Run metadata of a kept param_slopes-<ptag>.csv: its own columns, or the slopes file of its run."""
    if set(META) <= set(ps.columns):
        r = ps.iloc[0]
        variant = None if pd.isna(r["variant"]) else str(r["variant"])
        return {"experiment": r["experiment"], "variant": variant, "protocol": r["protocol"],
                "grid": "quick" if bool(r["quick"]) else "full", "wall_s": r["wall_s"], "command": r["command"]}
    tag = max((t for t in runs if ptag == t or ptag.startswith(t + "-")), key=len, default=None)
    if tag is None:
        return None
    variant = ptag[len(tag) + 1:] or None
    sl = runs[tag]
    own = sl[sl["loss"].str.endswith(" (%s)" % variant)] if variant else sl
    r = (own if len(own) else sl).iloc[0]
    return {"experiment": r["experiment"], "variant": variant, "protocol": r["protocol"], "grid": r["grid"],
            "wall_s": r["wall_s"], "cpu_s": r.get("cpu_s", np.nan), "command": r["command"], "n_min": r["n_min"],
            "n_max": r["n_max"],
            "replicates": r["replicates"], "failures": r["failures"]}


def param_rows(runs: dict) -> pd.DataFrame:
    """The per-parameter rows of every param_slopes-*.csv kept here (predictions from the shipped specs)."""
    from moestat.montecarlo.rates import predicted_rate
    frames = []
    for path in sorted(glob.glob(os.path.join(HERE, "param_slopes-*.csv"))):
        try:
            ps = pd.read_csv(path)
        except pd.errors.EmptyDataError:  # a run without per-parameter errors (a non-MoE target truth)
            continue
        if not len(ps):
            continue
        ptag = os.path.basename(path)[len("param_slopes-"):-len(".csv")]
        meta = _param_meta(ptag, ps, runs)
        if meta is None:
            print("collect: %s has no run metadata and no slopes-*.csv of its run: left out" % os.path.basename(path),
                  file=sys.stderr)
            continue
        spec = shipped_variant(meta["experiment"], meta["variant"])
        rules = spec.param_rates if spec is not None else []
        pred = [predicted_rate(rules, p, c) for p, c in zip(ps["parameter"], ps["typical_cell_size"])]
        suffix = " (%s)" % meta["variant"] if meta["variant"] else ""
        out = pd.DataFrame({
            "experiment": meta["experiment"], "loss": ps["parameter"] + suffix, "slope": ps["slope"],
            "ci_low": ps.get("ci_low", np.nan), "ci_high": ps.get("ci_high", np.nan),
            "median_slope": ps.get("median_slope", np.nan), "predicted": [p for p, _ in pred], "published": np.nan,
            "n_min": ps["n_min"] if "n_min" in ps else meta.get("n_min"),
            "n_max": ps["n_max"] if "n_max" in ps else meta.get("n_max"), "n_sizes": ps["n_sizes"],
            "replicates": ps["replicates"] if "replicates" in ps else meta.get("replicates"),
            "failures": ps["failures"] if "failures" in ps else meta.get("failures"),
            "protocol": meta["protocol"], "grid": meta["grid"], "wall_s": meta["wall_s"],
            "cpu_s": meta.get("cpu_s", np.nan), "theory_row": [r for _, r in pred], "command": meta["command"],
            "quantity": "parameter",
            "cell_size": ps["typical_cell_size"], "cell_size_share": ps.get("cell_size_share", np.nan)})
        frames.append(out)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def table() -> pd.DataFrame:
    """The slope table of every run kept here: loss rows, then per-parameter rows (``quantity``).

    Loss rows of older runs get ``theory_row`` from the specs.
    """
    runs = _runs()
    out = pd.concat(list(runs.values()), ignore_index=True)
    out["quantity"], out["cell_size"], out["cell_size_share"] = "loss", np.nan, np.nan
    out = out[COLUMNS]
    order = {"full": 0, "quick": 1}
    out = out.assign(_g=out["grid"].map(order)).sort_values(["experiment", "protocol", "_g", "loss"], kind="stable")
    params = param_rows(runs)
    params = params.assign(_g=params["grid"].map(order)).sort_values(["experiment", "protocol", "_g"], kind="stable")
    out = pd.concat([out.drop(columns="_g"), params.drop(columns="_g")[COLUMNS]], ignore_index=True)
    out["theory_row"] = out["theory_row"].astype("Int64")
    return out


PARAM_INTRO = """## Per-parameter rates

Rows of `slopes.csv` with `quantity = parameter`: the OLS slope of log(mean error over replicates) on log n of
one parameter block of one true atom (`routed.slope[0]`: atom group `routed`, block `slope` — the linear
expert's slope η₁ —, true atom 0; block names in `moestat/losses.py`), the 95 % bootstrap CI over replicates
within each n and the median slope, as for the losses. Errors belong to the spec's first Voronoi loss: the
largest error over the fitted atoms in the true atom's Voronoi cell (against the misspecified limit Ǧ₂ for
deepseek-thm4). The prediction is the theory's rate for that block in a cell of the size that atom's cell
has in most replicates (`cell size` column, with the share of replicates that have it): n^(−1/(2e)) for a
loss exponent e (theory.md §0.1), read from the spec's `param_rates` with its theory.md §7 row or, where the
table has no row, the section it comes from (`basis`). Mean errors at or below 1e−12 at every n (the one
shared weight when k1* = 1; a softmax cell mass matched exactly by the loss's optimal translation) have no
slope. Rows without a CI come from runs whose folders are gone (only their `param_slopes.csv` was kept).
This section lists the full-grid rows with a prediction and a slope fitted on at least half of the run's
sample sizes (an error that is 0 at most sizes — a cell mass the translation absorbs — has no meaningful
slope); all rows (quick grids too) are in `slopes.csv`."""


def _cell(r) -> str:
    """``size (share)`` of a per-parameter row's true-atom cell."""
    if pd.isna(r["cell_size"]):
        return "–"
    size = "%g" % float(r["cell_size"])
    return size if pd.isna(r["cell_size_share"]) else "%s (%.0f%%)" % (size, 100 * float(r["cell_size_share"]))


def render_params(df: pd.DataFrame) -> str:
    """The per-parameter section of the README: rows with a prediction, then ``param_notes.md``."""
    from moestat.montecarlo.rates import matching_rule
    rows = df[(df["quantity"] == "parameter") & df["predicted"].notna() & df["slope"].notna()
              & (df["grid"] == "full")]
    most = rows.groupby("command")["n_sizes"].transform("max")
    rows = rows[2 * rows["n_sizes"] >= most]          # an error that is 0 at most sizes has no meaningful slope
    if not len(rows):
        return ""
    head = ("| experiment | grid | protocol | parameter | cell size (share) | §7 row | OLS slope [95% bootstrap CI] | "
            "median slope | predicted | basis | n range × sizes × reps | failed fits or no value |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = []
    specs = {}
    for _, r in rows.iterrows():
        key, _, variant = r["loss"].partition(" (")
        variant = variant[:-1] or None
        if (r["experiment"], variant) not in specs:
            spec = shipped_variant(r["experiment"], variant)
            specs[(r["experiment"], variant)] = spec.param_rates if spec is not None else []
        rule = matching_rule(specs[(r["experiment"], variant)], key, r["cell_size"]) or {}
        ci = "" if pd.isna(r["ci_low"]) else " [%s, %s]" % (_f(r["ci_low"]), _f(r["ci_high"]))
        lines.append("| %s | %s | %s | %s | %s | %s | %s%s | %s | %s | %s | %d–%d × %d × %d | %s |" % (
            r["experiment"], r["grid"], r["protocol"], r["loss"], _cell(r),
            "–" if pd.isna(r["theory_row"]) else r["theory_row"], _f(r["slope"]), ci, _f(r["median_slope"]),
            _f(r["predicted"], "%+.3f"), rule.get("note", "–"), r["n_min"], r["n_max"], r["n_sizes"],
            r["replicates"], "–" if pd.isna(r["failures"]) else int(r["failures"])))
    notes_path = os.path.join(HERE, "param_notes.md")
    notes = open(notes_path).read() if os.path.exists(notes_path) else ""
    return PARAM_INTRO + "\n\n" + head + "\n" + "\n".join(lines) + "\n\n" + notes


def render(df: pd.DataFrame) -> str:
    params = render_params(df)
    df = df[df["quantity"] == "loss"]
    head = ("| experiment | grid | protocol | loss | §7 row | OLS slope [95% bootstrap CI] | median slope | predicted | "
            "published | n range × sizes × reps | failed fits | wall s | CPU s | command |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = []
    for _, r in df.iterrows():
        lines.append("| %s | %s | %s | %s | %s | %s [%s, %s] | %s | %s | %s | %d–%d × %d × %d | %d | %.0f | %s | `%s` |" % (
            r["experiment"], r["grid"], r["protocol"], r["loss"], "–" if pd.isna(r["theory_row"]) else r["theory_row"],
            _f(r["slope"]), _f(r["ci_low"]), _f(r["ci_high"]), _f(r["median_slope"]), _f(r["predicted"], "%+.2f"),
            _f(r["published"]), r["n_min"], r["n_max"], r["n_sizes"], r["replicates"], r["failures"], r["wall_s"],
            _f(r["cpu_s"], "%.0f"), r["command"]))
    notes_path = os.path.join(HERE, "notes.md")
    notes = open(notes_path).read() if os.path.exists(notes_path) else ""
    figs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "*.png")))
    return ("# Paper figures\n\nThe slope table (`slopes.csv`, rebuilt by `python paper_figures/collect.py RUN_DIR ...`)"
            ": one row per run and loss; `grid` says whether the row is a quick check or the full grid.\n\n"
            + head + "\n" + "\n".join(lines) + "\n\n" + notes + "\n\n" + (params + "\n\n" if params else "")
            + "## Figures\n\n"
            + "\n\n".join("![%s](%s)" % (f, f) for f in figs) + "\n")


def collect(run_dirs: list[str], params_only: bool = False) -> pd.DataFrame:
    add_runs(run_dirs, params_only)
    df = table()
    df.to_csv(os.path.join(HERE, "slopes.csv"), index=False)
    with open(os.path.join(HERE, "README.md"), "w") as fh:
        fh.write(render(df))
    return df


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(HERE))
    args = sys.argv[1:]
    only = "--params" in args
    print(collect([a for a in args if a != "--params"], params_only=only).to_string(max_colwidth=40))
