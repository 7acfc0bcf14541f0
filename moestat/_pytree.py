"""PyTree helpers shared by the gate and expert base classes (inference defaults).

They back the default implementations of ``report`` (the JAX-traceable vector
of reported estimates) and ``permute`` (relabelling experts), so that a new
family gets both for free when its parameters follow the usual layout: every
per-expert leaf has the expert axis first.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def shape_dummy(params):
    """Concrete zeros shaped like ``params`` (whose leaves may be tracers)."""
    return jax.tree_util.tree_map(lambda a: np.zeros(np.shape(a), dtype=np.asarray(0.0).dtype), params)


def free_entries(params, mask_fn):
    """The entries of ``params`` where ``mask_fn(params)`` is True, leaf by leaf in row-major order.

    The mask depends on shapes only, so it is evaluated on concrete dummies
    (``jax.ensure_compile_time_eval``) and the result stays traceable in
    ``params`` (``jax.jacobian`` of it is the delta-method Jacobian).
    """
    with jax.ensure_compile_time_eval():
        masks = jax.tree_util.tree_map(lambda m: np.asarray(m, dtype=bool), mask_fn(shape_dummy(params)))
    leaves = jax.tree_util.tree_leaves(params)
    mleaves = jax.tree_util.tree_leaves(masks)
    parts = [jnp.ravel(a)[np.flatnonzero(np.ravel(m))] for a, m in zip(leaves, mleaves)]
    return jnp.concatenate(parts) if parts else jnp.zeros((0,))


def permute_leading(params, perm):
    """Reorder the expert axis (axis 0) of every leaf whose first dimension is ``len(perm)``.

    ``perm[i]`` is the old index of new expert ``i``.  Works on NumPy and JAX leaves.
    """
    perm = np.asarray(perm, dtype=int)
    k = perm.size

    def one(a):
        if np.ndim(a) >= 1 and np.shape(a)[0] == k:
            return a[perm] if isinstance(a, np.ndarray) else jnp.take(a, perm, axis=0)
        return a
    return jax.tree_util.tree_map(one, params)
