"""Executors: run tasks in this process, in a local process pool, or on a Dask cluster.

All three have one method, ``imap_unordered(fn, tasks)``, yielding
``(task, result)`` as tasks finish, with at most a few tasks in flight per
worker (so results stream to the store and an interrupted run loses little).

* :class:`InProcess` -- sequential, no start-up cost; used for ``--workers 1``.
* :class:`LocalPool` -- spawned worker processes (JAX is not fork-safe), one
  per core by default, each with BLAS and XLA single-threaded: on CPU the
  cores are used by processes, not threads (``engineering.md`` §7.4).  Each
  worker has its own queue, and tasks of one group (one padded size bucket)
  stay on one worker (:class:`AffinityScheduler`), so a bucket's EM program is
  compiled once, not once per worker.
* :class:`DaskExecutor` -- a ``distributed.Client`` on ``--scheduler ADDRESS``
  (optional extra ``moestat[dask]``); works the same on a LocalCluster, SSH,
  SLURM (dask-jobqueue) or Kubernetes deployment.  The workers need moestat
  installed; a lost worker's tasks are retried by Dask.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait

from .._parallel import SPAWN_HINT, init_worker, worker_environment



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


def _pool_worker(inbox, outbox) -> None:
    """Loop of a :class:`LocalPool` process: run ``(tid, fn, task)`` items until ``None`` arrives."""
    init_worker()
    while True:
        item = inbox.get()
        if item is None:
            return
        tid, fn, task = item
        try:
            out = (tid, True, fn(task))
        except BaseException as exc:  # sent back and re-raised in the driver
            out = (tid, False, exc)
        try:
            payload = pickle.dumps(out)
        except Exception as exc:  # an exception or result that cannot cross processes
            payload = pickle.dumps((tid, False, RuntimeError("a worker's %s cannot be sent back: %r"
                                                                % ("error" if not out[1] else "result", exc))))
        outbox.put(payload)


class AffinityScheduler:
    """Which task a worker runs next: tasks of one ``group`` stay on the worker that took the group first.

    A group is the tasks sharing ``task["group"]`` (the harness: one padded size
    bucket, i.e. one compiled EM program), kept in the order given.  A free
    worker continues its own group; when that is done it takes the first group
    nobody has taken; when there is none it helps with the group that has most
    tasks left, but only after a task of that group has finished (then the
    group's compiled program is in the on-disk cache, and the helper loads it
    instead of compiling it a second time).

    Examples
    --------
    >>> from moestat.montecarlo.executors import AffinityScheduler
    >>> s = AffinityScheduler([{"group": g, "i": i} for i, g in enumerate("aabbb")], workers=2)
    >>> [s.next_for(0)["i"], s.next_for(1)["i"], s.next_for(0)["i"]]
    [0, 2, 1]
    >>> s.next_for(0) is None               # group b has started, but no task of it has finished
    True
    >>> s.finished({"group": "b"}); s.next_for(0)["i"]
    4
    """

    def __init__(self, tasks, workers: int):
        self.groups: dict = {}
        for t in tasks:
            self.groups.setdefault(t.get("group") if isinstance(t, dict) else None, deque()).append(t)
        self.owner: dict = {}
        self.warm: set = set()
        self.current = [None] * int(workers)

    @property
    def remaining(self) -> int:
        return sum(len(q) for q in self.groups.values())

    def next_for(self, worker: int, force: bool = False):
        """The next task of ``worker``, or None (nothing it should start now; ``force``: any task left)."""
        g = self.current[worker]
        if g is not None and self.groups.get(g):   # helpers take from the end, the owner from the front
            return self.groups[g].popleft() if self.owner.get(g) == worker else self.groups[g].pop()
        for g, q in self.groups.items():
            if q and g not in self.owner:
                self.owner[g] = worker
                self.current[worker] = g
                return q.popleft()
        ready = [g for g, q in self.groups.items() if q and (g in self.warm or force)]
        if not ready:
            return None
        g = max(ready, key=lambda h: len(self.groups[h]))
        self.current[worker] = g
        return self.groups[g].pop()           # from the end: the owner keeps working from the front

    def finished(self, task) -> None:
        """Record that a task has finished (its group's program is compiled and cached)."""
        self.warm.add(task.get("group") if isinstance(task, dict) else None)


class LocalPool:
    """A pool of spawned worker processes (default: one per core), each with its own queue of tasks.

    Tasks that carry a ``"group"`` key are scheduled by :class:`AffinityScheduler`,
    so that each group's program is compiled by one worker; at most ``depth``
    tasks wait on a worker at a time.
    """

    name = "process-pool"

    def __init__(self, workers: int | None = None, depth: int = 2):
        self.workers = int(workers or os.cpu_count() or 1)
        self.depth = int(depth)
        self._env = worker_environment()
        self._env.__enter__()
        ctx = multiprocessing.get_context("spawn")
        self._outbox = ctx.Queue()
        self._inboxes = [ctx.Queue() for _ in range(self.workers)]
        self._procs = [ctx.Process(target=_pool_worker, args=(q, self._outbox), daemon=True) for q in self._inboxes]
        for p in self._procs:
            p.start()
        self._tid = 0

    def imap_unordered(self, fn, tasks):
        sched = AffinityScheduler(tasks, self.workers)
        busy = [0] * self.workers
        pending: dict = {}
        while sched.remaining or pending:
            for w in range(self.workers):
                while busy[w] < self.depth:
                    t = sched.next_for(w, force=not pending)
                    if t is None:
                        break
                    self._tid += 1
                    self._inboxes[w].put((self._tid, fn, t))
                    pending[self._tid] = (w, t)
                    busy[w] += 1
            try:
                tid, ok, out = pickle.loads(self._outbox.get(timeout=0.5))
            except queue.Empty:
                if not all(p.is_alive() for p in self._procs):
                    raise RuntimeError(SPAWN_HINT) from None
                continue
            if tid not in pending:  # a task of an earlier, abandoned call
                continue
            w, t = pending.pop(tid)
            busy[w] -= 1
            if not ok:
                raise out
            sched.finished(t)
            yield t, out

    def close(self, abort: bool = False):
        """Stop the workers; ``abort`` (interrupted run) terminates them without waiting for their tasks."""
        try:
            for p, q in zip(self._procs, self._inboxes):
                if abort:
                    p.terminate()
                elif p.is_alive():
                    q.put(None)
            for p in self._procs:
                p.join(timeout=None if not abort else 5)
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
