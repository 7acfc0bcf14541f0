"""Helpers shared by the process pools (bootstrap, Monte Carlo runner)."""
from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

SPAWN_HINT = (
    "a worker process of moestat's process pool died before returning its result. Workers are started "
    "with 'spawn' (JAX is not fork-safe), so a script that starts them must guard its top-level code with "
    "`if __name__ == \"__main__\":` (without the guard every worker re-runs the script and exits); "
    "otherwise the worker ran out of memory or crashed. Use n_jobs=1 / --workers 1 to run in-process.")


def broken_pool_error(exc: BaseException) -> RuntimeError:
    """A RuntimeError that says why a spawned pool breaks and what to do."""
    return RuntimeError(SPAWN_HINT)


__all__ = ["BrokenProcessPool", "SPAWN_HINT", "broken_pool_error"]
