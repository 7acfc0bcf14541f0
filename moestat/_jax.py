"""JAX helpers: the float dtype, dtype-checked transfers, the backend.

JAX runs with moestat's settings (float64, full-precision matrix products, the
on-disk compile cache): ``import moestat`` applied them (:mod:`moestat._config`)
before this module, like any submodule, could be imported.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


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
