"""The Monte Carlo harness: specs, reproducible streams, protocols, store, analysis, CLI."""
import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from moestat.montecarlo import Store, available_specs, load_spec
from moestat.montecarlo.analysis import bootstrap_slopes, local_slopes, loss_slopes, per_n
from moestat.montecarlo.spec import Spec, expand_grid
from moestat.montecarlo.store import stable_table


def tiny_spec(**over):
    raw = json.loads(json.dumps(load_spec("demystifying-k2").raw))
    raw.update(name="tiny-k2", grid={"full": [{"values": [150, 300, 600]}], "quick": [{"values": [150, 300]}]},
               replicates={"full": 3, "quick": 2}, losses=[{"name": "D1", "kind": "D1", "predicted": -0.5}])
    raw.update(over)
    return Spec(raw)


def test_shipped_specs_are_package_data_and_valid():
    names = set(available_specs())
    assert {"demystifying-k2", "demystifying-k3", "demystifying-k4"} <= names
    for name in names:
        s = load_spec(name)
        assert s.grid(True).size >= 3 and s.replicates(False) >= s.replicates(True)
        assert s.protocol_settings()["max_iter"] >= 1
    k2 = load_spec("demystifying-k2")
    assert k2.grid(False).size == 200 and k2.replicates(False) == 40          # the published design
    assert k2.grid(False)[0] == 100 and k2.grid(False)[-1] == 100000
    assert load_spec("demystifying-k3").grid(False).min() == 10000


def test_spec_hash_ignores_grid_and_replicates_but_not_protocol():
    s = tiny_spec()
    assert tiny_spec(grid={"full": [{"values": [10, 20]}], "quick": [{"values": [5]}]}).hash == s.hash
    assert tiny_spec(replicates={"full": 9, "quick": 1}).hash == s.hash
    assert s.with_protocol("mle").hash != s.hash
    assert tiny_spec(seed=1).hash != s.hash
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        load_spec("nope")
    with pytest.raises(ValueError, match="lacks field"):
        Spec({"name": "x"})
    assert list(expand_grid([{"linspace": [100, 900, 5]}, {"values": [100, 50]}])) == [50, 100, 300, 500, 700, 900]


def test_replicate_streams_are_numpy_seedsequence_and_independent_of_batching():
    from moestat.montecarlo.worker import experiment_for, replicate_data, run_task
    spec = tiny_spec()
    exp = experiment_for(spec.raw)
    x, y, data = replicate_data(exp, 300, 2)
    # the documented derivation, re-done by hand: SeedSequence([seed, n, r]) -> (x, z, y) child streams
    _, s_z, s_y = np.random.SeedSequence([spec.seed, 300, 2]).spawn(3)
    xg = np.linspace(0, 1, 300)
    p1 = 1 / (1 + np.exp(8 - 25 * xg))
    z = (np.random.default_rng(s_z).random(300) > 1 - p1).astype(int)  # inverse CDF over (expert 0, expert 1)
    mean = np.where(z == 1, 15 - 20 * xg, -5 + 20 * xg)
    sd = np.where(z == 1, 0.3, 0.4)
    y_hand = mean + sd * np.random.default_rng(s_y).standard_normal(300)
    np.testing.assert_allclose(y, y_hand, rtol=0, atol=1e-12)
    assert np.asarray(data.w).sum() == 300 and data.w.shape[0] >= 300
    alone = run_task({"spec": spec.raw, "n": 300, "reps": [2]})[0]
    block = run_task({"spec": spec.raw, "n": 300, "reps": [0, 1, 2]})[2]
    for key in ("loglik", "losses", "params", "n_iter", "converged"):
        assert alone[key] == block[key]


def test_near_truth_starts_follow_the_published_protocol():
    from moestat.montecarlo import protocols
    from moestat.montecarlo.worker import experiment_for
    spec = tiny_spec(fit={"gate": "softmax", "expert": "linear", "k": 4})
    exp = experiment_for(spec.raw)
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = protocols.assignment(4, 2, rng)
        assert s[0] == 0 and set(s) == {0, 1}
    starts = protocols.paper_starts(exp, 10000, 0)
    st = exp.settings
    assert starts.gate.coef.shape == (1, 4, 2)
    np.testing.assert_array_equal(starts.gate.coef[0, 0], 0.0)             # reference row stays 0
    # one scalar per block: both gate coefficients of a row move by the same amount
    truth_rows = {0: np.zeros(2), 1: np.array([-8.0, 25.0])}
    noise = [starts.gate.coef[0, i] - min(truth_rows.values(), key=lambda t: np.abs(starts.gate.coef[0, i] - t).sum())
             for i in range(1, 4)]
    for d in noise:
        assert abs(d[0] - d[1]) < 1e-12 and abs(d[0]) < 6 * st["gate_sd"][0] * 10000 ** st["gate_sd"][1]
    # "variance_start": "sd": variances start at the true sd (0.4 or 0.3) plus |noise|
    s2 = starts.expert.sigma2[0]
    assert np.all((s2 >= 0.3) & (s2 < 0.45))


def test_store_never_duplicates_and_round_trips(tmp_path):
    spec = tiny_spec()
    row = {"n": 10, "rep": 0, "losses": {"D1": 0.1 + 0.2}, "loss_errors": {}, "errors": {"x": float("nan")},
           "params": {"a": [1 / 3]}, "loglik": -1.2345678901234567, "n_iter": 5, "converged": True,
           "degenerate": False, "start": 0, "n_starts": 1, "error": None, "seconds": 0.1, "host": "h"}
    with Store(tmp_path / "s.sqlite") as st:
        st.register(spec)
        assert st.write(spec.hash, [row]) == 1
        assert st.write(spec.hash, [dict(row, loglik=0.0)]) == 0                # first write wins
        assert st.done(spec.hash) == {(10, 0)}
        got = st.rows(spec.hash)[0]
        assert got["losses"]["D1"] == 0.1 + 0.2 and got["params"]["a"][0] == 1 / 3
        assert got["loglik"] == -1.2345678901234567 and math.isnan(got["errors"]["x"])
        df = st.export_csv(spec.hash, tmp_path / "r.csv")
    back = pd.read_csv(tmp_path / "r.csv", float_precision="round_trip")  # exact with pandas 2.0 too
    assert back["loss_D1"][0] == 0.1 + 0.2 and len(df) == 1


def _synthetic(slope=-0.5, reps=30, seed=0, fail_every=0):
    rng = np.random.default_rng(seed)
    rows = []
    for n in np.geomspace(100, 1e5, 10).astype(int):
        for r in range(reps):
            v = 2.0 * n ** slope * rng.lognormal(0, 0.5)
            bad = fail_every and (r % fail_every == 0)
            rows.append({"n": n, "rep": r, "loss_D": np.nan if (bad and n == 100) else v,
                         "converged": not bad})
    return pd.DataFrame(rows)


def test_slopes_ci_local_slopes_and_failures():
    df = _synthetic()
    st = loss_slopes(df, "D", n_boot=400)
    # exactly the least-squares line of log mean / log median loss on log n (NumPy's polyfit) ...
    g = df.groupby("n")["loss_D"]
    assert st["slope"] == pytest.approx(np.polyfit(np.log(g.mean().index), np.log(g.mean()), 1)[0], rel=1e-12)
    assert st["median_slope"] == pytest.approx(np.polyfit(np.log(g.median().index), np.log(g.median()), 1)[0],
                                               rel=1e-12)
    # ... which recovers the simulated -0.5 (log-normal noise, 30 replicates at each of 10 sizes)
    assert st["slope"] == pytest.approx(-0.5, abs=0.05)
    assert st["ci_low"] < -0.5 < st["ci_high"] and st["ci_high"] - st["ci_low"] < 0.1
    assert st["median_slope"] == pytest.approx(-0.5, abs=0.06)
    ls = local_slopes(st["summary"], window=4)
    assert len(ls) == 7 and np.all(np.abs(ls["slope"] + 0.5) < 0.15)
    bad = _synthetic(fail_every=10)
    s = per_n(bad, "D")
    assert s["failures"].sum() == 30 and s["excluded"].sum() == 3          # reported, never dropped silently
    assert loss_slopes(bad, "D", n_boot=50)["failures"] == 30
    # a 1/log n "rate" has a small apparent slope and shrinking local slopes (theory.md §6.3)
    logrows = pd.DataFrame([{"n": n, "rep": 0, "loss_D": 1 / math.log(n), "converged": True}
                            for n in np.geomspace(100, 1e5, 12)])
    ls = local_slopes(per_n(logrows, "D"), window=4)
    assert -0.2 < ls["slope"].iloc[0] < ls["slope"].iloc[-1] < 0
    assert np.all(np.isfinite(bootstrap_slopes(df, "D", n_boot=20)))


def test_cli_list_and_refuses_to_clobber(tmp_path, capsys):
    from moestat.cli import main
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert "demystifying-k2" in out and "demystifying-k4" in out
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(tiny_spec().raw))
    with Store(tmp_path / "out" / "results.sqlite") as st:
        st.register(tiny_spec())
        st.write(tiny_spec().hash, [{"n": 150, "rep": 0, "losses": {}, "loss_errors": {}, "errors": {}, "params": {},
                                     "loglik": 0.0, "n_iter": 1, "converged": True, "degenerate": False, "start": 0,
                                     "n_starts": 1, "error": None, "seconds": 0.0}])
    assert main(["reproduce", str(p), "--out", str(tmp_path / "out"), "--workers", "1"]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_batched_path_agrees_with_per_replicate_fits():
    from moestat.montecarlo.worker import run_task
    spec = tiny_spec()
    one = run_task({"spec": spec.raw, "n": 300, "reps": [0, 1]})
    vec = run_task({"spec": spec.raw, "n": 300, "reps": [0, 1], "batch": "vmap", "batch_size": 2})
    for a, b in zip(one, vec):
        assert b["loglik"] == pytest.approx(a["loglik"], rel=1e-10)
        assert b["losses"]["D1"] == pytest.approx(a["losses"]["D1"], rel=1e-6)


def test_progress_bar_eta():
    from moestat.montecarlo.progress import Progress
    buf = io.StringIO()
    bar = Progress(4, stream=buf, every=0.0)
    bar.update(1)
    bar.update(3)
    text = buf.getvalue()
    assert "1/4 replicates  25%" in text and "4/4 replicates 100%" in text and "ETA" in text


def test_stable_table_ignores_timing(tmp_path):
    spec = tiny_spec()
    row = {"n": 1, "rep": 0, "losses": {"D1": 1.0}, "loss_errors": {}, "errors": {}, "params": {}, "loglik": 0.0,
           "n_iter": 1, "converged": True, "degenerate": False, "start": 0, "n_starts": 1, "error": None}
    with Store(tmp_path / "a.sqlite") as a, Store(tmp_path / "b.sqlite") as b:
        a.write(spec.hash, [dict(row, seconds=1.0, host="x")])
        b.write(spec.hash, [dict(row, seconds=2.0, host="y")])
        assert stable_table(a, spec.hash) == stable_table(b, spec.hash)
        b.write(spec.hash, [dict(row, rep=1, seconds=2.0)])
        assert stable_table(a, spec.hash) != stable_table(b, spec.hash)


def test_bad_spec_fails_before_any_work(tmp_path):
    from moestat.montecarlo import run_experiment
    spec = tiny_spec(fit={"gate": "nosuchgate", "expert": "linear", "k": 2})
    with pytest.raises(ValueError, match="cannot be set up: unknown gating 'nosuchgate'"):
        run_experiment(spec, out_dir=str(tmp_path / "x"), workers=1, progress=False)
    assert not (tmp_path / "x").exists()
    bad = tiny_spec(truth=dict(tiny_spec().raw["truth"], params={"gate": {"coef": [[0, 0]]},
                                                                 "expert": {"coef": [[0, 0]], "sigma2": [1]}}))
    with pytest.raises(ValueError, match=r"truth.params.gate.coef must have shape \(2, 2\)"):
        run_experiment(bad, out_dir=str(tmp_path / "y"), workers=1, progress=False)
