"""The results store: SQLite (standard library), one row per (spec hash, n, replicate).

Every finished task is written in one transaction (WAL journal), so a run
killed at any moment leaves only complete rows; ``INSERT OR IGNORE`` on the
primary key means a replicate is never stored twice, and a restarted run asks
the store which (n, replicate) pairs are missing and computes only those.
Floats go through JSON with ``repr`` precision, so the stored values
round-trip exactly.

A file that cannot serve as the store -- not a SQLite database, a database of
another program, an unwritable folder, a full disk -- raises
:class:`StoreError` naming the file and the fault, and is never modified: an
existing file is inspected read-only before it is opened for writing.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from urllib.request import pathname2url

import pandas as pd

SCHEMA = """
CREATE TABLE IF NOT EXISTS specs (
    hash TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    hash TEXT NOT NULL, n INTEGER NOT NULL, rep INTEGER NOT NULL,
    losses TEXT NOT NULL, loss_errors TEXT NOT NULL, errors TEXT NOT NULL, params TEXT NOT NULL,
    loglik REAL, n_iter INTEGER, converged INTEGER, degenerate INTEGER, start INTEGER, n_starts INTEGER,
    error TEXT, seconds REAL, host TEXT, finished REAL, routing TEXT,
    PRIMARY KEY (hash, n, rep));
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT NOT NULL, started REAL NOT NULL, updated REAL NOT NULL,
    executor TEXT, workers INTEGER, quick INTEGER, done INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (
    hash TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (hash, key));
"""

#: trailing columns that stores written by earlier versions lack (added when such a store is opened)
LEGACY_COLUMNS = {"results": ("routing",)}

#: columns that describe how a result was computed, not what it is (differ between runs)
VOLATILE = ("seconds", "host", "finished")

#: the first 16 bytes of every SQLite 3 database file
SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(RuntimeError):
    """The results file cannot be used: not a database, another program's database, unwritable, or full.

    The message names the file and the fault; the file is left as it was.

    Examples
    --------
    >>> import os, tempfile
    >>> from moestat.montecarlo import Store, StoreError
    >>> path = os.path.join(tempfile.mkdtemp(), "results.sqlite")
    >>> with open(path, "w") as f:
    ...     _ = f.write("not a database")
    >>> try:
    ...     Store(path)
    ... except StoreError as e:
    ...     print("not a SQLite database" in str(e))
    True
    """


def _expected_columns() -> dict[str, list[str]]:
    """{table: column names} of :data:`SCHEMA`."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(SCHEMA)
        return {t: [c[1] for c in con.execute("PRAGMA table_info(%s)" % t)]
                for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                        "AND name NOT LIKE 'sqlite_%'")}
    finally:
        con.close()


def check_store_file(path: str) -> None:
    """Raise :class:`StoreError` unless ``path`` is absent, empty, or a moestat results database.

    The file is only read (opened read-only), so a foreign file is never changed.

    Parameters
    ----------
    path : str
        The results database a run would open.

    Examples
    --------
    >>> check_store_file("runs/k2/results.sqlite")   # doctest: +SKIP
    StoreError: runs/k2/results.sqlite is not a SQLite database (not a moestat results store); ...
    """
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        raise StoreError("%s is a folder, not a results database" % path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError("cannot read %s: %s" % (path, exc.strerror or exc)) from None
    if not head:
        return  # an empty file is an empty database to SQLite
    if head != SQLITE_MAGIC:
        raise StoreError("%s is not a SQLite database (not a moestat results store); move it away or choose "
                         "another output folder" % path)
    try:
        con = sqlite3.connect("file:%s?mode=ro" % pathname2url(os.path.abspath(path)), uri=True)
        try:
            tables = {t: [c[1] for c in con.execute("PRAGMA table_info(%s)" % t)]
                      for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                              "AND name NOT LIKE 'sqlite_%'")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise StoreError("%s is a damaged or unreadable SQLite database: %s" % (path, exc)) from None
    expected = _expected_columns()
    foreign = sorted(set(tables) - set(expected))
    if foreign:
        raise StoreError("%s is a SQLite database of another program (tables %s), not a moestat results store; "
                         "move it away or choose another output folder" % (path, ", ".join(foreign)))
    for t, cols in tables.items():
        if cols != expected[t] and cols + list(LEGACY_COLUMNS.get(t, ())) != expected[t]:
            raise StoreError("%s holds a table %r with columns (%s), not those of a moestat results store (%s)"
                             % (path, t, ", ".join(cols), ", ".join(expected[t])))


class Store:
    """A results database at ``path`` (created if missing): one row per (spec hash, n, replicate).

    Parameters
    ----------
    path : str
        SQLite file; ``run_experiment`` uses ``<out_dir>/results.sqlite``.

    Raises
    ------
    StoreError
        When ``path`` is not a moestat results database, or cannot be created
        or opened for writing; the file is not modified.

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
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create the folder %s: %s" % (d, exc.strerror or exc)) from None
        check_store_file(self.path)
        effective = os.access in os.supports_effective_ids  # judge as this process, not its real user
        if not os.path.exists(self.path) and not os.access(d, os.W_OK, effective_ids=effective):
            raise StoreError("cannot create %s: the folder is not writable" % self.path)
        self.con = None
        try:
            self.con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable against a killed process
            self.con.executescript(SCHEMA)
            # router summaries per replicate (moestat.routing); stores written before them get the column
            if "routing" not in {r[1] for r in self.con.execute("PRAGMA table_info(results)")}:
                self.con.execute("ALTER TABLE results ADD COLUMN routing TEXT")
        except sqlite3.Error as exc:
            if self.con is not None:
                self.con.close()
            raise StoreError("cannot open %s for writing: %s" % (self.path, exc)) from None

    @contextlib.contextmanager
    def _writing(self):
        """Turn SQLite write failures (disk full, read-only file, I/O error) into a :class:`StoreError`."""
        try:
            yield
        except sqlite3.Error as exc:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            raise StoreError("cannot write to %s: %s; the results stored before are intact"
                             % (self.path, exc)) from None

    def close(self):
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ writing
    def register(self, spec) -> None:
        with self._writing():
            self.con.execute("INSERT OR IGNORE INTO specs VALUES (?, ?, ?, ?)",
                             (spec.hash, spec.name, spec.to_json(), time.time()))

    def write(self, spec_hash: str, rows: list[dict]) -> int:
        """Store finished replicates in one transaction; returns how many were new."""
        now = time.time()
        vals = [(spec_hash, r["n"], r["rep"], json.dumps(r["losses"]), json.dumps(r["loss_errors"]),
                 json.dumps(r["errors"]), json.dumps(r["params"]), r["loglik"], r["n_iter"], int(r["converged"]),
                 int(r["degenerate"]), r["start"], r["n_starts"], r.get("error"), r["seconds"], r.get("host"), now,
                 None if r.get("routing") is None else json.dumps(r["routing"]))
                for r in rows]
        with self._writing():
            cur = self.con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                before = self.con.total_changes
                cur.executemany("INSERT OR IGNORE INTO results VALUES (%s)" % ",".join("?" * 18), vals)
                new = self.con.total_changes - before
                cur.execute("COMMIT")
            except BaseException:
                if self.con.in_transaction:
                    cur.execute("ROLLBACK")
                raise
        return new

    def delete(self, spec_hash: str) -> None:
        """Discard every stored result, session and meta entry of a spec (one transaction)."""
        with self._writing():
            cur = self.con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            for table in ("results", "sessions", "meta"):
                cur.execute("DELETE FROM %s WHERE hash = ?" % table, (spec_hash,))
            cur.execute("COMMIT")

    def set_meta(self, spec_hash: str, key: str, value) -> None:
        with self._writing():
            self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?, ?)", (spec_hash, key, json.dumps(value)))

    def get_meta(self, spec_hash: str, key: str, default=None):
        row = self.con.execute("SELECT value FROM meta WHERE hash = ? AND key = ?", (spec_hash, key)).fetchone()
        return default if row is None else json.loads(row[0])

    # ------------------------------------------------------------------ sessions (wall time across resumes)
    def start_session(self, spec_hash: str, executor: str, workers: int, quick: bool) -> int:
        now = time.time()
        with self._writing():
            cur = self.con.execute("INSERT INTO sessions (hash, started, updated, executor, workers, quick) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", (spec_hash, now, now, executor, workers, int(quick)))
        return int(cur.lastrowid)

    def touch_session(self, sid: int, done: int) -> None:
        with self._writing():
            self.con.execute("UPDATE sessions SET updated = ?, done = done + ? WHERE id = ?",
                             (time.time(), done, sid))

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
            r["routing"] = None if r.get("routing") is None else json.loads(r["routing"])
            r["converged"], r["degenerate"] = bool(r["converged"]), bool(r["degenerate"])
            out.append(r)
        return out

    def frame(self, spec_hash: str, grid=None, replicates: int | None = None, params: bool = False) -> pd.DataFrame:
        """One row per replicate, losses as ``loss_<name>``, numerical errors as ``lerr_<name>``,
        per-parameter errors as ``err_<group.block[j]>``, the fitted router's summary as ``route_<statistic>``
        (:func:`moestat.routing.routing_summary`; NaN for rows stored without one); optionally restricted to a
        grid and replicate count."""
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
            flat.update({"route_%s" % k: v for k, v in (r["routing"] or {}).items()})
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
