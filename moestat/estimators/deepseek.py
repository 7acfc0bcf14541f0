"""The DeepSeekMoE estimator: a shared block with constant weights plus a routed block under any gate.

The model (``theory.md`` §2.1, eq. 1; eq. 8 for normalized sigmoid routing):

    p(y | x) = 1/2 sum_{i <= k1} omega_i N(y | h1(x, kappa_i), tau_i)
             + 1/2 sum_{j <= k2} g_j(x) N(y | h2(x, eta_j), nu_j),

shared experts with constant weights omega, routed experts with any gate g,
fixed block weights 1/2-1/2 (:class:`moestat.gating.SharedRouted`), and the
experts stacked per block (:class:`moestat.experts.Stacked`; the first k1
experts are the shared ones).  tau and nu are **variances**.  The four true
models of the paper's synthetic experiment are in :mod:`moestat.truths.deepseek`.
"""
from __future__ import annotations

import numbers


from ..experts import Stacked
from ..gating import SharedRouted
from .gaussian import GaussianMoE

class DeepSeekMoE(GaussianMoE):
    """Shared + routed mixture of Gaussian experts (the DeepSeekMoE statistical model).

    Parameters
    ----------
    n_shared, n_routed : int
        Numbers of shared (constant-weight) and routed experts, k1 and k2.
    shared_expert, routed_expert : str or expert object
        Expert families of the two blocks ("relu", "linear", "gelu", ... or
        e.g. ``ms.experts.ReLUExpert(bias=False)`` for eta2 ReLU(eta1 x)).
    routed_gating : str or gate object
        Gate of the routed block ("softmax" = DeepSeek-V2, "normalized_sigmoid" = DeepSeek-V3, ...).
    **kwargs
        ``intercept``, ``gate_intercept``, ``min_variance``, ``ridge`` as for :class:`moestat.GaussianMoE`.

    Examples
    --------
    >>> import moestat as ms
    >>> truth = ms.truths.deepseek.true_model("thm2")
    >>> x, y, _ = truth.simulate(600, seed=1)
    >>> res = ms.DeepSeekMoE(n_shared=2, n_routed=3, shared_expert="linear",
    ...                      routed_expert="linear").fit(x, y, n_init=2)
    >>> res.loglik >= truth.loglik(x, y)
    True
    """

    def __init__(self, n_shared: int = 2, n_routed: int = 3, shared_expert="relu", routed_expert="linear",
                 routed_gating="softmax", **kwargs):
        for name, v in (("n_shared", n_shared), ("n_routed", n_routed)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError("%s must be an integer >= 1, got %r" % (name, v))
        gate = SharedRouted(n_shared=int(n_shared), routed=routed_gating)
        expert = Stacked(((shared_expert, int(n_shared)), (routed_expert, int(n_routed))))
        super().__init__(int(n_shared) + int(n_routed), gating=gate, expert=expert, **kwargs)

    @property
    def n_shared(self) -> int:
        """Number of shared experts k1 (the first k1 experts).

        Examples
        --------
        >>> import moestat as ms
        >>> ms.DeepSeekMoE(n_shared=2, n_routed=3).n_shared
        2
        """
        return self.gate.n_shared

    @property
    def n_routed(self) -> int:
        """Number of routed experts k2 (the last k2 experts).

        Examples
        --------
        >>> import moestat as ms
        >>> ms.DeepSeekMoE(n_shared=2, n_routed=3).n_routed
        3
        """
        return self.n_experts - self.gate.n_shared

    def __repr__(self):
        (fs, _), (fr, _) = self.expert.blocks
        return ("DeepSeekMoE(n_shared=%d, n_routed=%d, shared_expert=%r, routed_expert=%r, routed_gating=%r)"
                % (self.n_shared, self.n_routed, fs.name, fr.name, self.gate.routed.name))
