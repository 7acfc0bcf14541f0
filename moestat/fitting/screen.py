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

Every estimator's default fit ranks its own short EM runs with the same basin
rule (:func:`distinct_best`, :func:`map_labels`; :mod:`moestat.fitting.shortem`).
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from . import em
from .._jax import to_device
from ..data.design import standardize_columns
from .starts import kmeans_labels, labels_to_resp, random_center_labels


def gate_features(Xg: np.ndarray) -> np.ndarray | None:
    """The non-constant gate columns (n, q), or None when the gate has no covariates."""
    cols = [j for j in range(Xg.shape[1]) if np.ptp(Xg[:, j]) > 0]
    return Xg[:, cols] if cols else None


def candidate_responsibilities(Fg, Fe, w, k, n_candidates, seed, expert_share: float = 0.5) -> np.ndarray:
    """(n_candidates, k, n) starting partitions as softened responsibilities.

    Candidate 0 is k-means of the gate features, candidate 1 k-means of the
    expert features (for MoE with categorical y: covariates and one-hot
    classes); the rest are Voronoi cells around random data points, a share
    ``expert_share`` of them in the expert features and the others in the
    gate features.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 104729]))
    w = np.asarray(w)
    Fg = standardize_columns(Fg, w) if Fg is not None else None
    Fe = standardize_columns(Fe, w)
    Fg = Fe if Fg is None else Fg
    out = [kmeans_labels(Fg, w, k, rng), kmeans_labels(Fe, w, k, rng)]
    n_expert = int(round(expert_share * (n_candidates - 2)))
    for j in range(n_candidates - 2):
        # spread the expert-feature candidates evenly through the list (batches stay mixed)
        use_e = int((j + 1) * n_expert / max(n_candidates - 2, 1)) > int(j * n_expert / max(n_candidates - 2, 1))
        out.append(random_center_labels(Fe if use_e else Fg, w, k, rng))
    return np.stack([labels_to_resp(lab, k, soften=0.05) for lab in out[:n_candidates]])


def partition_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of points two labellings put together, under the best matching of their labels."""
    table = np.bincount(a * k + b, minlength=k * k).reshape(k, k).astype(np.float64)
    return _matched_total(table) / max(a.size, 1)


def _matched_total(table: np.ndarray) -> float:
    """Largest sum of entries of a square table over a one-to-one matching of its rows and columns.

    Small tables are searched exhaustively (at most 8! matchings): a first fit
    then does not import ``scipy.optimize`` (about half a second).
    """
    k = table.shape[0]
    if k <= 8:
        perms = np.array(list(itertools.permutations(range(k))))
        return float(table[np.arange(k), perms].sum(1).max())
    from scipy.optimize import linear_sum_assignment
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum())


#: two fits whose MAP partitions agree on more than this share of the points are in one basin
SAME_BASIN = 0.99


def distinct_best(ll: np.ndarray, labels: np.ndarray, k: int, n_keep: int, same: float = SAME_BASIN,
                  fill: bool = True) -> np.ndarray:
    """Indices of the n_keep best candidates, skipping any whose partition repeats a better one's.

    Two candidates whose MAP partitions agree on more than ``same`` of the
    points are taken to be in the same basin; when fewer than ``n_keep``
    distinct basins exist, the best repeats fill the rest (``fill``), or
    only the distinct candidates with a finite ``ll`` are returned.
    """
    order = np.argsort(-ll, kind="stable")
    kept: list[int] = []
    for c in order:
        if not np.isfinite(ll[c]):
            continue
        if all(partition_agreement(labels[c], labels[j], k) < same for j in kept):
            kept.append(int(c))
        if len(kept) == n_keep:
            break
    if not fill:
        return np.array(kept, dtype=int)
    rest = [int(c) for c in order if int(c) not in kept]
    return np.array((kept + rest)[:n_keep])


def map_labels(params, dat, cfg, n_live: int) -> np.ndarray:
    """MAP expert of each of the first ``n_live`` points under each fit of a stack (S, n_live)."""
    S = jax.tree_util.tree_leaves(params)[0].shape[0]
    out = []
    for r in range(S):
        _, tau, _ = em.evaluate(jax.tree_util.tree_map(lambda a: a[r], params), dat, cfg)
        out.append(np.asarray(tau)[:, :n_live].argmax(0))
    return np.stack(out)


def screened_starts(R, base, dat, ctl, fixed, cfg, n_keep: int, seed: int, screen_tol: float = 1e-4,
                    batch_size: int = 1, n_live: int | None = None):
    """Short EM from every candidate (batches of ``n_keep``); the ``n_keep`` best distinct ones, stacked.

    R : (M, k, N) padded candidate responsibilities, M a multiple of n_keep.
    Returns (params stacked on a leading axis of n_keep, candidate log-likelihoods (M,)).
    """
    M = R.shape[0]
    n_live = R.shape[2] if n_live is None else n_live
    em1 = em.EMConfig(gate=cfg.gate, expert=cfg.expert, k=cfg.k, max_iter=1, algorithm="em")
    loose = ctl._replace(tol=jnp.asarray(screen_tol, dtype=ctl.tol.dtype))
    params, lls, labels = [], [], []
    for b in range(0, M, n_keep):
        p0 = em.params_from_resp(to_device(R[b:b + n_keep]), base, dat, ctl, fixed, em1,
                                 batch_size=min(batch_size, n_keep))
        keys = jax.random.split(jax.random.PRNGKey(seed + 7 * b + 1), n_keep)
        out = jax.device_get(em.fit_restarts(p0, dat, loose, fixed, keys, cfg, batch_size=min(batch_size, n_keep)))
        params.append(out.params)
        lls.append(np.asarray(out.loglik))
        labels.append(map_labels(out.params, dat, cfg, n_live))
    ll = np.concatenate(lls)
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    best = distinct_best(ll, np.concatenate(labels), cfg.k, n_keep)
    stacked = jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0)[best], *params)
    return jax.tree_util.tree_map(to_device, stacked), ll
