"""Faults around ``moestat reproduce``: a bad results file, an unwritable folder, a full disk, a bad spec file,
and concurrent runs into one folder.

Each fault must give one line on stderr naming the file and the problem, a non-zero exit, and leave the files
it found as they were (their bytes are compared).
"""
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import sys
import tempfile

import pandas as pd
import pytest

from moestat.cli import main
from moestat.montecarlo import Store, StoreError
from moestat.montecarlo.store import stable_table

from test_montecarlo import tiny_spec

pytestmark = pytest.mark.slow   # skipped by the fast tier (pytest -m "not slow"); CI runs it

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_spec():
    """Two sizes x two replicates of the tiny spec: four fits."""
    return tiny_spec(grid={"full": [{"values": [150, 300]}], "quick": [{"values": [150]}]},
                     replicates={"full": 2, "quick": 1})


@pytest.fixture
def spec_file(tmp_path):
    p = tmp_path / "small.json"
    p.write_text(json.dumps(small_spec().raw))
    return p


def reproduce(capsys, spec_path, out, *extra):
    """Run the CLI in this process; (exit code, stderr lines)."""
    code = main(["reproduce", str(spec_path), "--out", str(out), "--workers", "1", "--no-progress", "--no-figure",
                 *extra])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def one_fault_line(lines, *words):
    """The run printed its log lines and exactly one fault line, which names ``words``, and no traceback."""
    faults = [line for line in lines if line.startswith("moestat reproduce: ")]
    assert len(faults) == 1, lines
    assert not any("Traceback" in line for line in lines), lines
    for w in words:
        assert w in faults[0], (w, faults[0])
    return faults[0]


# ---------------------------------------------------------------------------------------------- bad results file

def test_results_file_that_is_not_a_database_is_refused_untouched(tmp_path, spec_file, capsys):
    out = tmp_path / "run"
    out.mkdir()
    db = out / "results.sqlite"
    content = b"n,rep,loss\n150,0,0.1\n" * 50
    db.write_bytes(content)
    code, lines = reproduce(capsys, spec_file, out, "--resume")
    assert code == 1
    one_fault_line(lines, str(db), "is not a SQLite database")
    assert db.read_bytes() == content
    assert sorted(os.listdir(out)) == ["results.sqlite"]


@pytest.mark.parametrize("tables, problem", [
    (["CREATE TABLE results (id INTEGER PRIMARY KEY, value REAL)", "CREATE TABLE users (name TEXT)"],
     "a SQLite database of another program (tables users)"),
    (["CREATE TABLE results (id INTEGER PRIMARY KEY, value REAL)"], "holds a table 'results' with columns (id, value)"),
])
def test_foreign_sqlite_file_is_refused_untouched(tmp_path, spec_file, capsys, tables, problem):
    out = tmp_path / "run"
    out.mkdir()
    db = out / "results.sqlite"
    con = sqlite3.connect(db)
    for sql in tables:
        con.execute(sql)
    con.execute("INSERT INTO results VALUES (1, 2.5)")
    con.commit()
    con.close()
    before = db.read_bytes()
    code, lines = reproduce(capsys, spec_file, out, "--resume")
    assert code == 1
    one_fault_line(lines, str(db), problem)
    assert db.read_bytes() == before
    assert sorted(os.listdir(out)) == ["results.sqlite"]   # no journal or WAL file was created beside it


def test_store_opens_an_empty_file_and_its_own_database(tmp_path):
    spec = small_spec()
    db = tmp_path / "results.sqlite"
    db.write_bytes(b"")
    with Store(db) as st:
        st.register(spec)
    with Store(db) as st:   # reopening its own database passes the schema check
        assert st.count(spec.hash) == 0
    with pytest.raises(StoreError, match="is a folder"):
        Store(tmp_path)


# ---------------------------------------------------------------------------------------------- unwritable folder

def test_output_below_a_regular_file_is_one_line(tmp_path, spec_file, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    code, lines = reproduce(capsys, spec_file, blocker / "run")
    assert code == 1
    one_fault_line(lines, "cannot create the output folder %s" % (blocker / "run"))
    assert blocker.read_text() == "x"


@contextlib.contextmanager
def unprivileged():
    """File permissions apply to this process inside the block (root drops its effective uid to nobody)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_read_only_output_folder_is_one_line(capsys):
    folder = tempfile.mkdtemp(prefix="moestat-ro-")   # in the system temp folder, reachable by any user
    spec_file = os.path.join(folder, "small.json")
    try:
        with open(spec_file, "w") as fh:
            json.dump(small_spec().raw, fh)
        os.chmod(spec_file, 0o644)
        os.chmod(folder, 0o555)
        with unprivileged():
            with pytest.raises(StoreError, match="cannot create .*results.sqlite: the folder is not writable"):
                Store(os.path.join(folder, "results.sqlite"))
            code, lines = reproduce(capsys, spec_file, folder)
        assert code == 1
        one_fault_line(lines, os.path.join(folder, "results.sqlite"), "not writable")
        assert os.listdir(folder) == ["small.json"]
    finally:
        os.chmod(folder, 0o755)
        os.remove(spec_file)
        os.rmdir(folder)


# ---------------------------------------------------------------------------------------------- full disk

ROW = {"n": 10, "rep": 0, "losses": {"D1": 0.25}, "loss_errors": {}, "errors": {}, "params": {}, "loglik": -1.5,
       "n_iter": 3, "converged": True, "degenerate": False, "start": 0, "n_starts": 1, "error": None, "seconds": 0.1}


def fill_up(con):
    """Make the database full at its present size: SQLite's own SQLITE_FULL ('database or disk is full')."""
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.execute("PRAGMA max_page_count = %d" % pages)


def test_full_database_keeps_every_earlier_row(tmp_path):
    spec = small_spec()
    db = tmp_path / "results.sqlite"
    with Store(db) as st:
        st.register(spec)
        assert st.write(spec.hash, [ROW, dict(ROW, rep=1)]) == 2
        before = stable_table(st, spec.hash)
        fill_up(st.con)
        big = [dict(ROW, rep=r, params={"blob": "x" * 4000}) for r in range(2, 40)]
        with pytest.raises(StoreError, match="cannot write to %s: database or disk is full" % db):
            st.write(spec.hash, big)
        assert stable_table(st, spec.hash) == before   # the failed transaction stored nothing
    with Store(db) as st:                              # the file still opens and holds the earlier rows
        assert stable_table(st, spec.hash) == before
        assert st.write(spec.hash, big[:1]) == 1       # with space again, writing goes on


def test_full_disk_mid_run_then_resume(tmp_path, spec_file, capsys, monkeypatch):
    out = tmp_path / "run"
    db = out / "results.sqlite"
    original = Store.write
    calls = []

    def write_then_fill(self, spec_hash, rows):
        calls.append(len(rows))
        if len(calls) == 2:                      # the disk fills after the first replicate
            fill_up(self.con)
            rows = [dict(r, params={"blob": "x" * 100000}) for r in rows]
        return original(self, spec_hash, rows)

    monkeypatch.setattr(Store, "write", write_then_fill)
    code, lines = reproduce(capsys, spec_file, out)
    assert code == 1
    one_fault_line(lines, "cannot write to %s: database or disk is full" % db, "intact")
    monkeypatch.setattr(Store, "write", original)
    with Store(db) as st:
        first = stable_table(st, small_spec().hash)
    assert len(first) == 1

    # a full disk while writing an output file: the earlier file is kept whole and no partial file remains
    code, lines = reproduce(capsys, spec_file, out, "--resume")
    assert code == 0
    slopes = (out / "slopes.csv").read_bytes()
    to_csv = pd.DataFrame.to_csv

    def no_space(self, path=None, *args, **kwargs):
        if path is not None and "slopes" in os.fspath(path):
            with open(path, "w") as fh:
                fh.write("partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
        return to_csv(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    code, lines = reproduce(capsys, spec_file, out, "--resume")
    assert code == 1
    one_fault_line(lines, "slopes", "No space left on device", "--resume")
    assert (out / "slopes.csv").read_bytes() == slopes
    assert not [f for f in os.listdir(out) if "partial" in f]
    with Store(db) as st:
        table = stable_table(st, small_spec().hash)
    assert len(table) == 4 and first[0] in table


# ---------------------------------------------------------------------------------------------- bad spec file

def test_spec_file_that_is_not_json_is_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text('{"name": "x", "truth": {')
    code, lines = reproduce(capsys, bad, tmp_path / "run")
    assert code == 2
    one_fault_line(lines, "the spec file %s is not valid JSON" % bad, "line 1")
    assert bad.read_text() == '{"name": "x", "truth": {'
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("change, problem", [
    (lambda raw: raw.pop("losses"), "lacks field(s): losses"),
    (lambda raw: raw.update(grid=[150, 300]), "field 'grid' must be a JSON object"),
    (lambda raw: raw.update(replicates={"full": "two", "quick": 1}), "replicates.full must be a positive integer"),
    (lambda raw: raw["truth"].pop("params"), "a field of the spec is missing or malformed"),
])
def test_spec_file_missing_or_malformed_field_is_one_line(tmp_path, capsys, change, problem):
    raw = json.loads(json.dumps(small_spec().raw))
    change(raw)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(raw))
    code, lines = reproduce(capsys, path, tmp_path / "run")
    assert code == 2
    line = one_fault_line(lines, problem)
    assert str(path) in line or "'tiny-k2'" in line   # the file, or the experiment it names
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- concurrent runs

def test_concurrent_runs_into_one_folder_store_each_replicate_once(tmp_path, spec_file):
    """Two processes resume the same experiment into one folder at once: every replicate is stored exactly once,
    with the values of a single uninterrupted run."""
    out = tmp_path / "shared"
    code = ("import sys; from moestat.cli import main; sys.exit(main(['reproduce', %r, '--out', %r, '--workers', "
            "'1', '--resume', '--no-progress', '--no-figure']))" % (str(spec_file), str(out)))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    with Store(out / "results.sqlite") as st:
        spec = small_spec()
        rows = st.con.execute("SELECT n, rep, COUNT(*) FROM results WHERE hash = ? GROUP BY n, rep",
                              (spec.hash,)).fetchall()
        shared = stable_table(st, spec.hash)
    assert sorted(rows) == [(150, 0, 1), (150, 1, 1), (300, 0, 1), (300, 1, 1)]
    from moestat.montecarlo import run_experiment
    single = tmp_path / "single"
    run_experiment(small_spec(), out_dir=str(single), workers=1, progress=False, figures=False, n_boot=50)
    with Store(single / "results.sqlite") as st:
        assert stable_table(st, small_spec().hash) == shared
