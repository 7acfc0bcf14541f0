"""Router diagnostics over fits: the gate's routing on the data, along EM iterations and per replicate.

The formulas live in :mod:`moestat.diagnostics` (plain NumPy); this module
evaluates a fitted gate on its data and hands the probabilities to them.

*Router.*  The router is the gate's routed part: every expert for ordinary
gates; the routed block (experts k1 + 1, ..., k) of the DeepSeekMoE
:class:`moestat.gating.SharedRouted` gate, whose shared experts are always
active with constant weights.  Its probabilities are renormalised to sum to one.

*Routing sets.*  Top-K sets of the router probabilities (ties to the lower
expert index); K defaults to the gate's own K for top-K-type gates (its
number of active experts: top-K's K, expert prototyping's number of groups)
and to 1 otherwise.

*Along EM.*  With ``fit(..., record_gate=True)`` the EM loop keeps the gate
parameters of every iteration (a (max_iter, gate size) array, cheap); the
routing sets are computed here afterwards, one iteration at a time, and
compared with those of the final EM iterate (saturation, theory.md §2.7) and of
the previous iteration (change rate).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import numpy as np
import pandas as pd

from . import diagnostics as dg
from ._math import kshifted_exp


class RoutingReport(NamedTuple):
    """What :func:`routing_report` returns (all pandas)."""

    experts: pd.DataFrame            # one row per routed expert: weight share, top-K share, top-K load
    summary: pd.Series               # Jain indices, load imbalance, mean Shannon and Tsallis entropies, K, q
    iterations: pd.DataFrame | None  # per EM iteration: saturation, change rate (None unless recorded)


def router(gate):
    """(router gate, index of its first expert in the model): the routed block of a SharedRouted gate."""
    return gate.router()


def router_params(gate, params):
    return gate.router_params(params)


def default_top_k(gate) -> int:
    """The router's own number of active experts for top-K-type gates (TopK and its subclasses), else 1."""
    return router(gate)[0].top_k


@partial(jax.jit, static_argnames=("gate",))
def _probs(gate, gate_params, Xg):
    # the softmax over the short leading expert axis, unrolled (XLA:CPU reduces that axis slowly)
    _, e, s = kshifted_exp(gate.log_weights(gate_params, Xg))
    return e / s[None]


def router_probs(gate, gate_params, Xg, n: int | None = None) -> np.ndarray:
    """(n, k_r) router probabilities of a gate at the gate design Xg (pg, N), first n columns.

    Parameters
    ----------
    gate : Gate
        The model's gate (the routed block is used for SharedRouted).
    gate_params : gate parameters
    Xg : array (pg, N)
        Features-major gate design (as in ``res._data.Xg``).
    n : int, optional
        Keep the first n points (the rest are padding).

    Returns
    -------
    (n, k_r) array, rows summing to one.
    """
    r = router(gate)[0]
    p = np.asarray(_probs(r, jax.tree_util.tree_map(jax.numpy.asarray, router_params(gate, gate_params)), Xg)).T
    p = p[:n] if n is not None else p
    return p / p.sum(1, keepdims=True)


def routing_summary(probs, top_k: int = 1, q: float = 2.0) -> dict:
    """Scalar routing statistics of router probabilities (n, k): a flat dict of floats.

    ``jain_weight``: Jain index of the routing-weight shares; ``jain_topk``: of the
    top-K loads; ``load_imbalance``: top-K max / mean load; ``entropy``: mean
    Shannon entropy; ``tsallis``: mean Tsallis entropy of index q.
    """
    sets = dg.topk_assignment(probs, top_k)
    return {"jain_weight": dg.jain_index(dg.utilization(probs)),
            "jain_topk": dg.jain_index(sets.sum(0)),
            "load_imbalance": dg.load_imbalance(sets, probs.shape[1]),
            "entropy": float(dg.tsallis_entropy(probs, 1.0).mean()),
            "tsallis": float(dg.tsallis_entropy(probs, q).mean())}


def routing_path(gate, gate_trace, Xg, n: int, top_k: int, final=None, live=None) -> pd.DataFrame:
    """Saturation and change rate of the top-K routing sets along recorded EM iterations.

    Parameters
    ----------
    gate : Gate
    gate_trace : gate parameters with a leading (max_iter,) axis, NaN after the last iteration
    Xg : array (pg, N); n : int, the number of real points
    top_k : int
    final : gate parameters, optional
        The iterate whose sets are E^(T) (default: the last recorded one).
    live : (n,) bool, optional
        Points to use (default all n; the report passes the positive-weight rows).

    Returns
    -------
    DataFrame indexed by iteration t = 0, 1, ...: ``saturation`` (against E^(T)) and
    ``change_rate`` (E^(t) against E^(t-1); NaN at t = 0).
    """
    leaves = jax.tree_util.tree_leaves(gate_trace)
    done = np.all([np.all(np.isfinite(np.asarray(a).reshape(np.shape(a)[0], -1)), axis=1) for a in leaves], axis=0)
    T = int(np.argmin(done)) if not done.all() else done.size
    live = slice(None) if live is None else np.asarray(live, dtype=bool)
    sets = []
    for t in range(T):
        p = router_probs(gate, jax.tree_util.tree_map(lambda a: np.asarray(a)[t], gate_trace), Xg, n)
        sets.append(dg.topk_assignment(p[live], top_k))
    if final is None:
        ET = sets[-1]
    else:
        ET = dg.topk_assignment(router_probs(gate, final, Xg, n)[live], top_k)
    E = np.stack(sets)
    change = np.concatenate([[np.nan], dg.change_rate(E[:-1], E[1:])]) if T > 1 else np.array([np.nan])
    return pd.DataFrame({"saturation": dg.saturation(E, ET), "change_rate": change},
                        index=pd.RangeIndex(T, name="iteration"))


def routing_report(res, top_k: int | None = None, q: float = 2.0) -> RoutingReport:
    """Utilization, balance and entropy of a fitted router on its data (and its EM path when recorded).

    Parameters
    ----------
    res : MoEResults
    top_k : int, optional
        K of the routing sets (default :func:`default_top_k`).
    q : float
        Index of the Tsallis entropy reported beside Shannon's.

    Returns
    -------
    RoutingReport
        ``experts`` (DataFrame, one row per routed expert, 1-based model numbering):
        ``weight_share`` (mean router probability), ``topk_share`` (share of the
        top-K assignments), ``topk_load`` (points routed there);
        ``summary`` (Series): ``jain_weight``, ``jain_topk``, ``load_imbalance``,
        ``entropy`` (mean Shannon), ``tsallis`` (mean Tsallis of index q), ``top_k``, ``q``;
        ``iterations`` (DataFrame, see :func:`routing_path`) when the fit was run
        with ``record_gate=True``, else None.

    Examples
    --------
    >>> import moestat as ms
    >>> res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), record_gate=True)
    >>> rep = res.routing_report()
    >>> float(rep.iterations["saturation"].iloc[-1])
    1.0
    """
    gate = res.model.gate
    K = default_top_k(gate) if top_k is None else top_k
    n = res.design.n
    Xg = res._data.Xg
    p = router_probs(gate, res.params_tree.gate, Xg, n)
    live = np.asarray(res.design.w) > 0
    p = p[live]
    sets = dg.topk_assignment(p, K)
    first = router(gate)[1]
    experts = pd.DataFrame({"weight_share": dg.utilization(p), "topk_share": dg.utilization(p, K),
                            "topk_load": sets.sum(0)},
                           index=pd.Index(np.arange(first, first + p.shape[1]) + 1, name="expert"))
    summary = pd.Series(dict(routing_summary(p, K, q), top_k=K, q=float(q)))
    iters = None
    trace = getattr(res, "gate_trace", None)
    if trace is not None:
        iters = routing_path(gate, trace, Xg, n, K, live=live)
    return RoutingReport(experts, summary, iters)
