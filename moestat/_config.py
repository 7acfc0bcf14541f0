"""The JAX settings moestat needs, applied when :mod:`moestat` is imported -- without importing JAX.

moestat computes in float64 by default (``engineering.md`` §6: float32
log-likelihoods are only good to ~1e-8 and break monotonicity checks and
likelihood-ratio statistics).  ``jax_enable_x64`` is a process-global flag
that must be set before any JAX array exists.  When JAX is not imported yet,
the settings go into the environment variables that JAX reads when it is
imported (so ``import moestat`` stays cheap and JAX loads with the first
fit); when it is, they are set on ``jax.config`` directly.

* ``MOESTAT_NO_X64=1`` leaves the float64 flag alone (then every kernel
  refuses float64 input it cannot honour).
* Matrix products run at full precision (TF32 is the default on NVIDIA GPUs).
* Compiled programs are cached on disk (``~/.cache/moestat/jax``), every one
  of them, so a fresh process recompiles nothing it compiled before;
  ``MOESTAT_JAX_CACHE=0`` turns the cache off, a path moves it.  The fit's
  programs are also kept traced (:mod:`moestat.fitting.programs`, in
  ``programs/`` there), so a fresh process does not trace them again.
"""
from __future__ import annotations

import os
import sys


def _cache_dir() -> str | None:
    setting = os.environ.get("MOESTAT_JAX_CACHE", "")
    if setting in ("0", "false", "no"):
        return None
    path = setting or os.path.join(os.path.expanduser("~"), ".cache", "moestat", "jax")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:  # a read-only home: run without the cache
        return None
    return path


def settings() -> dict:
    """The ``jax.config`` options moestat sets, name -> value."""
    out: dict = {}
    if os.environ.get("MOESTAT_NO_X64", "") not in ("1", "true", "yes"):
        out["jax_enable_x64"] = True
    out["jax_default_matmul_precision"] = "highest"
    path = _cache_dir()
    if path is not None:
        out.update(jax_compilation_cache_dir=path, jax_persistent_cache_min_compile_time_secs=0.0,
                   jax_persistent_cache_min_entry_size_bytes=0)
    return out


def apply() -> None:
    """Put :func:`settings` into effect: on ``jax.config`` if JAX is imported, else in the environment."""
    if "jax" in sys.modules:
        import jax
        for name, value in settings().items():
            try:
                jax.config.update(name, value)
            except Exception:  # an option this JAX version does not know
                pass
        return
    for name, value in settings().items():
        os.environ[name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
