"""M6-T expert prototyping: experts in G groups, top-1 routing inside each group, group outputs averaged.

Routing (Yang et al., *M6-T: Exploring Sparse Expert Models and Beyond*,
arXiv:2105.15082, §3 "expert prototyping": the experts are split into G
prototypes and every token takes the top-1 expert of each prototype, "k top-1"
instead of top-k).  moestat's statistical version: with linear scores
eta = B x (one row per expert) and the k experts split into G contiguous groups
of m = k / G (experts g m, ..., g m + m - 1 form group g), point x is routed to
the winner w_g(x) = argmax_{i in group g} eta_i of every group (ties to the
lower index), and the G group outputs are averaged with the weights

* ``combine="softmax"`` (default): g_i(x) = exp(eta_i) / sum_h exp(eta_{w_h(x)})
  for the winners i = w_g(x), 0 for the others -- a softmax over the G selected
  experts, i.e. a weighted average of the group outputs whose weights are the
  winners' gate values;
* ``combine="average"``: g_i(x) = 1 / G for each winner -- the plain average.

Special cases: G = 1 is top-1 routing (:class:`moestat.gating.TopK` with K = 1);
G = k (groups of one expert) is the dense softmax gate (``combine="softmax"``)
or equal constant weights 1/k (``"average"``).  The weights are invariant to
adding one vector to every row of B, so expert 0 is the reference (row 0 = 0),
as for softmax and top-K.

Where it is not smooth.  The weights jump on the hyperplanes
{x: (b_i - b_j)' x = 0} where the two leading experts i, j of a group swap;
elsewhere, with ``combine="softmax"``, they are a softmax over the point's
active experts and smooth in B.  With ``combine="average"`` they are piecewise
constant in B: only the routing partition is identified (as for top-K with
K = 1), the coefficients' scale is arbitrary and they have no standard errors.

EM and monotonicity: exactly as :class:`moestat.gating.TopK`, whose machinery
this gate reuses with its own active sets.  The M-step takes a Newton step of
the objective restricted to the current active sets (a softmax over each
point's winners) and guards it on the exact objective Q(B) = sum_n w_n sum_i
tau_in log g_i(x_n; B), which is -inf when an expert carrying responsibility
stops winning its group: a candidate is accepted only if Q does not fall, so
the step is a GEM step and EM never lowers the log-likelihood.  Re-routing
moves (dense-softmax proposal, Newton step of the observed log-likelihood on
the current cells, the boundary-preserving step -- its boundaries are the
within-group winner / runner-up pairs -- and the pattern search) run after the
M-steps and are accepted only if the observed log-likelihood does not fall.
Like top-K, the likelihood jumps where the routing changes and has local
maxima: use several starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .base import register
from .topk import TopK, masked_log_softmax

COMBINE = ("softmax", "average")


def group_winner_mask(v, G: int):
    """(k, N) booleans: the top-1 expert of each of G contiguous groups (ties to the lower index)."""
    k, N = v.shape
    m = k // G
    win = jnp.argmax(v.reshape(G, m, N), axis=1)                          # (G, N), first maximum
    return jax.nn.one_hot(win, m, axis=1, dtype=bool).reshape(k, N)


def prototype_log_weights(coef, Xg, G: int, combine: str):
    """(k, N) log weights of expert prototyping; -inf for experts that do not win their group."""
    eta = coef @ Xg
    active = group_winner_mask(eta, G)
    if combine == "average":
        return jnp.where(active, -math.log(G), -jnp.inf)
    return masked_log_softmax(eta, active)


@register
@dataclass(frozen=True)
class ExpertPrototyping(TopK):
    """M6-T expert prototyping: top-1 routing inside each of G expert groups, group outputs averaged.

    Parameters
    ----------
    groups : int
        G, the number of groups; it must divide the number of experts k
        (group g holds experts g k/G, ..., (g+1) k/G - 1).
    combine : "softmax" (default) or "average"
        Weights of the G winners: a softmax of their scores, or 1/G each.
    newton_steps : int
        Guarded Newton steps per EM iteration.
    search : bool
        Run the re-routing moves of :meth:`moestat.gating.TopK.observed_step` after each M-step.

    Examples
    --------
    >>> import moestat as ms
    >>> gate = ms.gating.ExpertPrototyping(groups=2)
    >>> gate.n_free_params(4, 2)      # softmax coefficients, expert 0 the reference
    6
    """

    name = "expert_prototyping"
    summary_title: ClassVar[str] = "Gate (expert prototyping: log-odds against expert 1 where both are active)"
    #: the number of active experts at every point, G (set from ``groups``; not a setting of its own)
    k: int = field(default=2, init=False, repr=False)
    groups: int = 2
    combine: str = "softmax"

    def __post_init__(self):
        if isinstance(self.groups, bool) or not isinstance(self.groups, (int, np.integer)) or self.groups < 1:
            raise ValueError("expert_prototyping: groups must be a positive integer, got %r" % (self.groups,))
        if self.combine not in COMBINE:
            raise ValueError("expert_prototyping: combine must be one of %s, got %r"
                             % (", ".join(map(repr, COMBINE)), self.combine))
        if self.select != "scores":
            raise ValueError("expert_prototyping: experts are ranked on their full scores; select must be "
                             "'scores', got %r" % (self.select,))
        object.__setattr__(self, "groups", int(self.groups))
        object.__setattr__(self, "k", int(self.groups))    # G experts are active at every point
        super().__post_init__()

    def validate(self, k, pg):
        if k % self.groups:
            raise ValueError("expert_prototyping: groups=%d must divide the number of experts, got %d experts"
                             % (self.groups, k))

    def log_weights(self, params, Xg):
        return prototype_log_weights(params.coef, Xg, self.groups, self.combine)

    def boundary_swaps(self, v, live):
        """(k, k) booleans: winner / runner-up pairs of a group at some live point."""
        k = v.shape[0]
        m = k // self.groups
        win = group_winner_mask(v, self.groups)
        second = group_winner_mask(jnp.where(win, -jnp.inf, v), self.groups) if m > 1 else jnp.zeros_like(win)
        pair = (win[:, None] & second[None, :]) | (second[:, None] & win[None, :])   # (k, k, N)
        return jnp.any(pair & live[None, None], axis=2)

    def observed_step(self, params, data, cfg, ctl, max_halvings, fixed_gate):
        if self.groups >= params.gate.coef.shape[0] and self.combine == "softmax":
            return params            # groups of one expert: the dense softmax gate, nothing to re-route
        return super().observed_step(params, data, cfg, ctl, max_halvings, fixed_gate)

    def boundary(self, params, ctl) -> list[str]:
        if self.combine == "average" or self.groups == 1:
            return ["expert_prototyping with %s: the weights are piecewise constant, so only the routing "
                    "partition is identified; the gate coefficients' scale is arbitrary and they have no standard "
                    "errors" % ("combine='average'" if self.combine == "average" else "one group (top-1)")]
        return []


__all__ = ["ExpertPrototyping", "group_winner_mask", "prototype_log_weights"]
