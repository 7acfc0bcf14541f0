"""Helpers shared by the process pools (bootstrap, Monte Carlo runner)."""
from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures.process import BrokenProcessPool


@functools.lru_cache(maxsize=1)
def threadpools():
    """The process's native thread pools (BLAS, OpenMP) as a ``threadpoolctl.ThreadpoolController``, found once.

    ``threadpools().limit(limits=1)`` is ``threadpool_limits(1)`` without the scan of the loaded libraries
    that every ``threadpool_limits`` call makes (~1.6 ms per call here; a limit alone ~0.03 ms).  Libraries
    loaded after the first call are not seen: moestat's (NumPy's, SciPy's BLAS) are loaded by then.
    """
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


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
    """Pool initializer: make sure a worker runs BLAS single-threaded, with :func:`keep_heap_memory`."""
    for k, v in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(k, v)
    keep_heap_memory()


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_heap_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory (glibc only; returns whether it applied).

    Every call of a compiled XLA:CPU program allocates its temporary buffers
    (tens of MB at n = 1e5) and frees them on return; glibc serves blocks
    that large with fresh ``mmap`` pages and unmaps them when freed, so every
    call pays ~10^4 page faults (the kernel zeroes each page).  With
    ``M_MMAP_MAX = 0`` and a high trim threshold, freed buffers stay in the
    process and the next call reuses them: the EM program of a demystifying-k4
    replicate at n = 3e4 / 1e5 costs 12 % / 3 % less CPU (medians of interleaved
    calls, ``benchmarks/mc_padding_heap.py``).  The price is that the process keeps its peak
    heap, so this is set only in processes moestat owns: the Monte Carlo and
    bootstrap workers and the ``moestat`` command line, never on ``import moestat``.
    """
    import ctypes
    import ctypes.util
    import sys
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # musl and other C libraries: nothing to tune
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


SPAWN_HINT = (
    "a worker process of moestat's process pool died before returning its result. Workers are started "
    "with 'spawn' (JAX is not fork-safe), so a script that starts them must guard its top-level code with "
    "`if __name__ == \"__main__\":` (without the guard every worker re-runs the script and exits); "
    "otherwise the worker ran out of memory or crashed. Use n_jobs=1 / --workers 1 to run in-process.")


def broken_pool_error(exc: BaseException) -> RuntimeError:
    """A RuntimeError that says why a spawned pool breaks and what to do."""
    return RuntimeError(SPAWN_HINT)


__all__ = ["BrokenProcessPool", "SINGLE_THREAD_ENV", "SPAWN_HINT", "broken_pool_error", "init_worker",
           "keep_heap_memory", "worker_environment"]
