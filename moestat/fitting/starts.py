"""Starting values: k-means and random partitions, user labels, responsibilities or parameters.

A start is a matrix of responsibilities (k, n); :func:`moestat.fitting.em.params_from_resp`
turns it into parameters with M-steps, so every gate/expert family gets
the same initialisations for free.  Default (``init=None``): start 0 is a
weighted k-means++ / Lloyd partition of the standardised [x, y] features, the
others alternate between k-means from other seeds and random-centre Voronoi
partitions, which break symmetry with localised groups (random hard labels, as
flexmix uses, start every expert at nearly the same fit).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..data.design import standardize_columns
from . import em

STRATEGIES = ("kmeans", "random", "random_centers")


#: k-means runs on a subsample of this many points when there are more than twice as many
KMEANS_SUBSAMPLE = 8192
#: Lloyd iterations on the subsample at most
KMEANS_SUBSAMPLE_ITER = 20


def kmeans_labels(F: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 50) -> np.ndarray:
    """Weighted k-means++ seeding followed by Lloyd iterations; returns labels (n,).

    With more than ``2 * KMEANS_SUBSAMPLE`` points of positive weight, seeding
    and at most ``KMEANS_SUBSAMPLE_ITER`` Lloyd iterations run on
    ``KMEANS_SUBSAMPLE`` of them drawn without replacement (a start needs a
    partition, not the exact k-means optimum; the NumPy passes over all points
    would cost more than the EM run), and every point then goes to its nearest centre.
    """
    live = np.flatnonzero(w > 0)
    if live.size > 2 * KMEANS_SUBSAMPLE:
        sub = np.sort(rng.choice(live, size=KMEANS_SUBSAMPLE, replace=False))
        return _nearest(F, _lloyd(F[sub], w[sub], k, rng, min(n_iter, KMEANS_SUBSAMPLE_ITER))[0])
    return _lloyd(F, w, k, rng, n_iter)[1]


def _columns(F: np.ndarray) -> list:
    """The columns of F (n, q) as contiguous arrays (what :func:`_nearest` passes over)."""
    return [np.ascontiguousarray(F[:, j]) for j in range(F.shape[1])]


def _nearest(F: np.ndarray, C: np.ndarray, cols: list | None = None) -> np.ndarray:
    """Index of the nearest centre C (k, q) of each row of F (n, q) (the first of equally near ones).

    Squared distances are summed column by column and compared centre by centre (NumPy's argmin over a
    short axis is ~3x slower than these k passes at k = 3): the same result as ``D.argmin(1)``.
    ``cols``: F's :func:`_columns`, when the caller keeps them across calls (Lloyd's iterations).
    """
    cols = _columns(F) if cols is None else cols

    def dist(c):
        d = (cols[0] - c[0]) ** 2
        for j in range(1, len(cols)):
            d += (cols[j] - c[j]) ** 2
        return d

    best, labels = dist(C[0]), np.zeros(F.shape[0], dtype=np.intp)
    for i in range(1, C.shape[0]):
        d = dist(C[i])
        closer = d < best
        labels[closer] = i
        np.minimum(best, d, out=best)
    return labels


def _lloyd(F: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator, n_iter: int):
    """Weighted k-means++ seeding and Lloyd iterations on the rows of F: centres (k, q) and labels (n,)."""
    n = F.shape[0]
    live = np.flatnonzero(w > 0)
    p = w[live] / w[live].sum()
    centers = [F[live[rng.choice(live.size, p=p)]]]
    d2 = ((F - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        q = w * d2
        if q.sum() <= 0:
            centers.append(F[live[rng.integers(live.size)]])
        else:
            centers.append(F[rng.choice(n, p=q / q.sum())])
        d2 = np.minimum(d2, ((F - centers[-1]) ** 2).sum(1))
    C = np.array(centers)
    labels = np.zeros(n, dtype=int)
    cols = _columns(F)
    wcols = [w * c for c in cols]    # the columns of w[:, None] * F, contiguous (bincount copies strided weights)
    for it in range(n_iter):
        new = _nearest(F, C, cols)
        if it > 0 and np.array_equal(new, labels):
            break
        labels = new
        # weighted centroids by bincount (points in order, as the masked sums were); zero-weight points add 0
        mass = np.bincount(labels, weights=w, minlength=k)
        sums = np.stack([np.bincount(labels, weights=wc, minlength=k) for wc in wcols], 1)
        keep = mass > 0          # a centre whose points all have weight 0 (or none) stays where it was
        C[keep] = sums[keep] / mass[keep, None]
    return C, labels


def random_center_labels(F: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Voronoi partition around k distinct random data points."""
    live = np.flatnonzero(w > 0)
    idx = rng.choice(live, size=min(k, live.size), replace=False)
    D = ((F[:, None, :] - F[idx][None]) ** 2).sum(-1)
    return D.argmin(1)


def labels_to_resp(labels: np.ndarray, k: int, soften: float = 0.0) -> np.ndarray:
    """One-hot (k, n) responsibilities from labels, optionally mixed with uniform weights."""
    R = np.full((k, labels.shape[0]), soften / k if soften else 0.0)
    # (1 - soften) * 1 + soften / k, as the mixture of the one-hot matrix with uniform weights gives it
    R[labels, np.arange(labels.shape[0])] = (1.0 - soften) + soften / k if soften else 1.0
    return R


def starting_responsibilities(strategy: str | None, F: np.ndarray, w: np.ndarray, k: int, n_init: int,
                              seed: int) -> np.ndarray:
    """(n_init, k, n) starting responsibilities for a named strategy (None = the default mix)."""
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError("init must be None, one of %s, labels, responsibilities or parameters; got %r"
                         % (", ".join(repr(s) for s in STRATEGIES), strategy))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919]))
    Fs = standardize_columns(F, w)
    out = []
    for r in range(n_init):
        kind = strategy or ("kmeans" if r % 2 == 0 else "random_centers")
        if kind == "kmeans":
            lab = kmeans_labels(Fs, w, k, rng)
        elif kind == "random_centers":
            lab = random_center_labels(Fs, w, k, rng)
        else:
            lab = rng.integers(0, k, size=F.shape[0])
        out.append(labels_to_resp(lab, k, soften=0.05))
    return np.stack(out)


def user_labels(labels, n: int, k: int) -> np.ndarray:
    """Validated labels (n,) in 0..k-1 -> responsibilities (1, k, n)."""
    lab = np.asarray(labels)
    if lab.dtype.kind == "f" and np.all(np.mod(lab, 1) == 0):
        lab = lab.astype(int)
    if lab.dtype.kind not in "iu":
        raise TypeError("init labels must be integers in 0..%d, got dtype %s" % (k - 1, lab.dtype))
    if lab.shape != (n,):
        raise ValueError("init labels must have shape (%d,), got %s" % (n, lab.shape))
    if lab.min() < 0 or lab.max() >= k:
        raise ValueError("init labels must lie in 0..%d; got values from %d to %d" % (k - 1, lab.min(), lab.max()))
    return labels_to_resp(lab, k, soften=0.05)[None]


def user_responsibilities(R, n: int, k: int) -> np.ndarray:
    """Validated responsibilities (n, k) with rows summing to one -> (1, k, n)."""
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (n, k):
        raise ValueError("init responsibilities must have shape (n, k) = (%d, %d), got %s" % (n, k, R.shape))
    if not np.all(np.isfinite(R)) or np.any(R < 0):
        raise ValueError("init responsibilities must be finite and non-negative")
    s = R.sum(1)
    if not np.allclose(s, 1.0, atol=1e-6):
        i = int(np.argmax(np.abs(s - 1.0)))
        raise ValueError("init responsibilities must sum to 1 in every row; row %d sums to %g" % (i, s[i]))
    return R.T[None]


def as_mask(val, like, name):
    shape = np.shape(like)
    if isinstance(val, (bool, np.bool_)):
        return np.full(shape, bool(val))
    m = np.asarray(val)
    if m.dtype != bool or m.shape != shape:
        raise ValueError("%s must be True/False or a boolean mask of shape %s, got %s %s"
                         % (name, shape, m.dtype, m.shape))
    return m


def as_params(init, base):
    """Parameters from ``init`` when it holds parameters (MoEParams or results), else None."""
    if init is None or isinstance(init, (str, np.ndarray, list)):
        return None
    params = getattr(init, "params_internal", None) or init
    if not isinstance(params, em.MoEParams):
        raise TypeError("init must be None, a strategy name, labels, responsibilities, MoEParams or a results "
                        "object; got %s" % type(init).__name__)
    try:
        ok = jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(base) and all(
            np.shape(a) == np.shape(b) for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(base)))
    except Exception:
        ok = False
    if not ok:
        raise ValueError("init parameters do not match this model's shapes: expected %s"
                         % (jax.tree_util.tree_map(np.shape, base),))  # a PyTree is a tuple
    return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a, dtype=b.dtype), params, base)
