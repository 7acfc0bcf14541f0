"""The DeepSeekMoE gate: a shared block with constant weights and a routed block with any gate.

Weights (``theory.md`` §2.1, eq. 1 and eq. 8):
[1/2 omega_1, ..., 1/2 omega_k1, 1/2 g_1(x), ..., 1/2 g_k2(x)], with omega on the
simplex (input-independent), g any conditional gate over the k2 = k - k1 routed
experts, and the two blocks weighted 1/2 each (fixed, as in the paper).  The
first ``n_shared`` experts of the model are the shared ones.

M-step.  The gate part of the EM objective separates:
    sum_n w_n [sum_{i shared} tau_in log(omega_i / 2) + sum_{j routed} tau_jn log(g_j(x_n) / 2)].
The first sum is maximised in closed form by omega_i proportional to
sum_n w_n tau_in.  Writing T_n = sum_{j routed} tau_jn, the second equals
sum_n (w_n T_n) sum_j (tau_jn / T_n) log g_j(x_n) + const, which is exactly the
routed gate's own M-step objective with responsibilities renormalised within
the routed block and case weights w_n T_n.  So calling the routed gate's
``m_step`` on those gives the exact M-step of the 1/2-1/2 model when the routed
gate's step is exact, and a GEM step (monotone) when it is a guarded Newton step.

Parameters ``SharedRoutedParams(shared (k1,), routed=<routed gate params for k2 experts>)``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax.numpy as jnp
import numpy as np

from .._math import ksum
from .base import Gate, get_gate, register
from .gaussian import simplex_constrain, simplex_m_step, simplex_unconstrain

LOG_HALF = math.log(0.5)


class SharedRoutedParams(NamedTuple):
    shared: jnp.ndarray  # (k1,) shared-expert weights omega (sum to one)
    routed: Any          # parameters of the routed gate for k2 = k - k1 experts


@register
@dataclass(frozen=True)
class SharedRouted(Gate):
    """Shared experts with constant weights plus routed experts with any gate, 1/2-1/2.

    Parameters
    ----------
    n_shared : int
        Number of shared experts k1 (the model's first k1 experts).
    routed : str or Gate
        Gate of the routed block ("softmax", "normalized_sigmoid", ... or a gate object).

    Examples
    --------
    >>> import moestat as ms
    >>> gate = ms.gating.SharedRouted(n_shared=2, routed="softmax")
    >>> gate.n_free_params(5, 2)   # 1 shared weight + 2 x 2 routed softmax coefficients
    5
    """

    name: ClassVar[str] = "shared_routed"
    joint: ClassVar[bool] = False
    n_shared: int = 1
    routed: Any = "softmax"

    def __post_init__(self):
        if isinstance(self.n_shared, bool) or not isinstance(self.n_shared, numbers.Integral) or self.n_shared < 1:
            raise ValueError("n_shared must be an integer >= 1, got %r" % (self.n_shared,))
        routed = get_gate(self.routed)
        if isinstance(routed, SharedRouted):
            raise TypeError("the routed gate of SharedRouted cannot itself be a SharedRouted gate")
        if routed.joint:
            raise ValueError("the routed block needs a conditional gate; %r models the covariates jointly "
                             "and cannot be mixed with constant shared weights" % routed.name)
        object.__setattr__(self, "routed", routed)

    # attributes that follow the routed gate
    @property
    def translation_invariant(self):
        return self.routed.translation_invariant

    @property
    def uses_intercept(self):
        return self.routed.uses_intercept

    @property
    def transforms_covariates(self):
        return self.routed.transforms_covariates

    @property
    def summary_title(self):
        return "Gate (shared weights omega; routed block: %s)" % self.routed.name

    def _k2(self, k):
        return k - self.n_shared

    def validate(self, k, pg):
        if self._k2(k) < 1:
            raise ValueError("SharedRouted(n_shared=%d) needs at least one routed expert, but the model has "
                             "n_experts=%d" % (self.n_shared, k))
        self.routed.validate(self._k2(k), pg)

    def transform(self, Z):
        return self.routed.transform(Z)

    # ---- parameters ------------------------------------------------------------------
    def init_params(self, k, pg):
        return SharedRoutedParams(shared=jnp.full((self.n_shared,), 1.0 / self.n_shared),
                                  routed=self.routed.init_params(self._k2(k), pg))

    def n_free_params(self, k, pg):
        return (self.n_shared - 1) + self.routed.n_free_params(self._k2(k), pg)

    def unconstrain(self, params):
        return SharedRoutedParams(shared=simplex_unconstrain(params.shared),
                                  routed=self.routed.unconstrain(params.routed))

    def constrain(self, u):
        return SharedRoutedParams(shared=simplex_constrain(u.shared), routed=self.routed.constrain(u.routed))

    def canonical(self, params):
        return params._replace(routed=self.routed.canonical(params.routed))

    def free_mask(self, params):
        k1 = np.shape(params.shared)[0]
        return SharedRoutedParams(shared=jnp.asarray(np.arange(k1) > 0), routed=self.routed.free_mask(params.routed))

    def arrange_starts(self, R):
        """Starts in groups of k share one partition, rotated so that each cluster in turn is a shared expert.

        Shared and routed experts cannot swap during EM (the shared weight is
        constant in x), so a start that puts a routed cluster in a shared slot
        stays in a poor local maximum; rotating the rows gives every cluster
        the shared role in some start.
        """
        R = np.asarray(R)
        n_starts, k = R.shape[:2]
        return np.stack([np.roll(R[r - r % k], r % k, axis=0) for r in range(n_starts)])

    # ---- kernels ---------------------------------------------------------------------
    def log_weights(self, params, Xg):
        N = Xg.shape[1]
        shared = (LOG_HALF + jnp.log(params.shared))[:, None] * jnp.ones((1, N), dtype=Xg.dtype)
        return jnp.concatenate([shared, LOG_HALF + self.routed.log_weights(params.routed, Xg)], axis=0)

    def m_step(self, params, tau, Xg, w, ctl, max_halvings, fixed, log_w=None):
        k1 = self.n_shared
        ts, tr = tau[:k1], tau[k1:]
        counts = ts @ w
        shared = simplex_m_step(params.shared, counts / jnp.maximum(jnp.sum(counts), 1e-300), fixed.shared)
        T = ksum(tr)                                                        # (N,) routed-block mass
        tr_n = jnp.where(T[None] > 0, tr / jnp.where(T > 0, T, 1.0)[None], 1.0 / tr.shape[0])
        # the E-step's routed rows are log(1/2) + log g_j(x): hand the routed gate its own log weights
        lw = None if log_w is None else log_w[k1:] - LOG_HALF
        routed = self.routed.m_step(params.routed, tr_n, Xg, w * T, ctl, max_halvings, fixed.routed, log_w=lw)
        return SharedRoutedParams(shared=shared, routed=routed)

    def near_truth(self, true, base, s, s_blocks, rng, sd, sd_v):
        """Constant shared weights split equally among the copies of a true shared expert; the routed
        gate's own :meth:`~moestat.gating.base.Gate.near_truth` on the routed block (``s_blocks[1]``)."""
        a = s_blocks[0]
        omega = np.asarray(true.shared, dtype=np.float64)[a] / np.bincount(a)[a]
        routed = self.routed.near_truth(true.routed, base.routed, s_blocks[1], s_blocks[1:], rng, sd, sd_v)
        return base._replace(shared=omega / omega.sum(), routed=routed)

    def router(self):
        return self.routed, self.n_shared

    def router_params(self, params):
        return params.routed

    # ---- mixing-measure atoms --------------------------------------------------------
    def atom_groups(self, params, intercept):
        """Two groups: "shared" (masses omega, no gate blocks) and "routed" (the routed gate's atoms)."""
        return [("shared", np.asarray(params.shared, dtype=np.float64), {}, "shared"),
                ("routed",) + tuple(self.routed.atoms(params.routed, intercept))]

    # ---- presentation ----------------------------------------------------------------
    def describe(self, params, names):
        om = np.asarray(params.shared)
        rows = [(i, "shared weight", float(om[i])) for i in range(om.shape[0])]
        rows += [(i + om.shape[0], t, v) for i, t, v in self.routed.describe(params.routed, names)]
        return rows

    # ---- inference (moestat.inference) -----------------------------------------------
    def report(self, params):
        """Shared weights omega (all k1, as :meth:`describe` lists them), then the routed gate's report."""
        return jnp.concatenate([params.shared, self.routed.report(params.routed)])

    def permute(self, params, perm):
        """Relabel experts within the shared block and within the routed block (they cannot swap)."""
        perm = np.asarray(perm, dtype=int)
        k1 = self.n_shared
        ps, pr = perm[:k1], perm[k1:] - k1
        if ps.max() >= k1 or pr.min() < 0:
            raise ValueError("SharedRouted can only relabel experts within the shared block (first %d) and within "
                             "the routed block; got permutation %s" % (k1, perm.tolist()))
        return SharedRoutedParams(shared=params.shared[ps], routed=self.routed.permute(params.routed, pr))
