"""JAX set-up: float64 on import, dtype checks, the persistent compile cache.

moestat computes in float64 by default (``engineering.md`` §6: float32
log-likelihoods are only good to ~1e-8 and break monotonicity checks and
likelihood-ratio statistics).  ``jax_enable_x64`` is a process-global flag
that must be set before any JAX array exists, so it is switched on here, once,
when :mod:`moestat` is imported.  Set ``MOESTAT_NO_X64=1`` to leave it alone
(then every kernel refuses float64 input it cannot honour).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

if os.environ.get("MOESTAT_NO_X64", "") not in ("1", "true", "yes"):
    jax.config.update("jax_enable_x64", True)

# TF32 is the default matmul precision on NVIDIA GPUs; statistics need full precision.
jax.config.update("jax_default_matmul_precision", "highest")


def _enable_compile_cache() -> None:
    """Reuse compiled EM programs across processes (tests, workers, CLI runs).

    Compiling one EM configuration costs about a second; the Monte Carlo
    workers and the test suite compile the same programs again and again.
    ``MOESTAT_JAX_CACHE=0`` turns the cache off; a path sets its location.
    """
    setting = os.environ.get("MOESTAT_JAX_CACHE", "")
    if setting in ("0", "false", "no"):
        return
    path = setting or os.path.join(os.path.expanduser("~"), ".cache", "moestat", "jax")
    try:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # every program: a fresh process recompiles nothing
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except Exception:  # a read-only home or an old jax: run without the cache
        pass


_enable_compile_cache()


def float_dtype():
    """The floating dtype moestat computes in (float64 unless x64 is off)."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def x64_enabled() -> bool:
    return bool(jax.config.jax_enable_x64)


def to_device(a, dtype=None):
    """Move a NumPy array to JAX, refusing a silent downcast to float32."""
    a = np.asarray(a)
    if dtype is None:
        dtype = float_dtype() if a.dtype.kind == "f" else a.dtype
    out = jnp.asarray(a, dtype=dtype)
    if a.dtype == np.float64 and out.dtype != jnp.float64 and x64_enabled():
        raise TypeError("internal error: float64 input was cast to %s" % out.dtype)
    return out


def backend() -> str:
    """'cpu', 'gpu' or 'tpu': the platform JAX runs on."""
    return jax.default_backend()
