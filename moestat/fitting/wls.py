"""Weighted least squares with some coefficients held fixed, batched over experts.

Shared by the Gaussian experts' closed-form M-step and the Gaussian (GLLiM)
gate's centre update, so it lives below both families.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def constrained_wls(A, b, beta_old, fixed):
    """Solve A beta = b per expert for the free coefficients, fixed ones held at beta_old.

    Parameters
    ----------
    A : array (k, p, p)
        Weighted Gram matrices (one per expert).
    b : array (k, p)
        Right-hand sides.
    beta_old : array (k, p)
        Current coefficients; the fixed ones are returned unchanged.
    fixed : bool array (k, p)

    Returns
    -------
    beta : array (k, p)
        A tiny ridge (1e-13 of the mean diagonal) keeps singular systems finite.
    """
    p = A.shape[-1]
    free = jnp.logical_not(fixed).astype(A.dtype)
    bx = b - jnp.einsum("kij,kj->ki", A, beta_old * (1.0 - free))
    Af = A * free[:, :, None] * free[:, None, :] + jax.vmap(jnp.diag)(1.0 - free)
    scale = jnp.maximum(jnp.trace(A, axis1=1, axis2=2) / p, 1e-300)
    Af = Af + (1e-13 * scale)[:, None, None] * jnp.eye(p, dtype=A.dtype)[None]
    rhs = jnp.where(free > 0, bx, beta_old)
    beta = jnp.linalg.solve(Af, rhs[..., None])[..., 0]
    # the ridge also touches the fixed rows (beta_j = beta_old_j / (1 + ridge)): hold them exactly
    return jnp.where(free > 0, beta, beta_old)
