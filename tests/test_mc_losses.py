"""The Monte Carlo worker's compiled loss programs against independent NumPy/SciPy transcriptions."""
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from moestat.losses import conditional_distance, gauss_legendre_nodes


def _softmax_linear_logpdf(coef_g, coef, sigma2):
    """log p(y | x) of a softmax-gated linear Gaussian MoE with x (M, 1), by SciPy (rows (intercept, slope))."""
    coef_g, coef, sigma2 = (np.asarray(a, dtype=float) for a in (coef_g, coef, sigma2))

    def f(X, y):
        x = X[:, 0]
        eta = coef_g[:, 0][:, None] + coef_g[:, 1][:, None] * x[None]              # (k, M)
        lw = eta - logsumexp(eta, axis=0)[None]
        mu = coef[:, 0][:, None] + coef[:, 1][:, None] * x[None]                   # (k, M)
        ld = norm.logpdf(y[None, None, :], mu[:, :, None], np.sqrt(sigma2)[:, None, None])   # (k, M, G)
        return logsumexp(lw[:, :, None] + ld, axis=0)
    return f, lambda X: coef[:, 0][:, None] + coef[:, 1][:, None] * X[:, 0][None]


@pytest.mark.parametrize("kind", ["tv", "kl", "hellinger"])
def test_compiled_density_loss_equals_the_scipy_transcription(kind):
    from moestat.montecarlo.worker import density_loss, experiment_for
    from test_montecarlo import tiny_spec
    exp = experiment_for(tiny_spec().raw)
    true = exp.truth.canonical(exp.true_params)
    fit = true._replace(gate=true.gate._replace(coef=np.asarray(true.gate.coef) + [[0.0, 0.0], [0.3, -0.5]]),
                        expert=true.expert._replace(coef=np.asarray(true.expert.coef) + [[0.05, 0.1], [-0.1, 0.2]],
                                                    sigma2=np.asarray(true.expert.sigma2) * [1.3, 0.8]))
    got = density_loss(exp, fit, kind)
    lp, mean_p = _softmax_linear_logpdf(true.gate.coef, true.expert.coef, true.expert.sigma2)
    lq, mean_q = _softmax_linear_logpdf(fit.gate.coef, fit.expert.coef, fit.expert.sigma2)
    law = exp.spec.raw["x"]
    nodes = gauss_legendre_nodes(law["low"], law["high"], 16, 8)[0][:, None]
    sd_p, sd_q = np.sqrt(np.max(true.expert.sigma2)), np.sqrt(np.max(fit.expert.sigma2))
    y_range = (min(mean_p(nodes).min() - 12 * sd_p, mean_q(nodes).min() - 12 * sd_q),
               max(mean_p(nodes).max() + 12 * sd_p, mean_q(nodes).max() + 12 * sd_q))
    ref = conditional_distance(lp, lq, kind=kind, x_uniform=(law["low"], law["high"]), y_range=y_range)
    assert got.method == ref.method == "quadrature"
    assert got.value == pytest.approx(ref.value, rel=1e-10) and got.value > 1e-3
    assert got.error == pytest.approx(ref.error, rel=1e-6, abs=1e-13)


def test_compiled_density_loss_is_zero_at_the_truth_and_rejects_unknown_kinds():
    from moestat.montecarlo.worker import density_loss, experiment_for
    from test_montecarlo import tiny_spec
    exp = experiment_for(tiny_spec().raw)
    true = exp.truth.canonical(exp.true_params)
    d = density_loss(exp, true, "tv")
    assert abs(d.value) < 1e-14 and d.error < 1e-14
    with pytest.raises(ValueError, match="kind must be one of"):
        density_loss(exp, true, "wasserstein")
