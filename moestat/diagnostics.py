"""Router diagnostics: load balance, capacity, expert choice, saturation, change rate, gate entropy.

Plain NumPy functions of gating probabilities or routing sets, vectorised over
points (and, where stated, over leading axes such as EM iterations).  They
apply to any router: a fitted gate (``res.predict(kind="gate")``), a gate
recorded along EM iterations (``res.routing_report()``), or a large sparse
MoE's router outputs.

Conventions.  ``gate_probs`` is an (N, k) array: N points, k experts, each row
non-negative and summing to one.  A *routing set* is an (N, k) boolean array
whose row n marks the experts point n is sent to (``E_n`` below); token-choice
top-K sets have exactly K marks per row.  **Ties** are broken towards the lower
expert index (token choice) and the lower point index (expert choice), the rule
of :mod:`moestat.gating.topk`, so results never depend on sort stability.

Sources of the definitions (``theory.md`` §2.7 gives them verbatim):

* Jain's fairness index: R. Jain, D.-M. Chiu & W. Hawe (1984), *A quantitative
  measure of fairness and discrimination for resource allocation in shared
  computer systems*, DEC-TR-301; used as expert utilization in the DeepSeekMoE
  paper (Nguyen et al., arXiv:2505.10860, App. H).
* Router saturation: OLMoE (Muennighoff et al., arXiv:2409.02060, §5), as
  restated in arXiv:2505.10860, App. H.
* Router change rate: arXiv:2505.10860, App. H (the printed E_i^{(i)} is read
  as E_i^{(t)}).
* Capacity factor and dropped tokens: Switch Transformer (Fedus, Zoph &
  Shazeer, JMLR 2022, §2.2), GShard (Lepikhin et al., arXiv:2006.16668); the
  M6-T paper (Yang et al., arXiv:2105.15082) studies it with expert prototyping.
* Expert-choice routing: Zhou et al., *Mixture-of-Experts with Expert Choice
  Routing*, NeurIPS 2022 (arXiv:2202.09368).
* Tsallis entropy: C. Tsallis (1988), J. Stat. Phys. 52, 479-487; as a router
  statistic in DynMoLE (Li et al., arXiv:2504.00661).

Examples
--------
Four points, two experts: top-1 routing sends three points to expert 0, so
Jain's index is (3 + 1)^2 / (2 (9 + 1)) = 0.8 and the busiest expert carries
1.5 times the mean load.

>>> import numpy as np
>>> from moestat import diagnostics as dg
>>> p = np.array([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8], [0.9, 0.1]])
>>> dg.utilization(p).round(3)
array([0.6, 0.4])
>>> E = dg.topk_assignment(p, 1)
>>> E.sum(0), dg.jain_index(E.sum(0)), dg.load_imbalance(E, 2)
(array([3, 1]), 0.8, 1.5)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ExpertChoice", "capacity_overflow", "change_rate", "expert_choice_assignment", "jain_index",
           "load_imbalance", "saturation", "topk_assignment", "tsallis_entropy", "utilization"]

_SUM_TOL = 1e-6


# --------------------------------------------------------------------------- validation

def _as_probs(gate_probs, name="gate_probs", min_ndim=2) -> np.ndarray:
    """gate_probs as a float array (..., N, k) whose rows are probability vectors, else ValueError."""
    p = np.asarray(gate_probs, dtype=np.float64)
    if p.ndim < min_ndim:
        raise ValueError("%s must have shape (N, k) (points x experts), got shape %s" % (name, p.shape))
    if p.shape[-1] < 1 or (p.ndim >= 2 and p.shape[-2] < 1):
        raise ValueError("%s needs at least one point and one expert, got shape %s" % (name, p.shape))
    if not np.all(np.isfinite(p)):
        raise ValueError("%s has non-finite entries" % name)
    if np.any(p < 0):
        raise ValueError("%s has negative entries (min %g)" % (name, p.min()))
    dev = np.abs(p.sum(-1) - 1.0).max()
    if dev > _SUM_TOL:
        raise ValueError("%s rows must sum to 1 (largest deviation %.3g)" % (name, dev))
    return p


def _as_top_k(top_k, k) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise TypeError("top_k must be an integer, got %r" % (top_k,))
    if not 1 <= top_k <= k:
        raise ValueError("top_k must satisfy 1 <= top_k <= k = %d experts, got %d" % (k, top_k))
    return int(top_k)


def _as_sets(E, name) -> np.ndarray:
    """Routing sets as a boolean array (..., N, k) with the same number K >= 1 of experts in every row."""
    a = np.asarray(E)
    if a.dtype != bool:
        if not np.issubdtype(a.dtype, np.integer) or np.any((a != 0) & (a != 1)):
            raise ValueError("%s must be a boolean (or 0/1) membership array of shape (N, k)" % name)
        a = a.astype(bool)
    if a.ndim < 2 or a.shape[-1] < 1 or a.shape[-2] < 1:
        raise ValueError("%s must have shape (N, k) (points x experts), got shape %s" % (name, a.shape))
    K = a.sum(-1)
    if K.min() < 1 or K.min() != K.max():
        raise ValueError("%s must mark the same number K >= 1 of experts at every point (top-K sets); "
                         "got between %d and %d" % (name, K.min(), K.max()))
    return a


# --------------------------------------------------------------------------- routing sets

def topk_assignment(gate_probs, top_k: int) -> np.ndarray:
    """Token-choice top-K routing sets: each point goes to its ``top_k`` most probable experts.

    Parameters
    ----------
    gate_probs : array (..., N, k)
        Gating probabilities (rows sum to one).
    top_k : int
        K, 1 <= K <= k.

    Returns
    -------
    (..., N, k) bool
        True for the K experts of each point.  Ties go to the lower expert index.

    Examples
    --------
    >>> topk_assignment([[0.5, 0.25, 0.25]], 2).astype(int)
    array([[1, 1, 0]])
    """
    p = _as_probs(gate_probs)
    K = _as_top_k(top_k, p.shape[-1])
    order = np.argsort(-p, axis=-1, kind="stable")           # stable: equal values keep index order
    out = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(out, order[..., :K], True, axis=-1)
    return out


def utilization(gate_probs, top_k: int | None = None) -> np.ndarray:
    """Expert utilization r_i: the share of routing each expert receives.

    Parameters
    ----------
    gate_probs : array (N, k)
    top_k : int, optional
        None: r_i = (1/N) sum_n g_i(x_n), the share of total routing weight;
        K: r_i = (number of points whose top-K set holds i) / (N K), the share
        of top-K assignments (theory.md §2.7: "fraction of tokens (or total
        routing weight) assigned to expert i").

    Returns
    -------
    (k,) array summing to one.

    Examples
    --------
    >>> utilization([[1.0, 0.0], [0.5, 0.5]])
    array([0.75, 0.25])
    """
    p = _as_probs(gate_probs)
    if top_k is None:
        return p.mean(-2)
    s = topk_assignment(p, top_k)
    return s.sum(-2) / (s.shape[-2] * int(top_k))


# --------------------------------------------------------------------------- balance

def jain_index(loads) -> np.ndarray | float:
    """Jain's fairness index J(R) = (sum_i r_i)^2 / (k sum_i r_i^2) of expert loads.

    J lies in [1/k, 1]: 1 when every expert has the same load, 1/k when one
    expert has it all.  Empty experts (r_i = 0) count in k.  Source: Jain,
    Chiu & Hawe (1984), DEC-TR-301; DeepSeekMoE App. H (``theory.md`` §2.7).

    Parameters
    ----------
    loads : array (..., k)
        Non-negative loads r_i (counts, shares or total routing weights), not all zero.

    Returns
    -------
    float, or array (...) for stacked load vectors.

    Examples
    --------
    >>> jain_index([1, 1, 0, 0])
    0.5
    """
    r = np.asarray(loads, dtype=np.float64)
    if r.ndim < 1 or r.shape[-1] < 1:
        raise ValueError("loads must be a non-empty vector (..., k), got shape %s" % (r.shape,))
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("loads must be finite and non-negative")
    ss = (r ** 2).sum(-1)
    if np.any(ss == 0):
        raise ValueError("Jain's index is undefined when every load is zero")
    J = r.sum(-1) ** 2 / (r.shape[-1] * ss)
    return float(J) if np.ndim(J) == 0 else J


def load_imbalance(assignments, k: int) -> float:
    """Max load / mean load of the experts (1 = balanced, k = one expert takes everything).

    Parameters
    ----------
    assignments : int array (N,) of expert labels 0..k-1, or boolean routing sets (N, k)
    k : int
        Number of experts; experts that receive nothing count (load 0) in the mean.

    Returns
    -------
    float
        max_i L_i / ((1/k) sum_i L_i), L_i the number of assignments to expert i.

    Examples
    --------
    >>> load_imbalance([0, 0, 1, 2], 4)
    2.0
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError("k must be a positive integer, got %r" % (k,))
    a = np.asarray(assignments)
    if a.ndim == 1:
        if a.size == 0:
            raise ValueError("assignments is empty")
        if not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= k:
            raise ValueError("assignments must be integer expert labels in 0..%d" % (k - 1))
        loads = np.bincount(a, minlength=k)
    elif a.ndim == 2:
        if a.shape[1] != k:
            raise ValueError("routing sets have %d columns but k = %d" % (a.shape[1], k))
        if a.dtype != bool and not np.all((a == 0) | (a == 1)):
            raise ValueError("routing sets must be boolean (or 0/1)")
        loads = a.astype(bool).sum(0)
    else:
        raise ValueError("assignments must be labels (N,) or routing sets (N, k), got shape %s" % (a.shape,))
    total = loads.sum()
    if total == 0:
        raise ValueError("no assignments: the load imbalance is undefined")
    return float(loads.max() / (total / k))


def capacity_overflow(gate_probs, top_k: int, capacity_factor: float, return_mask: bool = False):
    """Share of points dropped when every expert takes at most C = floor(c K N / k) assignments.

    Token-choice top-K routing with a capacity (Switch Transformer §2.2,
    GShard): each point asks for its top-K experts; points are served in row
    order (the sequence order of those papers), so an expert accepts the first
    C points that ask for it and rejects the rest.  A point is *dropped*
    when at least one of its K requests is rejected.

    Parameters
    ----------
    gate_probs : array (N, k)
    top_k : int
        K.
    capacity_factor : float
        c > 0; c = 1 gives each expert exactly its balanced share K N / k (rounded down).
    return_mask : bool
        Also return the (N,) boolean mask of dropped points.

    Returns
    -------
    float, or (float, (N,) bool) with ``return_mask``
        Share of dropped points.

    Examples
    --------
    >>> capacity_overflow([[1, 0], [1, 0], [0, 1], [1, 0]], 1, 1.0)   # C = 2: the 4th point is dropped
    0.25
    """
    p = _as_probs(gate_probs)
    if p.ndim != 2:
        raise ValueError("gate_probs must have shape (N, k), got %s" % (p.shape,))
    K = _as_top_k(top_k, p.shape[1])
    if isinstance(capacity_factor, bool) or not np.isscalar(capacity_factor) \
            or not np.isfinite(capacity_factor) or capacity_factor <= 0:
        raise ValueError("capacity_factor must be a positive finite number, got %r" % (capacity_factor,))
    N, k = p.shape
    C = int(np.floor(capacity_factor * K * N / k + 1e-9))
    sets = topk_assignment(p, K)
    queue = np.cumsum(sets, axis=0)                 # position of point n in expert i's queue (1-based)
    dropped = np.any(sets & (queue > C), axis=1)
    share = float(dropped.mean())
    return (share, dropped) if return_mask else share


class ExpertChoice(NamedTuple):
    """Result of :func:`expert_choice_assignment`."""

    assignment: np.ndarray   # (N, k) bool: expert i took point n
    per_point: np.ndarray    # (N,) number of experts each point got (0..k)
    coverage: float          # share of points with at least one expert
    unrouted: int            # number of points no expert took


def expert_choice_assignment(gate_probs, capacity: int) -> ExpertChoice:
    """Expert-choice routing (Zhou et al. 2022): every expert takes its ``capacity`` most probable points.

    Each expert i ranks the points by g_i(x_n) and takes the top ``capacity``
    (ties to the lower point index); a point may so get several experts or
    none.  Compare :func:`topk_assignment` (token choice: every point gets
    exactly K experts, loads vary).

    Parameters
    ----------
    gate_probs : array (N, k)
    capacity : int
        Points per expert, 1 <= capacity <= N (Zhou et al.: N c / k for capacity factor c).

    Returns
    -------
    ExpertChoice
        ``assignment`` (N, k) bool, ``per_point`` (N,) experts per point,
        ``coverage`` share of points with >= 1 expert, ``unrouted`` number of points with none.

    Examples
    --------
    >>> ec = expert_choice_assignment([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]], 1)
    >>> ec.per_point.tolist(), ec.unrouted
    ([1, 0, 1], 1)
    """
    p = _as_probs(gate_probs)
    if p.ndim != 2:
        raise ValueError("gate_probs must have shape (N, k), got %s" % (p.shape,))
    N, k = p.shape
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
        raise TypeError("capacity must be an integer, got %r" % (capacity,))
    if not 1 <= capacity <= N:
        raise ValueError("capacity must satisfy 1 <= capacity <= N = %d points, got %d" % (N, capacity))
    order = np.argsort(-p, axis=0, kind="stable")             # per expert, points by decreasing probability
    assign = np.zeros((N, k), dtype=bool)
    np.put_along_axis(assign, order[:capacity], True, axis=0)
    per_point = assign.sum(1)
    return ExpertChoice(assign, per_point, float((per_point > 0).mean()), int((per_point == 0).sum()))


# --------------------------------------------------------------------------- dynamics

def saturation(E_t, E_T) -> np.ndarray | float:
    """Router saturation ``(1/N) sum_n |E_n^(t) ∩ E_n^(T)| / K`` against the final routing sets E^(T).

    Source: OLMoE (arXiv:2409.02060), DeepSeekMoE App. H (``theory.md`` §2.7).

    Parameters
    ----------
    E_t : bool array (..., N, k)
        Top-K sets at checkpoint t (a leading axis, e.g. EM iterations, gives one value per checkpoint).
    E_T : bool array (N, k)
        Top-K sets at the final checkpoint T, with the same K.

    Returns
    -------
    float in [0, 1], or array (...).

    Examples
    --------
    >>> saturation([[1, 1, 0], [1, 0, 1]], [[1, 1, 0], [0, 1, 1]])
    0.75
    """
    a, b = _as_sets(E_t, "E_t"), _as_sets(E_T, "E_T")
    K = _same_k(a, b, "E_t", "E_T")
    s = (a & b).sum(-1).mean(-1) / K
    return float(s) if np.ndim(s) == 0 else s


def change_rate(E_t, E_t1) -> np.ndarray | float:
    """Router change rate ``(1/N) sum_n |E_n^(t+1) \\ E_n^(t)| / K`` between consecutive checkpoints.

    Source: DeepSeekMoE App. H (``theory.md`` §2.7).

    Parameters
    ----------
    E_t, E_t1 : bool arrays (..., N, k)
        Top-K sets at checkpoints t and t + 1 (same K); ``change_rate(E[:-1], E[1:])``
        gives the rate along a whole sequence E (T, N, k).

    Returns
    -------
    float in [0, 1], or array (...).

    Examples
    --------
    >>> change_rate([[1, 0], [1, 0]], [[0, 1], [1, 0]])
    0.5
    """
    a, b = _as_sets(E_t, "E_t"), _as_sets(E_t1, "E_t1")
    K = _same_k(a, b, "E_t", "E_t1")
    c = (b & ~a).sum(-1).mean(-1) / K
    return float(c) if np.ndim(c) == 0 else c


def _same_k(a, b, na, nb) -> int:
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError("%s and %s must both be (N, k) for the same points and experts, got %s and %s"
                         % (na, nb, a.shape[-2:], b.shape[-2:]))
    Ka, Kb = int(a.sum(-1).flat[0]), int(b.sum(-1).flat[0])
    if Ka != Kb:
        raise ValueError("%s and %s must be top-K sets with the same K, got %d and %d" % (na, nb, Ka, Kb))
    return Ka


# --------------------------------------------------------------------------- entropy

def tsallis_entropy(gate_probs, q: float = 1.0) -> np.ndarray:
    """Tsallis entropy S_q(p) = (1 - sum_i p_i^q) / (q - 1) of each point's gate distribution.

    S_1 is the Shannon entropy -sum_i p_i log p_i (natural log; 0 log 0 = 0),
    the limit q -> 1.  Computed as S_q = -sum_i p_i expm1((q - 1) log p_i) / (q - 1),
    which is exact algebra and has no cancellation near q = 1.  Ranges: 0 for a
    one-hot row, (1 - k^(1-q)) / (q - 1) (log k for q = 1) for the uniform row.
    Source: Tsallis (1988); DynMoLE (arXiv:2504.00661) routes on it.

    Parameters
    ----------
    gate_probs : array (..., k)
        Probability vectors (a single vector or (N, k)).
    q : float
        Entropic index q > 0.

    Returns
    -------
    array (...)
        One entropy per probability vector.

    Examples
    --------
    >>> float(tsallis_entropy([0.5, 0.5], q=2.0))
    0.5
    """
    p = _as_probs(gate_probs, min_ndim=1)
    if isinstance(q, bool) or not np.isscalar(q) or not np.isfinite(q) or q <= 0:
        raise ValueError("q must be a positive finite number, got %r" % (q,))
    q = float(q)
    pos = p > 0
    lp = np.log(np.where(pos, p, 1.0))
    if q == 1.0:
        return -(np.where(pos, p * lp, 0.0)).sum(-1)
    return -(np.where(pos, p * np.expm1((q - 1.0) * lp), 0.0)).sum(-1) / (q - 1.0)
