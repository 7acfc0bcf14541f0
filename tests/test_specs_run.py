"""Every shipped spec runs end to end through ``run_experiment`` on a tiny grid with 2 replicates.

The quick grids of the specs reach n = 2e4-1e5 and several size buckets, so
they are run by the commands in paper_figures/, not here.  This file keeps the
spec itself -- truth, covariate law, fitted model(s) and every variant,
protocol and its starts, reference fit, losses, slopes, the stored table --
from rotting: the spec's quick run with its grid shrunk to two sizes of one
padding bucket, 2 replicates, at most 2 starts and 60 EM iterations, and (for
a spec with a misspecified reference) a reference sample of the same bucket.
Each spec costs one or two EM compilations (a few seconds each).
"""
import copy
import math
import os

import numpy as np
import pandas as pd
import pytest

from moestat.montecarlo import available_specs, load_spec, run_experiment
from moestat.montecarlo.runner import SLOPE_COLUMNS
from moestat.montecarlo.spec import Spec

pytestmark = pytest.mark.slow

#: two sample sizes inside the smallest padding bucket (one compiled program per variant)
TINY_GRID = [{"values": [180, 250]}]
NAMES = sorted(available_specs())


def tiny(raw: dict) -> dict:
    """The spec with its quick grid, replicates, starts and iterations shrunk (hash-relevant fields aside)."""
    raw = copy.deepcopy(raw)
    raw["grid"] = dict(raw["grid"], quick=TINY_GRID)
    raw["replicates"] = dict(raw["replicates"], quick=2)
    for prot in raw.get("protocols", {}).values():
        prot.pop("grid", None)
        prot.pop("replicates", None)
        for key in ("n_init", "n_tries"):
            if key in prot:
                prot[key] = min(int(prot[key]), 2)
        prot["max_iter"] = min(int(prot.get("max_iter", 60)), 60)
    raw["fit"] = dict(raw["fit"], max_iter=min(int(raw["fit"].get("max_iter", 60)), 60))
    if raw.get("reference"):
        raw["reference"] = dict(raw["reference"], n=240, n_init=1, max_iter=60)
    return raw


@pytest.mark.parametrize("name", NAMES)
def test_shipped_spec_runs_its_quick_mode_on_a_tiny_grid(name, tmp_path):
    spec = load_spec(name)
    raw = tiny(spec.raw)
    res = run_experiment(Spec(raw), quick=True, out_dir=str(tmp_path), workers=1, progress=False,
                         figures=False, n_boot=20)
    variants = spec.variants()
    assert res.computed == 2 * 2 * len(variants)
    slopes = pd.read_csv(os.path.join(tmp_path, "slopes.csv"))
    assert list(slopes.columns) == SLOPE_COLUMNS
    expected = [L["name"] for v in variants for L in v.losses]
    assert sorted(slopes["loss"]) == sorted(expected)
    assert (slopes["n_min"] == 180).all() and (slopes["n_max"] == 250).all()
    assert (slopes["replicates"] == 2).all() and (slopes["experiment"] == name).all()
    for v in variants:
        folder = os.path.join(tmp_path, v.variant) if v.variant else str(tmp_path)
        rows = pd.read_csv(os.path.join(folder, "results.csv"))
        assert sorted(zip(rows["n"], rows["rep"])) == [(180, 0), (180, 1), (250, 0), (250, 1)]
        assert rows["error"].isna().all(), rows["error"].dropna().tolist()
        assert np.isfinite(rows["loglik"]).all()
        for L in v.losses:
            vals = rows["loss_" + L["name"]].to_numpy(float)
            assert np.all(np.isfinite(vals)) and np.all(vals >= 0), (L["name"], vals)
            if L["kind"] in ("tv", "hellinger"):
                assert np.all(vals <= 1 + 1e-6)
    # the slopes are those of the stored means (two sizes: the slope of the line through two points)
    for v in variants:
        folder = os.path.join(tmp_path, v.variant) if v.variant else str(tmp_path)
        rows = pd.read_csv(os.path.join(folder, "results.csv"))
        L = v.losses[0]
        m = rows.groupby("n")["loss_" + L["name"]].mean()
        if (m > 0).all():
            want = (math.log(m[250]) - math.log(m[180])) / (math.log(250) - math.log(180))
            got = slopes.loc[slopes["loss"] == L["name"], "slope"].iloc[0]
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
