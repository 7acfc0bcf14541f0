"""``GaussianMoE``: mixture of Gaussian-regression experts under any gate."""
from __future__ import annotations

from .base import MoEModel


class GaussianMoE(MoEModel):
    """Mixture of Gaussian-regression experts with a covariate-dependent gate.

    p(y | x, z) = sum_i g_i(z) N(y | beta_i' x, sigma_i^2), fitted by maximum likelihood (EM).

    Parameters
    ----------
    n_experts : int
    gating : str or gate object ("softmax", ...; see ``moestat.gating.available()``)
    expert : str or expert object, default "linear"
    intercept, gate_intercept : bool
        Add an intercept column to the expert / gate covariates.
    min_variance : float, optional
        Lower bound on every expert variance (default 1e-8 * var(y), a
        numerical floor only); raise it to rule out spurious maxima.
    ridge : float
        Levenberg ridge on the gate's Newton systems, relative to the curvature
        scale (0 = exact Newton; helps with separated gates).

    Examples
    --------
    >>> import moestat as ms
    >>> df = ms.datasets.load_sim_moe2()
    >>> res = ms.GaussianMoE(n_experts=2).fit("y ~ x", data=df)
    >>> round(res.loglik, 4)
    -479.3653
    """

    _default_expert = "linear"

    def _check_family(self):
        if self.expert.response != "continuous":
            raise ValueError("GaussianMoE needs a Gaussian expert family, got %r (use MultinomialMoE)"
                             % self.expert.name)
