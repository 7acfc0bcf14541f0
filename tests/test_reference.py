"""The default fit reaches the reference MLE of the bundled data set; independent checks agree."""
import numpy as np
import pytest
from scipy.optimize import minimize

import moestat as ms
from references import numpy_em as ref


def _by_component(res):
    """Estimates keyed like the reference: component 1 = expert with the positive slope."""
    f = res.params_frame()
    ex = f[f.block == "expert"]
    slope = {e: ex[(ex.expert == e) & (ex.term == "x")].estimate.item() for e in (1, 2)}
    pos = 1 if slope[1] > 0 else 2
    order = {pos: 1, 3 - pos: 2}
    out = {("expert", order[r.expert], r.term): r.estimate for r in ex.itertuples()}
    g = f[f.block == "gate"].set_index("term").estimate
    # our gate is log-odds of expert 2 vs expert 1; flip when our expert 1 is the reference's component 2
    sign = 1.0 if pos == 1 else -1.0
    out[("gating", 2, "Intercept")] = sign * g["Intercept"]
    out[("gating", 2, "x")] = sign * g["x"]
    return out


def test_default_fit_reaches_reference_mle(sim_fit, sim_reference):
    mle = sim_reference["mle"]
    assert sim_fit.converged
    assert abs(sim_fit.loglik - mle["loglik"]) < 1e-5
    est = _by_component(sim_fit)
    for row in mle["params"]:
        term = "Intercept" if row["term"] == "(Intercept)" else row["term"]
        got = est[(row["block"], row["component"], term)]
        assert got == pytest.approx(row["estimate"], abs=1e-4), row


def test_beats_flexmix_df_corrected_fit(sim_fit, sim_reference):
    # flexmix divides the variance by n - p: its fixed point is below the MLE (peers.md §3)
    assert sim_fit.loglik > sim_reference["peers"]["sim_flexmix_moe_default"]["loglik"] + 1e-3


def test_em_without_polish_is_close_and_polish_never_lowers(sim_df, sim_reference):
    raw = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, polish=False)
    assert raw.n_polish == 0
    assert abs(raw.loglik - sim_reference["mle"]["loglik"]) < 1e-5
    polished = ms.GaussianMoE(2).fit("y ~ x", data=sim_df)
    assert polished.loglik >= raw.loglik


def _numpy_negll(theta, X, y):
    """Independent NumPy log-likelihood in (gate row 2, coef, log sigma2)."""
    gate = np.vstack([np.zeros(2), theta[0:2]])
    coef = theta[2:6].reshape(2, 2)
    s2 = np.exp(theta[6:8])
    ll, _ = ref.loglik_and_resp(gate, coef, s2, X, X, y, np.ones(len(y)))
    return -ll


def test_direct_scipy_optimisation_does_not_improve(sim_fit, sim_df):
    X = np.column_stack([np.ones(len(sim_df)), sim_df.x.to_numpy()])
    y = sim_df.y.to_numpy()
    p = sim_fit.params_tree
    theta0 = np.concatenate([p.gate.coef[1], p.expert.coef.ravel(), np.log(p.expert.sigma2)])
    ll_em = -_numpy_negll(theta0, X, y)
    assert ll_em == pytest.approx(sim_fit.loglik, abs=1e-9)
    options = {"BFGS": {"gtol": 1e-10}, "Nelder-Mead": {"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}}
    for method, opts in options.items():
        opt = minimize(_numpy_negll, theta0, args=(X, y), method=method, options=opts)
        assert -opt.fun - ll_em <= 1e-8, (method, -opt.fun - ll_em)
