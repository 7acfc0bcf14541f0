"""Router summaries stored with each Monte Carlo replicate; stores written before them still open."""
from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from moestat.montecarlo import Store
from moestat.montecarlo.worker import replicate_data, run_task, experiment_for

from test_montecarlo import tiny_spec

OLD_SCHEMA = """
CREATE TABLE specs (hash TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE results (
    hash TEXT NOT NULL, n INTEGER NOT NULL, rep INTEGER NOT NULL,
    losses TEXT NOT NULL, loss_errors TEXT NOT NULL, errors TEXT NOT NULL, params TEXT NOT NULL,
    loglik REAL, n_iter INTEGER, converged INTEGER, degenerate INTEGER, start INTEGER, n_starts INTEGER,
    error TEXT, seconds REAL, host TEXT, finished REAL,
    PRIMARY KEY (hash, n, rep));
"""


def _row(**over):
    row = {"n": 10, "rep": 0, "losses": {"D1": 0.5}, "loss_errors": {}, "errors": {}, "params": {"a": [1.0]},
           "loglik": -1.0, "n_iter": 5, "converged": True, "degenerate": False, "start": 0, "n_starts": 1,
           "error": None, "seconds": 0.1, "host": "h"}
    row.update(over)
    return row


def test_store_keeps_routing_and_opens_old_stores(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    con.execute("INSERT INTO results VALUES (?, 10, 0, ?, '{}', '{}', ?, -1.0, 5, 1, 0, 0, 1, NULL, 0.1, 'h', 0.0)",
                ("abc", json.dumps({"D1": 0.5}), json.dumps({"a": [1.0]})))
    con.commit()
    con.close()
    with Store(path) as st:
        old = st.rows("abc")[0]
        assert old["routing"] is None and old["losses"] == {"D1": 0.5}
        assert st.write("abc", [_row(rep=1, routing={"jain_topk": 0.75, "entropy": 0.25})]) == 1
        assert st.write("abc", [_row(rep=2)]) == 1                       # rows without a summary still store
        df = st.frame("abc")
    assert list(df["rep"]) == [0, 1, 2]
    assert df["route_jain_topk"].iloc[1] == 0.75 and np.isnan(df["route_jain_topk"].iloc[0])


def test_replicates_carry_routing_of_the_fitted_gate():
    spec = tiny_spec()
    row = run_task({"spec": spec.raw, "n": 150, "reps": [0]})[0]
    r = row["routing"]
    # recompute from the stored canonical softmax coefficients on the replicate's data
    exp = experiment_for(spec.raw)
    x, _, _ = replicate_data(exp, 150, 0)
    coef = np.asarray(row["params"]["gate"]["coef"])          # (2, 2) softmax rows (intercept, slope)
    eta = coef[:, :1] + coef[:, 1:2] * np.asarray(x).reshape(1, -1)
    p = np.exp(eta - eta.max(0))
    p = (p / p.sum(0)).T
    loads = np.bincount(p.argmax(1), minlength=p.shape[1])
    share = p.mean(0)
    assert r["jain_topk"] == pytest.approx(loads.sum() ** 2 / (p.shape[1] * (loads ** 2).sum()), rel=1e-12)
    assert r["jain_weight"] == pytest.approx(share.sum() ** 2 / (p.shape[1] * (share ** 2).sum()), rel=1e-10)
    assert r["entropy"] == pytest.approx(np.mean(-(p * np.log(p)).sum(1)), rel=1e-10)
    assert r["tsallis"] == pytest.approx(np.mean(1 - (p ** 2).sum(1)), rel=1e-10)
