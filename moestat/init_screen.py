"""Screened starts: many cheap candidate partitions, a short EM run each, the best go on to full EM.

Random restarts fail on hard MoE designs because most random partitions of the
data lead EM to a local maximum.  A steep gate partitions the *gate covariates*
by hyperplanes, and a Voronoi partition around k points is exactly such a
partition (a softmax gate in the limit of large slopes), so candidates are
Voronoi partitions of the standardised gate covariates around random data
points, plus k-means partitions of the gate covariates and of the expert
features.  Every candidate gets M-steps on its partition and a short EM run
(EM stopped at a loose tolerance); the ``n_init`` candidates with the highest
log-likelihood are returned as starting values for the full EM.  Candidates
run in batches of ``n_init`` through the same compiled programs as ordinary
restarts, so screening adds no compilation.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import em
from ._jax import to_device
from .data import standardize_columns
from .init import kmeans_labels, labels_to_resp, random_center_labels


def gate_features(Xg: np.ndarray) -> np.ndarray | None:
    """The non-constant gate columns (n, q), or None when the gate has no covariates."""
    cols = [j for j in range(Xg.shape[1]) if np.ptp(Xg[:, j]) > 0]
    return Xg[:, cols] if cols else None


def candidate_responsibilities(Fg, Fe, w, k, n_candidates, seed) -> np.ndarray:
    """(n_candidates, k, n): k-means on the gate features and on the expert features, then random Voronoi cells."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 104729]))
    w = np.asarray(w)
    feats = [standardize_columns(F, w) for F in (Fg, Fe) if F is not None]
    out = [kmeans_labels(F, w, k, rng) for F in feats]
    Fv = feats[0]
    while len(out) < n_candidates:
        out.append(random_center_labels(Fv, w, k, rng))
    return np.stack([labels_to_resp(lab, k, soften=0.05) for lab in out[:n_candidates]])


def screened_starts(R, base, dat, ctl, fixed, cfg, n_keep: int, seed: int, screen_tol: float = 1e-5,
                    batch_size: int = 1):
    """Short EM from every candidate (batches of ``n_keep``); the ``n_keep`` best parameter sets, stacked.

    R : (M, k, N) padded candidate responsibilities, M a multiple of n_keep.
    Returns (params stacked on a leading axis of n_keep, candidate log-likelihoods (M,)).
    """
    M = R.shape[0]
    em1 = em.EMConfig(gate=cfg.gate, expert=cfg.expert, k=cfg.k, max_iter=1, algorithm="em")
    loose = ctl._replace(tol=jnp.asarray(screen_tol, dtype=ctl.tol.dtype))
    params, lls = [], []
    for b in range(0, M, n_keep):
        p0 = em.params_from_resp(to_device(R[b:b + n_keep]), base, dat, ctl, fixed, em1,
                                 batch_size=min(batch_size, n_keep))
        keys = jax.random.split(jax.random.PRNGKey(seed + 7 * b + 1), n_keep)
        out = em.fit_restarts(p0, dat, loose, fixed, keys, cfg, batch_size=min(batch_size, n_keep))
        params.append(jax.device_get(out.params))
        lls.append(np.asarray(out.loglik))
    ll = np.concatenate(lls)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    best = np.argsort(-ll, kind="stable")[:n_keep]
    stacked = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0)[best], *params)
    return jax.tree_util.tree_map(to_device, stacked), ll
