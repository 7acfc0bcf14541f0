"""Per-parameter error slopes: bootstrap CIs, the specs' predicted rates (param_rates) and collect.py's rows."""
import importlib.util
import json
import os

import numpy as np
import pandas as pd
import pytest

from moestat.montecarlo import available_specs, load_spec
from moestat.montecarlo.analysis import error_slopes
from moestat.montecarlo.rates import check_param_rates, predicted_rate
from moestat.montecarlo.spec import Spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _errors(rate=-0.25, sizes=(200, 400, 800, 1600, 3200, 6400, 12800), reps=30, seed=1):
    """Hand-made per-replicate errors C n^rate times log-normal noise, in a cell of size 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        for r in range(reps):
            rows.append({"n": n, "rep": r, "converged": True, "err_moe.size[0]": 2, "err_moe.size[1]": 1,
                         "err_moe.log_scale": 0.0,
                         "err_moe.gate_slope[0]": 3.0 * n ** rate * np.exp(0.3 * rng.standard_normal()),
                         "err_moe.slope[1]": 0.5 * n ** -0.5 * np.exp(0.3 * rng.standard_normal()),
                         "err_moe.mass[1]": 0.0})
    return pd.DataFrame(rows)


def test_parameter_slope_ci_recovers_a_known_rate():
    df = _errors()
    ps = error_slopes(df, n_boot=500, seed=3).set_index("parameter")
    assert list(ps.index) == ["moe.gate_slope[0]", "moe.slope[1]", "moe.mass[1]"]   # sizes and log_scale left out
    g = df.groupby("n")["err_moe.gate_slope[0]"]
    # the slope is the least-squares line of log mean (log median) error on log n, re-done with NumPy ...
    assert ps.loc["moe.gate_slope[0]", "slope"] == pytest.approx(
        np.polyfit(np.log(g.mean().index), np.log(g.mean()), 1)[0], rel=1e-12)
    assert ps.loc["moe.gate_slope[0]", "median_slope"] == pytest.approx(
        np.polyfit(np.log(g.median().index), np.log(g.median()), 1)[0], rel=1e-12)
    # ... which recovers the simulated rates, inside a narrow bootstrap interval
    for key, rate in (("moe.gate_slope[0]", -0.25), ("moe.slope[1]", -0.5)):
        lo, hi = ps.loc[key, ["ci_low", "ci_high"]]
        assert lo < rate < hi and hi - lo < 0.06, (key, lo, hi)
        assert ps.loc[key, "slope"] == pytest.approx(rate, abs=0.03)
    assert ps.loc["moe.gate_slope[0]", "typical_cell_size"] == 2 and ps.loc["moe.slope[1]", "typical_cell_size"] == 1
    # an error that is zero at every n (a parameter the loss's normalisation fixes) has no slope and no CI
    assert np.isnan(ps.loc["moe.mass[1]", ["slope", "ci_low", "ci_high", "median_slope"]].astype(float)).all()
    assert ps.loc["moe.mass[1]", "n_sizes"] == 0
    # fewer replicates: a wider interval around the same rate
    few = error_slopes(_errors(reps=4, seed=2), n_boot=500, seed=3).set_index("parameter")
    assert (few.loc["moe.gate_slope[0]", "ci_high"] - few.loc["moe.gate_slope[0]", "ci_low"]
            > ps.loc["moe.gate_slope[0]", "ci_high"] - ps.loc["moe.gate_slope[0]", "ci_low"])


def test_empty_cells_are_counted_and_left_out_of_the_cell_size():
    df = _errors(reps=6)
    empty = df["rep"] < 2                         # true atom 0 has no fitted atom in two replicates per n
    df.loc[empty, "err_moe.gate_slope[0]"] = np.nan
    df.loc[empty, "err_moe.size[0]"] = 0
    df.loc[df["rep"] == 2, "err_moe.size[0]"] = 3
    ps = error_slopes(df, n_boot=50).set_index("parameter")
    assert ps.loc["moe.gate_slope[0]", "excluded"] == 2 * 7 and ps.loc["moe.gate_slope[0]", "replicates"] == 4
    # cell sizes of the replicates that have the error: 3 once, 2 three times per n
    assert ps.loc["moe.gate_slope[0]", "typical_cell_size"] == 2
    assert ps.loc["moe.gate_slope[0]", "cell_size_share"] == pytest.approx(0.75)


def test_predicted_rates_follow_theory_section_7():
    # theory.md §3.4 / §7 rows 5-7 (softmax Gaussian MoE, r(2) = 4, r(3) = 6)
    k3 = load_spec("demystifying-k3").param_rates
    assert predicted_rate(k3, "moe.gate_slope[1]", 2) == (-1 / 8, 5)
    assert predicted_rate(k3, "moe.intercept[0]", 2) == (-1 / 8, 5)
    assert predicted_rate(k3, "moe.slope[0]", 2) == (-1 / 4, 5)
    assert predicted_rate(k3, "moe.variance[1]", 2) == (-1 / 4, 5)
    assert predicted_rate(k3, "moe.gate_slope[0]", 3) == (-1 / 12, 6)
    assert predicted_rate(k3, "moe.variance[0]", 3) == (-1 / 6, 6)
    assert predicted_rate(k3, "moe.slope[1]", 1) == (-1 / 2, 7)
    assert predicted_rate(k3, "moe.mass[1]", 3) == (-1 / 2, 7)
    assert predicted_rate(k3, "moe.slope[1]", 1.5)[1] is None        # no integer cell size: no prediction
    assert predicted_rate(k3, "routed.slope[0]", 2)[1] is None        # another atom group
    # DeepSeekMoE rows 12-15
    thm2 = load_spec("deepseek-thm2").param_rates
    assert predicted_rate(thm2, "routed.slope[0]", 2) == (-1 / 4, 12)
    assert predicted_rate(thm2, "routed.variance[0]", 2) == (-1 / 4, 12)
    assert predicted_rate(thm2, "routed.gate_slope[0]", 2) == (-1 / 8, 12)
    assert predicted_rate(thm2, "routed.intercept[0]", 2) == (-1 / 8, 12)
    assert predicted_rate(thm2, "shared.slope[0]", 2) == (-1 / 4, 15)
    assert predicted_rate(thm2, "shared.intercept[0]", 2) == (-1 / 8, 15)
    assert predicted_rate(thm2, "shared.variance[0]", 2) == (-1 / 4, 15)
    assert predicted_rate(thm2, "routed.intercept[1]", 1) == (-1 / 2, None)
    assert np.isnan(predicted_rate(thm2, "shared.mass[0]", 2)[0])    # k1* = 1: the shared weight is fixed
    assert predicted_rate(load_spec("deepseek-thm4").param_rates, "routed.slope[2]", 1) == (-1 / 2, 13)
    for thm in (1, 3):
        rules = load_spec("deepseek-thm%d" % thm).param_rates
        assert predicted_rate(rules, "routed.expert[0]", 2) == (-1 / 4, 14)
        assert predicted_rate(rules, "shared.variance[0]", 2) == (-1 / 4, 14)
    # Gaussian-gated model 2 (c*_1 = 0 on true atom 0): A at n^-1/r(3) there, n^-1/4 elsewhere (theory.md §4.4)
    for v in load_spec("gaussian-gated-m2").variants():
        assert predicted_rate(v.param_rates, "moe.slope[0]", 3)[0] == -1 / 6
        assert predicted_rate(v.param_rates, "moe.slope[1]", 3)[0] == -1 / 4
        assert predicted_rate(v.param_rates, "moe.loc[2]", 2)[0] == -1 / 8


def test_param_rates_never_change_a_stored_results_key():
    for name in available_specs():
        spec = load_spec(name)
        for protocol in ("paper", "mle"):
            try:
                sp = spec.with_protocol(protocol)
            except ValueError:
                continue
            for v in sp.variants():
                assert "param_rates" not in json.dumps(v.hashed_fields())
                raw = json.loads(json.dumps(v.raw))
                raw.pop("param_rates", None)
                assert Spec(raw).hash == v.hash, (name, protocol, v.variant)
                raw["param_rates"] = [{"group": "moe", "blocks": ["slope"], "predicted": -0.3, "theory_row": 99}]
                assert Spec(raw).hash == v.hash, (name, protocol, v.variant)


@pytest.mark.parametrize("rules,match", [
    ({"group": "moe"}, "must be a JSON array"),
    ([{"group": "moe", "blocks": ["slope"], "predicted": -0.5, "row": 5}], "unknown field"),
    ([{"group": "", "blocks": ["slope"], "predicted": -0.5}], "'group' must be a non-empty string"),
    ([{"group": "moe", "blocks": [], "predicted": -0.5}], "'blocks' must be a non-empty list"),
    ([{"group": "moe", "blocks": ["slope"], "predicted": None}], "'predicted' must be a number"),
    ([{"group": "moe", "blocks": ["slope"], "predicted": -0.5, "cell_size": "2"}], "'cell_size'"),
    ([{"group": "moe", "blocks": ["slope"], "predicted": -0.5, "theory_row": 5.5}], "'theory_row' must be"),
])
def test_bad_param_rates_are_a_clear_error(rules, match):
    raw = json.loads(json.dumps(load_spec("demystifying-k2").raw))
    raw["param_rates"] = rules
    with pytest.raises(ValueError, match=match):
        Spec(raw)
    assert check_param_rates(None) == []


def _collect_module(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("collect_under_test",
                                                  os.path.join(ROOT, "paper_figures", "collect.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "HERE", str(tmp_path / "figs"))
    os.makedirs(mod.HERE)
    return mod


def _fake_run(folder, with_results=True):
    """A finished demystifying-k3 run folder (as `moestat reproduce` writes it) with hand-made errors."""
    os.makedirs(folder)
    df = _errors()
    df["loss_D2"] = df["err_moe.gate_slope[0]"]
    pd.DataFrame([{"experiment": "demystifying-k3", "loss": "D2", "slope": -0.25, "ci_low": -0.3, "ci_high": -0.2,
                   "median_slope": -0.25, "predicted": -0.5, "published": -1.18098, "n_min": 200, "n_max": 12800,
                   "n_sizes": 7, "replicates": 30, "failures": 0, "excluded": 0, "capped": 0, "protocol": "paper",
                   "quick": False, "wall_s": 12.0, "cpu_s": 20.0, "spec_hash": "x", "theory_row": 3,
                   "command": "moestat reproduce demystifying-k3 --protocol paper"}]).to_csv(
        os.path.join(folder, "slopes.csv"), index=False)
    error_slopes(df, n_boot=20)[["parameter", "slope", "n_sizes", "mean_at_n_max", "typical_cell_size"]].to_csv(
        os.path.join(folder, "param_slopes.csv"), index=False)
    if with_results:
        df.to_csv(os.path.join(folder, "results.csv"), index=False)
        with open(os.path.join(folder, "run.json"), "w") as fh:
            json.dump({"experiment": "demystifying-k3", "protocol": "paper", "quick": False, "replicates": 30,
                       "wall_s": 12.0, "spec": {"seed": 2023}}, fh)


def test_collect_appends_parameter_rows_with_ci_and_prediction(tmp_path, monkeypatch):
    collect = _collect_module(tmp_path, monkeypatch)
    _fake_run(str(tmp_path / "demystifying-k3-paper"))
    df = collect.collect([str(tmp_path / "demystifying-k3-paper")])
    loss = df[df["quantity"] == "loss"]
    assert list(loss["loss"]) == ["D2"] and loss["slope"].iloc[0] == -0.25      # the loss row as the run wrote it
    par = df[df["quantity"] == "parameter"].set_index("loss")
    assert list(par.index) == ["moe.gate_slope[0]", "moe.slope[1]", "moe.mass[1]"]
    row = par.loc["moe.gate_slope[0]"]
    assert (row["predicted"], row["theory_row"], row["cell_size"]) == (-0.125, 5, 2)   # theory.md §7 row 5
    assert row["ci_low"] < row["slope"] < row["ci_high"] and row["experiment"] == "demystifying-k3"
    assert (par.loc["moe.slope[1]", "predicted"], par.loc["moe.slope[1]", "theory_row"]) == (-0.5, 7)
    assert row["command"] == (
        "moestat reproduce demystifying-k3 --protocol paper --replicates 30 --out runs/demystifying-k3-paper")
    table = pd.read_csv(os.path.join(collect.HERE, "slopes.csv"))
    assert list(table.columns) == collect.COLUMNS and len(table) == 4
    assert (table.loc[table["quantity"] == "loss", "cpu_s"] == 20.0).all()      # the run's CPU seconds, kept
    readme = open(os.path.join(collect.HERE, "README.md")).read()
    main, params = readme.split("## Per-parameter rates")
    assert "moe.gate_slope[0]" not in main and "| D2 |" in main
    assert "| moe.gate_slope[0] | 2 (100%) | 5 |" in params and "moe.mass[1]" not in params   # no slope: not shown


def test_collect_falls_back_to_a_kept_file_without_ci(tmp_path, monkeypatch):
    collect = _collect_module(tmp_path, monkeypatch)
    _fake_run(str(tmp_path / "demystifying-k3-paper"), with_results=False)   # the folder keeps no results.csv
    df = collect.collect([str(tmp_path / "demystifying-k3-paper")])
    par = df[df["quantity"] == "parameter"].set_index("loss")
    row = par.loc["moe.gate_slope[0]"]
    assert np.isnan(row["ci_low"]) and (row["predicted"], row["theory_row"]) == (-0.125, 5)
    assert (row["n_min"], row["n_max"], row["replicates"]) == (200, 12800, 30)      # from the run's loss rows
    # --params: only the per-parameter rows of a run whose loss rows are not collected
    _fake_run(str(tmp_path / "other" / "demystifying-k3-mle"))
    df = collect.collect([str(tmp_path / "other" / "demystifying-k3-mle")], params_only=True)
    assert not os.path.exists(os.path.join(collect.HERE, "slopes-demystifying-k3-mle.csv"))
    assert (df["quantity"] == "parameter").sum() == 6 and (df["quantity"] == "loss").sum() == 1


@pytest.mark.parametrize("module", ["moestat.montecarlo.rates", "moestat.montecarlo.analysis"])
def test_docstring_examples_run(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
