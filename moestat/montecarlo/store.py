"""The results store: SQLite (standard library), one row per (spec hash, n, replicate).

Every finished task is written in one transaction (WAL journal), so a run
killed at any moment leaves only complete rows; ``INSERT OR IGNORE`` on the
primary key means a replicate is never stored twice, and a restarted run asks
the store which (n, replicate) pairs are missing and computes only those.
Floats go through JSON with ``repr`` precision, so the stored values
round-trip exactly.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS specs (
    hash TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    hash TEXT NOT NULL, n INTEGER NOT NULL, rep INTEGER NOT NULL,
    losses TEXT NOT NULL, loss_errors TEXT NOT NULL, errors TEXT NOT NULL, params TEXT NOT NULL,
    loglik REAL, n_iter INTEGER, converged INTEGER, degenerate INTEGER, start INTEGER, n_starts INTEGER,
    error TEXT, seconds REAL, host TEXT, finished REAL,
    PRIMARY KEY (hash, n, rep));
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL, started REAL NOT NULL, updated REAL NOT NULL,
    executor TEXT, workers INTEGER, quick INTEGER, done INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (
    hash TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (hash, key));
"""

#: columns that describe how a result was computed, not what it is (differ between runs)
VOLATILE = ("seconds", "host", "finished")


class Store:
    """A results database at ``path`` (created if missing): one row per (spec hash, n, replicate).

    Parameters
    ----------
    path : str
        SQLite file; ``run_experiment`` uses ``<out_dir>/results.sqlite``.

    Examples
    --------
    >>> import os, tempfile
    >>> from moestat.montecarlo import Store
    >>> with Store(os.path.join(tempfile.mkdtemp(), "results.sqlite")) as st:
    ...     st.count("no-such-spec"), len(st.frame("no-such-spec"))
    (0, 0)
    """

    def __init__(self, path: str):
        self.path = os.fspath(path)
        d = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(d, exist_ok=True)
        self.con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable against a killed process
        self.con.executescript(SCHEMA)

    def close(self):
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ writing
    def register(self, spec) -> None:
        self.con.execute("INSERT OR IGNORE INTO specs VALUES (?, ?, ?, ?)",
                         (spec.hash, spec.name, spec.to_json(), time.time()))

    def write(self, spec_hash: str, rows: list[dict]) -> int:
        """Store finished replicates in one transaction; returns how many were new."""
        now = time.time()
        vals = [(spec_hash, r["n"], r["rep"], json.dumps(r["losses"]), json.dumps(r["loss_errors"]),
                 json.dumps(r["errors"]), json.dumps(r["params"]), r["loglik"], r["n_iter"], int(r["converged"]),
                 int(r["degenerate"]), r["start"], r["n_starts"], r.get("error"), r["seconds"], r.get("host"), now)
                for r in rows]
        cur = self.con.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            before = self.con.total_changes
            cur.executemany("INSERT OR IGNORE INTO results VALUES (%s)" % ",".join("?" * 17), vals)
            new = self.con.total_changes - before
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return new

    def delete(self, spec_hash: str) -> None:
        """Discard every stored result, session and meta entry of a spec (one transaction)."""
        cur = self.con.cursor()
        cur.execute("BEGIN IMMEDIATE")
        for table in ("results", "sessions", "meta"):
            cur.execute("DELETE FROM %s WHERE hash = ?" % table, (spec_hash,))
        cur.execute("COMMIT")

    def set_meta(self, spec_hash: str, key: str, value) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", (spec_hash, key, json.dumps(value)))

    def get_meta(self, spec_hash: str, key: str, default=None):
        row = self.con.execute("SELECT value FROM meta WHERE hash = ? AND key = ?", (spec_hash, key)).fetchone()
        return default if row is None else json.loads(row[0])

    # ------------------------------------------------------------------ sessions (wall time across resumes)
    def start_session(self, spec_hash: str, executor: str, workers: int, quick: bool) -> int:
        now = time.time()
        cur = self.con.execute("INSERT INTO sessions (hash, started, updated, executor, workers, quick) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (spec_hash, now, now, executor, workers, int(quick)))
        return int(cur.lastrowid)

    def touch_session(self, sid: int, done: int) -> None:
        self.con.execute("UPDATE sessions SET updated = ?, done = done + ? WHERE id = ?", (time.time(), done, sid))

    def wall_seconds(self, spec_hash: str) -> float:
        """Wall time of all sessions of a spec (a killed session counts until its last write)."""
        row = self.con.execute("SELECT SUM(updated - started) FROM sessions WHERE hash = ?", (spec_hash,)).fetchone()
        return float(row[0] or 0.0)

    # ------------------------------------------------------------------ reading
    def count(self, spec_hash: str) -> int:
        return int(self.con.execute("SELECT COUNT(*) FROM results WHERE hash = ?", (spec_hash,)).fetchone()[0])

    def done(self, spec_hash: str) -> set[tuple[int, int]]:
        """The (n, replicate) pairs already stored."""
        return {(int(n), int(r)) for n, r in
                self.con.execute("SELECT n, rep FROM results WHERE hash = ?", (spec_hash,))}

    def rows(self, spec_hash: str) -> list[dict]:
        cur = self.con.execute("SELECT * FROM results WHERE hash = ? ORDER BY n, rep", (spec_hash,))
        names = [d[0] for d in cur.description]
        out = []
        for rec in cur:
            r = dict(zip(names, rec))
            for k in ("losses", "loss_errors", "errors", "params"):
                r[k] = json.loads(r[k])
            r["converged"], r["degenerate"] = bool(r["converged"]), bool(r["degenerate"])
            out.append(r)
        return out

    def frame(self, spec_hash: str, grid=None, replicates: int | None = None, params: bool = False) -> pd.DataFrame:
        """One row per replicate, losses as ``loss_<name>``, numerical errors as ``lerr_<name>``,
        per-parameter errors as ``err_<group.block[j]>``; optionally restricted to a grid and replicate count."""
        recs = []
        for r in self.rows(spec_hash):
            if grid is not None and r["n"] not in set(int(v) for v in grid):
                continue
            if replicates is not None and r["rep"] >= replicates:
                continue
            flat = {k: r[k] for k in ("n", "rep", "loglik", "n_iter", "converged", "degenerate", "start",
                                      "n_starts", "error", "seconds", "host")}
            flat.update({"loss_%s" % k: v for k, v in r["losses"].items()})
            flat.update({"lerr_%s" % k: v for k, v in r["loss_errors"].items()})
            flat.update({"err_%s" % k: v for k, v in r["errors"].items()})
            if params:
                flat["params"] = json.dumps(r["params"])
            recs.append(flat)
        df = pd.DataFrame(recs)
        if len(df):
            df = df.sort_values(["n", "rep"]).reset_index(drop=True)
        return df

    def export_csv(self, spec_hash: str, path: str, grid=None, replicates=None) -> pd.DataFrame:
        df = self.frame(spec_hash, grid, replicates, params=True)
        df.to_csv(path, index=False, float_format="%.17g")
        return df


def stable_table(store: Store, spec_hash: str) -> list[tuple]:
    """The stored results without the volatile columns (timing, host), for equality checks."""
    out = []
    for r in store.rows(spec_hash):
        out.append(tuple((k, json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
                         for k, v in sorted(r.items()) if k not in VOLATILE))
    return out
