"""Executors: run tasks in this process, in a local process pool, or on a Dask cluster.

All three have one method, ``imap_unordered(fn, tasks)``, yielding
``(task, result)`` as tasks finish, with at most a few tasks in flight per
worker (so results stream to the store and an interrupted run loses little).

* :class:`InProcess` -- sequential, no start-up cost; used for ``--workers 1``.
* :class:`LocalPool` -- ``concurrent.futures.ProcessPoolExecutor`` with the
  ``spawn`` start method (JAX is not fork-safe), one process per core by
  default, each with BLAS and XLA single-threaded: on CPU the cores are used
  by processes, not threads (``engineering.md`` §7.4).
* :class:`DaskExecutor` -- a ``distributed.Client`` on ``--scheduler ADDRESS``
  (optional extra ``moestat[dask]``); works the same on a LocalCluster, SSH,
  SLURM (dask-jobqueue) or Kubernetes deployment.  The workers need moestat
  installed; a lost worker's tasks are retried by Dask.
"""
from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from .._parallel import BrokenProcessPool, broken_pool_error, init_worker, worker_environment



class InProcess:
    """Run tasks one after another in this process."""

    name = "in-process"
    workers = 1

    def imap_unordered(self, fn, tasks):
        for t in tasks:
            yield t, fn(t)

    def close(self, abort: bool = False):
        pass


def _windowed(submit, tasks, window):
    """Keep at most ``window`` futures in flight; yield (task, result) as they finish."""
    pending = {}
    queue = deque(tasks)
    while queue or pending:
        while queue and len(pending) < window:
            t = queue.popleft()
            pending[submit(t)] = t
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for f in done:
            t = pending.pop(f)
            yield t, f.result()


class LocalPool:
    """A pool of spawned worker processes (default: one per core)."""

    name = "process-pool"

    def __init__(self, workers: int | None = None):
        self.workers = int(workers or os.cpu_count() or 1)
        self._env = worker_environment()
        self._env.__enter__()
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=init_worker)

    def imap_unordered(self, fn, tasks):
        try:
            yield from _windowed(lambda t: self.pool.submit(fn, t), tasks, 2 * self.workers)
        except BrokenProcessPool as exc:
            raise broken_pool_error(exc) from exc

    def close(self, abort: bool = False):
        """Shut the pool down; ``abort`` (interrupted run) also terminates the busy workers."""
        try:
            if abort:
                for proc in list(getattr(self.pool, "_processes", {}).values()):
                    proc.terminate()
            self.pool.shutdown(wait=not abort, cancel_futures=True)
        finally:
            self._env.__exit__(None, None, None)


class DaskExecutor:
    """Tasks on a Dask distributed cluster (``address`` of its scheduler, or a Client)."""

    name = "dask"

    def __init__(self, address):
        try:
            from distributed import Client
        except ImportError as exc:  # the optional extra
            raise ImportError("--scheduler needs Dask distributed: pip install 'moestat[dask]'") from exc
        self._own = not hasattr(address, "submit")
        self.client = Client(address) if self._own else address
        info = self.client.scheduler_info()
        self.workers = max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))
        self.executor = self.client.get_executor(pure=False, retries=2)

    def imap_unordered(self, fn, tasks):
        yield from _windowed(lambda t: self.executor.submit(fn, t), tasks, 2 * self.workers)

    def close(self, abort: bool = False):
        if abort:
            self.executor.shutdown(wait=False)
        if self._own:
            self.client.close()


def make_executor(workers: int | None = None, scheduler=None):
    """The executor for ``--workers`` / ``--scheduler`` (1 worker: in-process)."""
    if scheduler is not None:
        return DaskExecutor(scheduler)
    w = int(workers or os.cpu_count() or 1)
    if w < 1:
        raise ValueError("workers must be >= 1, got %d" % w)
    return InProcess() if w == 1 else LocalPool(w)
