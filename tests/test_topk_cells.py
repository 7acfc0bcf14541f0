"""Top-K's boundary-preserving Newton step: the moves it spans keep every routing boundary (the fit itself is
checked by the top-K x ReLU cross test in test_cross_families.py)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from moestat.gating.topk import _cell_null_space, topk_mask

COEF = np.array([[0.0, 0.0], [-1.0, -2.0], [-0.7, -4.0]])   # tests/gate_cases.py's top-K truth, relabelled


def _design(n=4000, seed=0):
    x = np.random.default_rng(seed).uniform(-2.0, 2.0, n)
    return jnp.asarray(np.stack([np.ones(n), x])), jnp.ones(n)


def test_null_space_moves_keep_the_active_sets():
    Xg, w = _design()
    free = jnp.ones((2, 2), dtype=bool)
    Z = np.asarray(_cell_null_space(jnp.asarray(COEF), Xg, w, free, 2, "scores"))
    # two pairs swap ranks 2 / 3 (at x = -0.5 and x = 0.15): 2 constraints on 4 free coefficients
    assert np.linalg.matrix_rank(Z, tol=1e-8) == 2
    scale = COEF[1:].ravel() / np.linalg.norm(COEF[1:])
    np.testing.assert_allclose(Z @ (Z.T @ scale), scale, atol=1e-10)     # scaling the gate is a kept move
    before = np.asarray(topk_mask(jnp.asarray(COEF) @ Xg, 2))
    rng = np.random.default_rng(1)
    for _ in range(5):
        d = (Z @ rng.normal(size=Z.shape[1])).reshape(2, 2) * 0.2
        after = np.asarray(topk_mask(jnp.asarray(COEF + np.vstack([np.zeros((1, 2)), d])) @ Xg, 2))
        assert (after != before).sum() <= 2     # only ties at the boundaries may flip
    # a generic move shifts the boundaries and re-routes many points
    d = np.array([[0.2, 0.0], [0.0, 0.0]])
    after = np.asarray(topk_mask(jnp.asarray(COEF + np.vstack([np.zeros((1, 2)), d])) @ Xg, 2))
    assert (after != before).sum() > 100


def test_fixed_coefficients_do_not_move():
    Xg, w = _design()
    free = jnp.asarray([[True, False], [True, True]])
    Z = np.asarray(_cell_null_space(jnp.asarray(COEF), Xg, w, free, 2, "scores"))
    np.testing.assert_allclose(Z[1], 0.0, atol=1e-12)
