"""``get_prediction``: the mixture mean with delta-method intervals and predictive (observation) intervals.

For covariates x the predictive distribution of a Gaussian MoE is the mixture
F(y | x) = sum_i g_i(x) Phi((y - mu_i(x)) / sigma_i).  ``summary_frame`` reports

* ``mean``: the mixture mean sum_i g_i(x) mu_i(x);
* ``mean_se``, ``mean_ci_lower/upper``: its standard error by the delta method
  (gradient of the mean in the unconstrained parameters, times their
  observed-information covariance) and the normal (1 - alpha) interval;
* ``obs_ci_lower/upper``: the alpha/2 and 1 - alpha/2 quantiles of the fitted
  mixture F(. | x) (plug-in, found by bisection on the mixture CDF).  With one
  expert this is mean +- z sigma, statsmodels' observation interval without
  the parameter-uncertainty term.

Column names follow statsmodels' ``PredictionResults.summary_frame``.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import ndtr

from .bootstrap import check_alpha
from ..fitting.parametrization import unpack


@partial(jax.jit, static_argnames=("cfg", "masks"))
def _mean_and_jacobian(theta, params, X, Xg, cfg, masks):
    """Mixture mean (n,) at the design (p, n), (pg, n) and its Jacobian in theta (n, len(theta))."""
    def mean(th):
        P = unpack(cfg, th, params, masks.masks)
        g = jnp.exp(cfg.gate.log_weights(P.gate, Xg))
        return jnp.sum(g * cfg.expert.mean(P.expert, X), axis=0)
    return mean(theta), jax.jacobian(mean)(theta)


def mixture_quantiles(weights: np.ndarray, means: np.ndarray, sds: np.ndarray, probs) -> np.ndarray:
    """(n, len(probs)) quantiles of the Gaussian mixtures sum_i weights[n, i] N(means[n, i], sds[i]^2).

    Bisection on the mixture CDF, bracketed by the experts' own quantiles, to
    relative precision about 1e-13.
    """
    probs = np.atleast_1d(np.asarray(probs, dtype=float))
    sds = np.broadcast_to(sds, means.shape)
    out = np.empty((means.shape[0], probs.size))
    for j, p in enumerate(probs):
        z = stats.norm.ppf(p)
        lo = (means + z * sds).min(1) - 1e-9 * (1 + np.abs(means).max(1))
        hi = (means + z * sds).max(1) + 1e-9 * (1 + np.abs(means).max(1))
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            F = (weights * ndtr((mid[:, None] - means) / sds)).sum(1)
            below = F < p
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
            if np.all(hi - lo <= 1e-13 * (1 + np.abs(mid))):
                break
        out[:, j] = 0.5 * (lo + hi)
    return out


class PredictionResults:
    """Predictions with intervals at new (or the fitted) covariates; see :meth:`summary_frame`.

    Attributes
    ----------
    predicted_mean : (n,) mixture means
    se_mean : (n,) delta-method standard errors of the means
    gate : (n, k) gate probabilities
    expert_means : (n, k) expert means
    sigma : (k,) expert standard deviations
    row_labels : pandas Index of the new data, or None
    """

    def __init__(self, predicted_mean, se_mean, gate, expert_means, sigma, row_labels=None):
        self.predicted_mean = predicted_mean
        self.se_mean = se_mean
        self.gate = gate
        self.expert_means = expert_means
        self.sigma = sigma
        self.row_labels = row_labels

    def conf_int(self, obs: bool = False, alpha: float = 0.05) -> np.ndarray:
        """(n, 2) interval of the mean (``obs=False``) or predictive interval of a new y (``obs=True``)."""
        alpha = check_alpha(alpha)
        if obs:
            return mixture_quantiles(self.gate, self.expert_means, self.sigma, [alpha / 2, 1 - alpha / 2])
        q = stats.norm.ppf(1 - alpha / 2)
        return np.column_stack([self.predicted_mean - q * self.se_mean, self.predicted_mean + q * self.se_mean])

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """mean, mean_se, mean_ci_lower, mean_ci_upper, obs_ci_lower, obs_ci_upper (one row per observation)."""
        ci, obs = self.conf_int(False, alpha), self.conf_int(True, alpha)
        return pd.DataFrame({"mean": self.predicted_mean, "mean_se": self.se_mean,
                             "mean_ci_lower": ci[:, 0], "mean_ci_upper": ci[:, 1],
                             "obs_ci_lower": obs[:, 0], "obs_ci_upper": obs[:, 1]}, index=self.row_labels)


def get_prediction(res, X=None, gate_X=None, data=None) -> PredictionResults:
    """Prediction results of a Gaussian-expert fit (see :meth:`moestat.MoEResults.get_prediction`)."""
    if res.model.expert.response != "continuous":
        raise TypeError("get_prediction needs Gaussian experts (observation intervals of a continuous y); "
                        "for class probabilities use predict(kind='proba')")
    dat, n, _ = res._new_data(X, gate_X, None, data)
    info = res.information
    if info.masks is None or not np.all(np.isfinite(info.cov_theta)):
        raise ValueError("the fit has no observed-information covariance (see its InferenceWarning): "
                         "standard errors of the predictions are not available")
    Xd, Xgd = dat.X[:, :n], dat.Xg[:, :n]
    mean, J = _mean_and_jacobian(jnp.asarray(info.theta), res._device_params, Xd, Xgd, res._cfg, info.masks)
    J = np.asarray(J)
    se = np.sqrt(np.maximum(np.einsum("nj,jk,nk->n", J, info.cov_theta, J), 0.0))
    gate = np.asarray(res.predict(X, gate_X, kind="gate", data=data))
    means = np.asarray(res.predict(X, gate_X, kind="experts", data=data))
    f = res.params_frame()
    sigma = f.loc[(f["block"] == "expert") & (f["term"] == "sigma"), "estimate"].to_numpy()
    if sigma.shape[0] != means.shape[1]:
        raise TypeError("get_prediction needs one sigma per expert; the %r experts report %d"
                        % (res.model.expert.name, sigma.shape[0]))
    return PredictionResults(np.asarray(mean), se, gate, means, sigma, res._row_labels(X, data))
