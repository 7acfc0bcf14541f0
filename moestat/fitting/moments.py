"""Weighted moments of a small design from ONE contraction against its precomputed product features.

Every Newton or least-squares statistic the EM loop needs is a weighted sum
over the data of the form ``sum_n a_n``, ``sum_n a_n d_n`` or
``sum_n a_n d_n d_n'``, with a per-point weight row ``a`` (k or so of them
per iteration) and the design columns ``d_n``.  The direct way multiplies
every weight row by every design row, writes those (rows x p, N) products to
memory and contracts them with the design again; at k = 3, p = 3 that is
~20 rows written and read per point per iteration.  The products
``d_i d_j`` never change during a fit, so they are formed once
(:func:`features`: ones, the design, its upper-triangle products) and every
iteration contracts only the few weight rows with them:
``M = rows @ F'`` gives all the sums at once (:func:`split` reads them off).
Measured at n = 1e5, k = 3, d = 2, one core: the whole EM loop 87.9 ns per
point per iteration with the direct products, 54.0 with moments
(``benchmarks/em_breakdown.py``, same process).

The features cost ``1 + p + p(p+1)/2`` rows of memory, so they are used only
for designs of at most :data:`MAX_COLUMNS` columns and within
:data:`MAX_BYTES` (:func:`worthwhile`); wider designs use the direct products.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

#: widest design (columns) for which the product features are used (measured at n = 1e5, one core, EM loop with
#: the moments vs the direct products: k = 3, d = 10 254 vs 285 ns per point per iteration, k = 5, d = 10
#: 554 vs 1063, k = 8, d = 10 886 vs 2169; benchmarks/README.md)
MAX_COLUMNS = 12
#: largest feature matrix (bytes) built per data set
MAX_BYTES = 1 << 28


def n_features(p: int) -> int:
    """Rows of :func:`features` for a p-column design: 1 + p + p(p+1)/2."""
    return 1 + p + p * (p + 1) // 2


def worthwhile(p: int, N: int, itemsize: int = 8) -> bool:
    """Whether the product features are used for a (p, N) design (static: shapes only)."""
    return p <= MAX_COLUMNS and n_features(p) * N * itemsize <= MAX_BYTES


def pairs(p: int) -> list[tuple[int, int]]:
    """The index pairs i <= j of p things, in the order of the products in :func:`features`."""
    return [(i, j) for i in range(p) for j in range(i, p)]


def features(D, leading_one: bool = False):
    """(p, N) design -> (1 + p + p(p+1)/2, N): a row of ones, the design, its products d_i d_j (i <= j).

    ``leading_one``: row 0 of D is 1 on every point that carries weight (an intercept), so the ones row
    and the products d_0 d_j repeat rows of the products: only the p(p+1)/2 products are formed (6 rows
    instead of 10 for p = 3, 10 instead of 15 for [X; y] with p = 3), and :func:`expand` restores the
    layout of the contracted moments.
    """
    pr = pairs(D.shape[0])
    # one element-wise product of two row gathers (static indices): one loop, where stacking the products
    # row by row made XLA:CPU copy each (0.31 vs 0.60 ms at n = 1e5, 10 products; the same values)
    prods = D[np.array([i for i, _ in pr], dtype=np.intp)] * D[np.array([j for _, j in pr], dtype=np.intp)]
    if leading_one:
        return prods
    ones = jnp.ones_like(D[:1])
    return jnp.concatenate([ones, D, prods], axis=0) if pr else jnp.concatenate([ones, D])


def leading_features(p: int, q: int, leading_one: bool = False) -> np.ndarray:
    """Indices of the rows of ``features(D[:p])`` within ``features(D)`` for a (q, N) design D, p <= q.

    The features of a design's first p rows are rows of the features of the whole design (same
    ``leading_one``), so weight rows for both can share one contraction against the larger features.
    """
    if not 0 < p <= q:
        raise ValueError("need 0 < p <= q, got p=%d, q=%d" % (p, q))
    big = {pr: i for i, pr in enumerate(pairs(q))}
    prods = [big[pr] for pr in pairs(p)]
    if leading_one:
        return np.array(prods)
    return np.array([0] + [1 + i for i in range(p)] + [1 + q + i for i in prods])


def expand(M, p: int):
    """(..., p(p+1)/2) moments against :func:`features` ``(D, leading_one=True)`` -> (..., 1 + p + p(p+1)/2),
    the layout of ``features(D)`` (total = the (0, 0) product, linear = the (0, j) products)."""
    idx = np.array([0] + list(range(p)) + list(range(p * (p + 1) // 2)))   # (0, j) is the j-th pair for j < p
    return M[..., idx]


def contract(rows, F):
    """(r, N) weight rows x (f, N) features -> (r, f) sums over the data.

    Computed as the (f, 1, r) product of F with the rows given a leading unit
    axis, on purpose: XLA:CPU runs this dot with the long feature matrix as
    the left operand 1.4x (n = 1e5) to 2.7x (n = 1e6) faster than
    ``rows @ F.T`` inside the EM loop (k = 3, d = 2, one core), and without the
    unit axis its algebraic simplifier folds the transposes of ``(F @ rows.T).T``
    back into ``rows @ F.T``.
    """
    r = rows.shape[0]
    if r % 4 == 3:   # XLA:CPU's dot is ~1.6x slower with 3 (7, ...) right-hand columns than with 4 (measured)
        rows = jnp.concatenate([rows, jnp.zeros_like(rows[:1])])
    out = lax.dot_general(F, rows[None], (((1,), (2,)), ((), ())))     # (f, 1, r)
    return jnp.transpose(out, (1, 2, 0))[0, :r]


def split(M, p: int):
    """(..., f) contracted moments -> (total (...,), linear (..., p), gram (..., p, p))."""
    total = M[..., 0]
    linear = M[..., 1:1 + p]
    prods = M[..., 1 + p:]
    idx = np.zeros((p, p), dtype=np.int64)
    for q, (i, j) in enumerate(pairs(p)):
        idx[i, j] = idx[j, i] = q
    gram = prods[..., idx]
    return total, linear, gram
