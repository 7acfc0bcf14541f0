"""DynMoLE-style entropy-switched routing: top-K where the gate is confident, dense softmax where it is not.

Routing (Li et al., *DynMoLE: Boosting Mixture of LoRA Experts Fine-Tuning
with a Hybrid Routing Mechanism*, arXiv:2504.00661: the Tsallis entropy of the
router's distribution decides how many experts a token gets).  moestat's
statistical version, with linear scores eta = B x and dense probabilities
p(x) = softmax(eta):

    S_q(p) = (1 - sum_i p_i^q) / (q - 1)         (Shannon -sum_i p_i log p_i at q = 1),
    g(x)   = softmax over the top-K experts of eta    if S_q(p(x)) < threshold,
             softmax over all k experts (= p(x))      otherwise.

The threshold and q are fixed by the user (moestat's defaults q = 1.5,
threshold = 0.5 are not the paper's).  Ties in the ranking go to the lower
expert index, as in :class:`moestat.gating.TopK`.  The entropy is invariant
to adding one vector to every row of B, so expert 0 is the reference
(row 0 = 0).  threshold <= 0 gives the dense softmax gate everywhere; a
threshold above the largest possible entropy ((1 - k^(1-q)) / (q - 1), log k
at q = 1) gives top-K everywhere.

Where it is not smooth.  The weights jump on the surface {x: S_q(p(x)) =
threshold} where a point switches between sparse and dense routing (not a
hyperplane), and, on the sparse side, on the hyperplanes where the K-th and
(K+1)-th ranked experts swap.  Inside each cell the weights are a softmax
over the point's active experts (K or k of them) and smooth in B.

EM and monotonicity: this is :class:`moestat.gating.TopK` with per-point
active sets chosen by the entropy rule, and it reuses top-K's M-step and
re-routing moves unchanged.  The M-step's Newton direction is that of the
softmax restricted to the current active sets; it is guarded on the exact
objective Q(B) = sum_n w_n sum_i tau_in log g_i(x_n; B), which is -inf when
an expert carrying responsibility leaves a point's active set (a dense point
turning sparse), so a candidate is accepted only if Q does not fall: a GEM
step.  The re-routing moves after the M-steps are accepted only if the
observed log-likelihood does not fall (the boundary-preserving move keeps
the top-K hyperplanes of the sparse points only; it does not see the
entropy surface, so the guard halves or rejects it when that surface moves
across points).  Hence EM never lowers the log-likelihood.  The likelihood
jumps where points switch and has poor local maxima that k-means / random
starts can miss: use several starts, and add the dense softmax fit as one
(``init=`` a ``GaussianMoE(k)`` result; the two gates share their parameters).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from .._math import klog_softmax, ksum
from .base import register
from .topk import TopK, masked_log_softmax, topk_mask, topk_swaps


def tsallis_of_log_probs(log_p, q: float):
    """(N,) Tsallis entropy of the columns of probabilities exp(log_p) (k, N); Shannon at q = 1.

    Uses S_q = -sum_i p_i expm1((q - 1) log p_i) / (q - 1) (no cancellation near q = 1), the
    formula of :func:`moestat.diagnostics.tsallis_entropy`.
    """
    p = jnp.exp(log_p)
    pos = p > 0
    lp = jnp.where(pos, log_p, 0.0)
    if q == 1.0:
        return -ksum(jnp.where(pos, p * lp, 0.0))
    return -ksum(jnp.where(pos, p * jnp.expm1((q - 1.0) * lp), 0.0)) / (q - 1.0)


def entropy_switched_mask(eta, K: int, threshold: float, q: float):
    """(k, N) active sets: top-K of eta where the dense softmax's Tsallis entropy is below threshold, else all."""
    sparse = tsallis_of_log_probs(klog_softmax(eta), q) < threshold
    return jnp.logical_or(topk_mask(eta, K), jnp.logical_not(sparse)[None]), sparse


def entropy_switched_log_weights(coef, Xg, K: int, threshold: float, q: float):
    """(k, N) log weights of entropy-switched routing; -inf for inactive experts."""
    eta = coef @ Xg
    active, _ = entropy_switched_mask(eta, K, threshold, q)
    return masked_log_softmax(eta, active)


@register
@dataclass(frozen=True)
class EntropySwitched(TopK):
    """DynMoLE-style routing: top-K softmax where the gate's Tsallis entropy is below ``threshold``, dense elsewhere.

    Parameters
    ----------
    k : int
        K, the number of active experts at confident (low-entropy) points.
    threshold : float
        Entropy threshold (finite); points with S_q(softmax(B x)) < threshold are routed sparsely.
    q : float
        Tsallis index q > 0 (q = 1: Shannon entropy).
    newton_steps : int
        Guarded Newton steps per EM iteration.
    search : bool
        Run the re-routing moves of :meth:`moestat.gating.TopK.observed_step` after each M-step.

    Examples
    --------
    >>> import moestat as ms
    >>> gate = ms.gating.EntropySwitched(k=1, threshold=0.3, q=2.0)
    >>> gate.n_free_params(3, 2)
    4
    """

    name = "entropy_switched"
    summary_title: ClassVar[str] = "Gate (entropy-switched top-K: log-odds against expert 1 where both are active)"
    threshold: float = 0.5
    q: float = 1.5

    def __post_init__(self):
        super().__post_init__()
        if self.select != "scores":
            raise ValueError("entropy_switched: experts are ranked on their full scores; select must be 'scores', "
                             "got %r" % (self.select,))
        for name in ("threshold", "q"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ValueError("entropy_switched: %s must be a finite number, got %r" % (name, v))
            object.__setattr__(self, name, float(v))
        if self.q <= 0:
            raise ValueError("entropy_switched: the Tsallis index q must be > 0, got %r" % (self.q,))

    def log_weights(self, params, Xg):
        return entropy_switched_log_weights(params.coef, Xg, self.k, self.threshold, self.q)

    def boundary_swaps(self, v, live):
        """Top-K boundary pairs at the sparse live points (the entropy surface is not a hyperplane)."""
        _, sparse = entropy_switched_mask(v, self.k, self.threshold, self.q)
        return topk_swaps(v, jnp.logical_and(live, sparse), self.k)

    def boundary(self, params, ctl) -> list[str]:
        return []


__all__ = ["EntropySwitched", "entropy_switched_log_weights", "entropy_switched_mask", "tsallis_of_log_probs"]
