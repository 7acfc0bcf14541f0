"""Helpers shared by the end-to-end benchmarks (``flexmix_compare.py``, ``first_fit.py``, ``scale.py``).

The end-to-end benchmarks time what a user runs: whole processes, started
fresh, pinned to one core.  This module holds what they share:

* :func:`simulate_moe` (seeded by :func:`cell_seed`) -- a k-expert softmax-gated Gaussian mixture of experts
  on d standard-normal covariates, drawn with NumPy only (the same law as
  ``../shared/peers/flexmix_timing.R``), so the data do not depend on the
  package under test;
* :func:`run_measured` -- run a command as a child process and measure it from
  outside: wall time, CPU time and peak resident memory (``os.wait4``), with a
  time limit and an optional memory limit (polled from ``/proc``);
* :func:`python_cmd`, :func:`benchmark_env` -- the command line and
  environment of a fresh, one-core Python process that imports this
  worktree's ``moestat``;
* :func:`write_results`, :func:`print_table`, :func:`machine_info` -- output.

Only the public API of ``moestat`` is used by the benchmarks, so they keep
working when the package's internal modules move.
"""
from __future__ import annotations

import csv
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
RUNNER = HERE / "_fit_once.py"


def simulate_moe(n: int, k: int, d: int, seed):
    """Draw n points from a k-expert softmax-gated Gaussian MoE with d covariates.

    The law of ``flexmix_timing.R``: x ~ N(0, I_d); gate log-odds against
    expert 1 with coefficients N(0, 1.5^2); expert coefficients N(0, 2^2) with
    intercepts spread over [-3, 3]; standard deviations spread over [0.5, 1].

    Parameters
    ----------
    n, k, d : int
        Points, experts and covariates (an intercept enters gate and experts).
    seed : int or sequence of int
        Seed of NumPy's ``default_rng``; the parameters and the data both come from it.

    Returns
    -------
    X : ndarray (n, d)
    y : ndarray (n,)
    loglik_true : float
        Log-likelihood of the data at the true parameters.

    Examples
    --------
    >>> X, y, ll = simulate_moe(100, 3, 2, seed=0)
    >>> X.shape, y.shape
    ((100, 2), (100,))
    """
    rng = np.random.default_rng(seed)
    gate = np.column_stack([np.zeros(d + 1), rng.normal(0.0, 1.5, size=(d + 1, k - 1))])   # (d+1, k)
    coef = rng.normal(0.0, 2.0, size=(d + 1, k))
    coef[0] = np.linspace(-3.0, 3.0, k)
    sd = np.linspace(0.5, 1.0, k)
    X = rng.standard_normal((n, d))
    X1 = np.column_stack([np.ones(n), X])
    eta = X1 @ gate
    logp = eta - eta.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    z = (np.exp(logp).cumsum(1) > rng.random((n, 1))).argmax(1)
    mu = X1 @ coef
    y = mu[np.arange(n), z] + sd[z] * rng.standard_normal(n)
    lj = logp - 0.5 * np.log(2 * np.pi * sd ** 2) - 0.5 * ((y[:, None] - mu) / sd) ** 2
    m = lj.max(1)
    loglik = float(np.sum(m + np.log(np.exp(lj - m[:, None]).sum(1))))
    return X, y, loglik


def cell_seed(n: int, k: int, d: int) -> tuple:
    """The seed of the data of cell (n, k, d), shared by every benchmark that draws it."""
    return (12, int(n), int(k), int(d))


def write_csv_data(path, X: np.ndarray, y: np.ndarray) -> None:
    """Write columns y, x1..xd with 17 significant digits, so every reader gets the same doubles."""
    names = ["y"] + ["x%d" % (j + 1) for j in range(X.shape[1])]
    np.savetxt(path, np.column_stack([y, X]), fmt="%.17g", delimiter=",", header=",".join(names), comments="")


def benchmark_env(**extra) -> dict:
    """Environment of a benchmark child: this worktree first on the path, one BLAS/OpenMP thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    env.update({key: str(val) for key, val in extra.items()})
    return env


def pinned(cmd: list, cpu: int | None) -> list:
    """Prefix ``taskset -c cpu`` (when taskset exists and cpu is not None)."""
    if cpu is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", str(cpu)] + list(cmd)


def python_cmd(*args) -> list:
    """A fresh interpreter (the one running the benchmark) with the given arguments."""
    return [sys.executable] + [str(a) for a in args]


def _rss_mib(pid, field: str = "VmRSS") -> float:
    """A memory field of ``/proc/PID/status`` in MiB (VmRSS: resident now; VmHWM: peak); 0 where unreadable."""
    try:
        with open("/proc/%s/status" % pid) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current value (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_now_and_peak() -> tuple:
    """This process's resident memory now and its peak since start (or the last reset), MiB."""
    return _rss_mib("self"), _rss_mib("self", "VmHWM")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads), from ``/proc/PID/stat``; 0 if unreadable."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def run_measured(cmd: list, env: dict | None = None, timeout_s: float | None = None,
                 mem_limit_mib: float | None = None, poll_s: float = 0.1, cwd=None,
                 cpu_limit_s: float | None = None) -> dict:
    """Run ``cmd`` as a child process and measure it from outside.

    Parameters
    ----------
    cmd : list of str
    env : dict, optional
    timeout_s : float, optional
        Kill the child (SIGKILL) after this many seconds of wall time.
    cpu_limit_s : float, optional
        Kill the child after this many seconds of CPU time (polled from
        ``/proc``).  On a shared machine the CPU time is the work done; the
        wall time also holds the waits for the other users.
    mem_limit_mib : float, optional
        Kill the child when its resident memory (``/proc/PID/status``, polled
        every ``poll_s``) exceeds this many MiB.
    poll_s : float
    cwd : path, optional

    Returns
    -------
    dict
        ``wall_s`` (from start to exit, measured here), ``cpu_s`` (user + system
        CPU of the child, ``os.wait4``), ``max_rss_mib`` (the kernel's peak
        resident set of the child), ``watched_rss_mib`` (largest polled value),
        ``returncode``, ``timed_out`` (past either time limit), ``killed_for_memory``,
        ``stdout``, ``stderr``.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict = {"stdout": [], "stderr": []}
    readers = [threading.Thread(target=lambda s=s, f=f: out[s].append(f.read()), daemon=True)
               for s, f in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    timed_out = killed_for_memory = False
    watched = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        watched = max(watched, _rss_mib(proc.pid))
        if mem_limit_mib is not None and watched > mem_limit_mib:
            killed_for_memory = True
            proc.kill()
        elif ((timeout_s is not None and time.perf_counter() - t0 > timeout_s)
              or (cpu_limit_s is not None and _cpu_s(proc.pid) > cpu_limit_s)):
            timed_out = True
            proc.kill()
        time.sleep(poll_s)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_mib": usage.ru_maxrss / 1024.0,
            "watched_rss_mib": watched, "returncode": proc.returncode, "timed_out": timed_out,
            "killed_for_memory": killed_for_memory, "stdout": "".join(out["stdout"]),
            "stderr": "".join(out["stderr"])}


def last_json(text: str) -> dict | None:
    """The last line of ``text`` that parses as a JSON object (a child's result line), or None."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def machine_info() -> dict:
    """What the numbers were measured on: CPU, cores, memory, load, versions, time (UTC)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = round(int(fh.readline().split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem,
            "load_average": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "numpy": np.__version__, "when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def write_json(stem: str, obj: dict) -> pathlib.Path:
    """Write ``results/<stem>.json``; returns its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (stem + ".json")
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1, default=float)
    return path


def write_results(rows: list, stem: str, meta: dict) -> tuple:
    """Write ``results/<stem>.csv`` (rows) and ``results/<stem>.json`` (meta + rows); returns both paths."""
    RESULTS.mkdir(exist_ok=True)
    csv_path = RESULTS / (stem + ".csv")
    if rows:
        fields = list(dict.fromkeys(key for row in rows for key in row))
        with open(csv_path, "w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=fields)
            wr.writeheader()
            wr.writerows(rows)
    return csv_path, write_json(stem, {**meta, "rows": rows})


def fmt(value, spec: str = ".3g") -> str:
    """A table cell: '-' for None/NaN, else ``format(value, spec)`` for numbers."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def print_table(header: list, rows: list) -> None:
    """Print rows (lists of cells, already strings) under a header, columns right-aligned."""
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h)) for i, h in enumerate(header)]
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


def cached_reference_or_exit(spec, name: str):
    """The spec's cached reference fit (None when it has none); exits with a hint when it is not cached yet."""
    if not spec.raw.get("reference"):
        return None
    from moestat.montecarlo.reference import cached_reference
    ref = cached_reference(spec)
    if ref is None:
        raise SystemExit("%s: its reference fit is not in the per-user cache; run `moestat reproduce %s` once"
                         % (name, name.partition(":")[0]))
    return ref
