"""End-to-end harness runs: resume after SIGKILL, process pool and Dask give identical stores."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from moestat.montecarlo import Store, run_experiment
from moestat.montecarlo.runner import SLOPE_COLUMNS
from moestat.montecarlo.store import stable_table

from test_montecarlo import tiny_spec

pytestmark = pytest.mark.slow   # skipped by the fast tier (pytest -m "not slow"); CI runs it

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted in-process run of the tiny spec (the table every other run must equal)."""
    out = tmp_path_factory.mktemp("ref")
    res = run_experiment(tiny_spec(), out_dir=str(out), workers=1, progress=False, n_boot=100)
    with Store(os.path.join(out, "results.sqlite")) as st:
        table = stable_table(st, tiny_spec().hash)
    return res, table


def test_outputs_of_a_run(reference_run):
    res, table = reference_run
    assert len(table) == 9
    slopes = pd.read_csv(os.path.join(res.out_dir, "slopes.csv"))
    assert list(slopes.columns) == SLOPE_COLUMNS
    row = slopes.iloc[0]
    assert row["experiment"] == "tiny-k2" and row["loss"] == "D1" and row["protocol"] == "paper"
    assert row["n_min"] == 150 and row["n_max"] == 600 and row["replicates"] == 3 and row["failures"] == 0
    assert row["ci_low"] <= row["slope"] <= row["ci_high"]
    assert os.path.getsize(os.path.join(res.out_dir, "tiny-k2-paper.png")) > 10000
    per_rep = pd.read_csv(os.path.join(res.out_dir, "results.csv"))
    assert len(per_rep) == 9 and per_rep["loss_D1"].gt(0).all()
    # per-parameter slopes: the log-log line of the mean errors in results.csv, with the spec's prediction
    from moestat.montecarlo.analysis import PARAM_COLUMNS
    params = pd.read_csv(os.path.join(res.out_dir, "param_slopes.csv")).set_index("parameter")
    assert list(params.reset_index().columns) == PARAM_COLUMNS
    g = per_rep.groupby("n")["err_moe.slope[1]"].mean()
    assert params.loc["moe.slope[1]", "slope"] == pytest.approx(np.polyfit(np.log(g.index), np.log(g), 1)[0],
                                                                rel=1e-9)
    assert params.loc["moe.slope[1]", "typical_cell_size"] == 1              # exact fit k = k* = 2
    assert (params.loc["moe.slope[1]", "predicted"], params.loc["moe.slope[1]", "theory_row"]) == (-0.5, 7)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, reference_run):
    _, table = reference_run
    spec_path = tmp_path / "tiny.json"
    spec_path.write_text(json.dumps(tiny_spec().raw))
    out = tmp_path / "run"
    code = ("from moestat.montecarlo import run_experiment; "
            "run_experiment(%r, out_dir=%r, workers=1, progress=False, throttle=0.4)" % (str(spec_path), str(out)))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = out / "results.sqlite"
    deadline = time.time() + 120
    stored = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                with Store(db) as st:
                    stored = st.count(tiny_spec().hash)
                if stored >= 3:
                    break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the process group we started
        proc.wait()
    assert 3 <= stored < 9, "the run was not interrupted mid-way (%d stored)" % stored
    res = run_experiment(str(spec_path), out_dir=str(out), workers=1, resume=True, progress=False, n_boot=50)
    assert 0 < res.computed <= 9 - stored
    with Store(db) as st:
        assert stable_table(st, tiny_spec().hash) == table


def test_process_pool_and_dask_store_identical_results(tmp_path, reference_run):
    _, table = reference_run
    pool = run_experiment(tiny_spec(), out_dir=str(tmp_path / "pool"), workers=2, progress=False, n_boot=50)
    with Store(os.path.join(pool.out_dir, "results.sqlite")) as st:
        assert stable_table(st, tiny_spec().hash) == table
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        dres = run_experiment(tiny_spec(), out_dir=str(tmp_path / "dask"), scheduler=cluster.scheduler_address,
                              progress=False, n_boot=50)
    with Store(os.path.join(dres.out_dir, "results.sqlite")) as st:
        assert stable_table(st, tiny_spec().hash) == table
