"""Helpers shared by the process pools (bootstrap, Monte Carlo runner)."""
from __future__ import annotations

import contextlib
import os
from concurrent.futures.process import BrokenProcessPool

#: environment for single-threaded numerical libraries in worker processes
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}


def _merged_env(cpu_only: bool) -> dict:
    new = dict(SINGLE_THREAD_ENV)
    old_flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" in old_flags:
        new["XLA_FLAGS"] = old_flags
    elif old_flags:
        new["XLA_FLAGS"] = old_flags + " " + new["XLA_FLAGS"]
    if cpu_only:
        new["JAX_PLATFORMS"] = "cpu"
    return new


@contextlib.contextmanager
def worker_environment(cpu_only: bool = False):
    """Set the single-threaded environment that spawned workers inherit; restore it afterwards.

    Spawned children read these at start-up (before importing JAX), so they are
    set in this process's environment for the pool's lifetime.  ``cpu_only``
    also keeps the workers off an accelerator (many processes on one GPU).
    """
    new = _merged_env(cpu_only)
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def init_worker():
    """Pool initializer: make sure a worker runs BLAS single-threaded."""
    for k, v in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(k, v)


SPAWN_HINT = (
    "a worker process of moestat's process pool died before returning its result. Workers are started "
    "with 'spawn' (JAX is not fork-safe), so a script that starts them must guard its top-level code with "
    "`if __name__ == \"__main__\":` (without the guard every worker re-runs the script and exits); "
    "otherwise the worker ran out of memory or crashed. Use n_jobs=1 / --workers 1 to run in-process.")


def broken_pool_error(exc: BaseException) -> RuntimeError:
    """A RuntimeError that says why a spawned pool breaks and what to do."""
    return RuntimeError(SPAWN_HINT)


__all__ = ["BrokenProcessPool", "SINGLE_THREAD_ENV", "SPAWN_HINT", "broken_pool_error", "init_worker",
           "worker_environment"]
