"""Estimation variants: CEM, SEM, user initialisation, fixed parameters (checked against statsmodels / SciPy)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.optimize import minimize

import moestat as ms
from _inference_helpers import REFERENCE_LOGLIK, np_loglik, sim_moe2_fit


def _arrays(df):
    X = np.column_stack([np.ones(len(df)), df["x"]])
    return X, X, df["y"].to_numpy()


def test_cem_stops_at_a_classification_fixed_point():
    """At a CEM solution the experts are the per-class least-squares fits (ML variance) and the gate
    is the multinomial logit of the hard labels (statsmodels MNLogit)."""
    df, _ = sim_moe2_fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        res = ms.GaussianMoE(2).fit("y ~ x", data=df, algorithm="cem")
    assert res.converged and res.algorithm == "cem"
    X, Xg, y = _arrays(df)
    z = res.predict(kind="labels")
    for i in range(2):
        m = z == i
        beta, *_ = np.linalg.lstsq(X[m], y[m], rcond=None)
        np.testing.assert_allclose(res.params_tree.expert.coef[i], beta, rtol=1e-6)
        assert res.params_tree.expert.sigma2[i] == pytest.approx(np.mean((y[m] - X[m] @ beta) ** 2), rel=1e-6)
    mnl = sm.MNLogit(z, Xg).fit(method="newton", disp=0, tol=1e-12, maxiter=100)
    np.testing.assert_allclose(res.params_tree.gate.coef[1], mnl.params[:, 0], rtol=1e-4)
    assert res.loglik == pytest.approx(np_loglik(X, Xg, y, res.params_tree.gate.coef, res.params_tree.expert.coef,
                                                 np.sqrt(res.params_tree.expert.sigma2)), abs=1e-8)
    assert res.loglik < REFERENCE_LOGLIK - 1e-6                   # CEM is not the MLE


def test_sem_returns_the_best_visited_parameters():
    """SEM runs max_iter stochastic iterations and reports the visited parameters with the highest
    observed log-likelihood (documented in GaussianMoE.fit); it is reproducible from the seed."""
    df, _ = sim_moe2_fit()
    kw = dict(algorithm="sem", max_iter=200, n_init=10)
    a = ms.GaussianMoE(2).fit("y ~ x", data=df, seed=3, **kw)
    b = ms.GaussianMoE(2).fit("y ~ x", data=df, seed=3, **kw)
    c = ms.GaussianMoE(2).fit("y ~ x", data=df, seed=4, **kw)
    assert a.loglik == b.loglik and a.loglik != c.loglik
    assert a.n_iter == 200 and not a.converged
    assert a.loglik >= np.nanmax(a.loglik_trace) - 1e-9
    assert REFERENCE_LOGLIK - 3.0 < a.loglik <= REFERENCE_LOGLIK + 1e-9   # within a few units of the MLE
    X, Xg, y = _arrays(df)
    P = a.params_tree
    assert a.loglik == pytest.approx(np_loglik(X, Xg, y, P.gate.coef, P.expert.coef, np.sqrt(P.expert.sigma2)),
                                     abs=1e-8)
    # flexmix's "sem.em" strategy: EM (polished) from the SEM result reaches the MLE
    em = ms.GaussianMoE(2).fit("y ~ x", data=df, init=a)
    assert em.loglik == pytest.approx(REFERENCE_LOGLIK, abs=1e-6) and em.converged


def test_user_initialisation_from_labels_responsibilities_and_parameters():
    df, ref = sim_moe2_fit()
    z = df["z"].to_numpy() - 1                                  # the true labels
    by_labels = ms.GaussianMoE(2).fit("y ~ x", data=df, init=z)
    assert len(by_labels.restarts) == 1
    assert by_labels.loglik == pytest.approx(ref.loglik, abs=1e-8)
    assert by_labels.params_tree.expert.coef[0, 1] > 0               # true expert 1 has the positive slope
    by_resp = ms.GaussianMoE(2).fit("y ~ x", data=df, init=ref.responsibilities)
    np.testing.assert_allclose(by_resp.params_tree.expert.coef, ref.params_tree.expert.coef, rtol=1e-6)
    by_params = ms.GaussianMoE(2).fit("y ~ x", data=df, init=ref)
    assert by_params.n_iter <= 2 and by_params.loglik == pytest.approx(ref.loglik, abs=1e-9)
    with pytest.raises(ValueError, match="init labels must lie in 0..1"):
        ms.GaussianMoE(2).fit("y ~ x", data=df, init=z + 1)
    with pytest.raises(ValueError, match=r"init responsibilities must have shape \(n, k\) = \(500, 2\)"):
        ms.GaussianMoE(2).fit("y ~ x", data=df, init=np.ones((500, 3)) / 3)


def _constrained_scipy(df, free_fn, v0):
    X, Xg, y = _arrays(df)
    r = minimize(lambda v: -np_loglik(X, Xg, y, *free_fn(v)), v0, method="BFGS", options={"gtol": 1e-9})
    return r, -r.fun


def test_fixed_gate_matches_scipy():
    df, ref = sim_moe2_fit()
    gate = np.array([[0.0, 0.0], [0.5, 4.0]])                   # the true gate, held fixed
    start = ref.params_tree._replace(gate=ref.params_tree.gate._replace(coef=gate))
    res = ms.GaussianMoE(2).fit("y ~ x", data=df, init=start, fixed={"gate": True})
    np.testing.assert_array_equal(res.params_tree.gate.coef, gate)
    unpack = lambda v: (gate, v[:4].reshape(2, 2), np.exp(v[4:]))
    v0 = np.concatenate([ref.params_tree.expert.coef.ravel(), 0.5 * np.log(ref.params_tree.expert.sigma2)])
    r, ll = _constrained_scipy(df, unpack, v0)
    assert res.loglik == pytest.approx(ll, abs=1e-7)
    np.testing.assert_allclose(res.params_tree.expert.coef.ravel(), r.x[:4], atol=1e-5)
    np.testing.assert_allclose(np.sqrt(res.params_tree.expert.sigma2), np.exp(r.x[4:]), atol=1e-5)
    assert res.df == 6
    f = res.summary_frame()
    assert f[f.block == "gate"]["std_err"].isna().all() and f[f.block == "expert"]["std_err"].notna().all()


def test_fixed_coefficients_match_scipy():
    df, ref = sim_moe2_fit()
    coef = ref.params_tree.expert.coef.copy()
    coef[0, 1] = 2.0                                            # expert 1's slope held at 2
    mask = np.array([[False, True], [False, False]])
    start = ref.params_tree._replace(expert=ref.params_tree.expert._replace(coef=coef))
    res = ms.GaussianMoE(2).fit("y ~ x", data=df, init=start, fixed={"coef": mask})
    assert res.params_tree.expert.coef[0, 1] == 2.0
    assert np.all(np.diff(res.loglik_trace) >= -1e-12 * abs(res.loglik))   # EM stays monotone

    def unpack(v):
        c = np.array([[v[0], 2.0], [v[1], v[2]]])
        return np.vstack([np.zeros(2), v[5:7]]), c, np.exp(v[3:5])
    v0 = np.concatenate([[coef[0, 0], coef[1, 0], coef[1, 1]], 0.5 * np.log(ref.params_tree.expert.sigma2),
                         ref.params_tree.gate.coef[1]])
    r, ll = _constrained_scipy(df, unpack, v0)
    assert res.loglik == pytest.approx(ll, abs=1e-7)
    assert res.loglik < ref.loglik - 1.0                         # the constraint binds
    np.testing.assert_allclose(res.params_tree.gate.coef[1], r.x[5:7], atol=1e-4)
    np.testing.assert_allclose(res.params_tree.expert.coef[1], r.x[1:3], atol=1e-5)
    assert res.df == 7
    assert np.isnan(res.bse[("expert", 1, "x")]) and np.isfinite(res.bse[("expert", 1, "Intercept")])
